from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

from activities import Worker, cli
from activities import local as local_module
from activities._cli.arguments import command_line
from activities.cli import main
from activities.local import LocalStepFunctions, free_port, local_client
from tests import workloads
from tests.processes import ROOT
from tests.stepfunctions import unique


class TestList:
    def test_lists_what_a_worker_would_serve(self, capsys: pytest.CaptureFixture[str]) -> None:
        """Names and classes of a package's activities, without calling AWS."""
        assert main(["list", "examples"]) == 0
        lines = capsys.readouterr().out.splitlines()
        assert lines == [
            "Echo        examples.echo.Echo",
            "Reserve     examples.flaky.Reserve",
            "CountWords  examples.progress.CountWords",
        ]

    def test_unknown_module_is_a_clear_error(self, capsys: pytest.CaptureFixture[str]) -> None:
        """An import error is one line naming the module, exit code 2."""
        assert main(["list", "no_such_module_here"]) == 2
        assert "cannot import 'no_such_module_here'" in capsys.readouterr().err

    def test_module_without_activities_is_a_usage_error(
        self, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """Serving nothing is refused, in the one format of every error."""
        assert main(["list", "json"]) == 2
        assert capsys.readouterr().err == "activities list: error: no activities found in json\n"

    def test_a_bad_option_is_an_error_of_the_same_format(
        self, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """argparse's errors too: one line, the subcommand named, no usage block."""
        with pytest.raises(SystemExit) as info:
            main(["worker", "examples", "--processes", "0"])
        assert info.value.code == 2
        error = capsys.readouterr().err
        assert error.startswith("activities worker: error: argument --processes:")
        assert error.endswith("(see activities worker --help)\n")
        assert "usage:" not in error

    def test_every_option_has_help(self) -> None:
        """`activities worker --help` describes every option."""
        worker = next(
            action.choices["worker"]
            for action in command_line()._actions
            if isinstance(action, argparse._SubParsersAction)
        )
        undescribed = [
            action.option_strings
            for action in worker._actions
            if action.option_strings and not action.help
        ]
        assert undescribed == []


class TestWorkerOptions:
    @pytest.mark.parametrize(
        "options",
        [
            ["--processes", "0"],
            ["--threads", "-1"],
            ["--processes", "2", "--threads", "0"],
            ["--async-tasks", "-1"],
        ],
    )
    def test_bad_pool_options_are_refused(self, options: list[str]) -> None:
        """Non-positive sizes are usage errors."""
        with pytest.raises(SystemExit) as info:
            main(["worker", "examples", *options])
        assert info.value.code == 2

    def test_missing_region_is_a_clear_error(
        self, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """Without a Region the worker says how to give one, before any call."""
        for name in ("AWS_REGION", "AWS_DEFAULT_REGION", "AWS_PROFILE", "AWS_CONFIG_FILE"):
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
        assert main(["worker", "examples", "--threads", "1"]) == 2
        assert "no AWS Region is configured" in capsys.readouterr().err

    def test_bad_shutdown_grace_names_the_setting(self, capsys: pytest.CaptureFixture[str]) -> None:
        """An invalid setting fails at start-up with its name, before any client exists."""
        with pytest.raises(SystemExit) as info:
            main(["worker", "examples", "--shutdown-grace", "-5"])
        assert info.value.code == 2
        assert "--shutdown-grace: must be a number of seconds >= 0" in capsys.readouterr().err

    @pytest.mark.parametrize(
        "options",
        [["--buffer", "0"], ["--max-concurrency", "Echo=0"], ["--max-concurrency", "Echo"]],
    )
    def test_bad_buffer_or_limit_is_refused(self, options: list[str]) -> None:
        with pytest.raises(SystemExit) as info:
            main(["worker", "examples", *options])
        assert info.value.code == 2

    def test_buffer_and_limits_reach_the_worker(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """--buffer, --max-concurrency (`none` lifts it), --no-preload, --no-direct-calls."""
        seen: dict[str, Any] = {}

        class Recorder:
            def __init__(self, activities: Any, **options: Any) -> None:
                seen.update(options)

            def run(self) -> int:
                return 0

        monkeypatch.setattr(cli, "Worker", Recorder)
        pool = ["--processes", "2", "--threads", "8", "--async-tasks", "100"]
        options = ["--buffer", "3", "--max-concurrency", "Echo=2", "--max-concurrency", "B=none"]
        assert main(["worker", "examples", "--region", "us-east-1", *options]) == 0
        assert seen["buffer"] == 3
        assert seen["max_concurrency"] == {"Echo": 2, "B": None}
        assert seen["preload"] is True
        assert (seen["processes"], seen["threads"], seen["async_tasks"]) == (None, None, None)
        assert main(["worker", "examples", "--region", "us-east-1", *pool]) == 0
        assert (seen["processes"], seen["threads"], seen["async_tasks"]) == (2, 8, 100)
        assert seen["client"].keywords["direct"] is True
        assert main(["worker", "examples", "--region", "us-east-1", "--no-preload"]) == 0
        assert seen["preload"] is False
        assert main(["worker", "examples", "--region", "us-east-1", "--no-direct-calls"]) == 0
        assert seen["client"].keywords["direct"] is False


@pytest.mark.integration
class TestAgainstStepFunctions:
    def test_register_prints_names_and_arns(
        self, local_sfn: LocalStepFunctions, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """register creates the activities (with prefix and tags) and prints their ARNs."""
        args = ["register", "examples", "--prefix", "reg-", "--tag", "team=data"]
        args += ["--endpoint-url", local_sfn.endpoint_url, "--region", "us-east-1"]
        with pytest.MonkeyPatch.context() as patch:
            for name, value in local_sfn.environment().items():
                patch.setenv(name, value)
            assert main(args) == 0
        rows = [line.split() for line in capsys.readouterr().out.splitlines()]
        prefix = "arn:aws:states:us-east-1:000000000000:activity:"
        assert rows == [
            ["reg-Echo", prefix + "reg-Echo"],
            ["reg-Reserve", prefix + "reg-Reserve"],
            ["reg-CountWords", prefix + "reg-CountWords"],
        ]
        # (LocalStack keeps no tags on activities: tags are checked with a stub in
        # test_registry.py.)
        described = local_sfn.client().describe_activity(activityArn=prefix + "reg-Echo")
        assert described["name"] == "reg-Echo"

    def test_local_runs_until_interrupted(self) -> None:
        """`activities local` prints where it listens, and stops cleanly on Ctrl-C."""
        process = subprocess.Popen(
            [sys.executable, "-m", "activities", "local"],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        try:
            assert process.stdout is not None
            lines = []
            for line in process.stdout:
                lines.append(line)
                if "Ctrl-C stops it" in line:
                    break
            url = next(
                line.split("=", 1)[1].strip() for line in lines if "AWS_ENDPOINT_URL" in line
            )
            assert url.startswith("http://127.0.0.1:")
            # LocalStack hangs on SIGTERM while a long poll is open (up to 60 s): it is
            # stopped all the same, and says so.
            poll_open = threading.Event()
            threading.Thread(target=poll, args=(url, poll_open), daemon=True).start()
            assert poll_open.wait(30)
            process.send_signal(signal.SIGINT)
            assert process.wait(timeout=60) == 0
            rest = process.stdout.read()
            assert rest.endswith(
                "Local Step Functions stopped; the activities, state machines and executions "
                "made on it are gone.\n"
            )
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
            if process.stdout is not None:
                process.stdout.close()


def poll(url: str, opened: threading.Event) -> None:
    """Keep a long poll open on ``url`` until it returns or the endpoint goes."""
    client = local_client(url)  # its read timeout outlasts a poll
    arn = client.create_activity(name="left-polling")["activityArn"]
    opened.set()  # the poll is sent just after: near enough, it stays open 60 s
    with contextlib.suppress(Exception):  # the endpoint is stopped under it: expected
        client.get_activity_task(activityArn=arn)


class TestLocal:
    def test_a_port_out_of_range_is_a_usage_error(self, capsys: pytest.CaptureFixture[str]) -> None:
        with pytest.raises(SystemExit) as info:
            main(["local", "--port", "70000"])
        assert info.value.code == 2
        assert capsys.readouterr().err == (
            "activities local: error: argument --port: must be a port from 1 to 65535, not "
            "70000 (see activities local --help)\n"
        )

    def test_help_describes_the_command(self, capsys: pytest.CaptureFixture[str]) -> None:
        with pytest.raises(SystemExit):
            main(["local", "--help"])
        assert "installing it on first use" in " ".join(capsys.readouterr().out.split())

    def test_stop_ends_within_what_the_tutorial_says(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A LocalStack that ignores SIGTERM (a poll is open) is killed: every wait of the
        stop is bounded, and they add up to no more than the tutorial's promise."""
        tutorial = (ROOT / "docs" / "tutorial.md").read_text()
        promised = float(re.search(r"Step Functions \(within (\d+) seconds\)", tutorial)[1])  # type: ignore[index]
        monkeypatch.setattr(local_module, "TERM_TIMEOUT", 0.2)  # the test need not wait 5 s
        stubborn = subprocess.Popen(
            [
                sys.executable,
                "-c",
                (
                    "import signal, time\n"
                    "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
                    "print('ready', flush=True)\n"
                    "time.sleep(600)\n"
                ),
            ],
            stdout=subprocess.PIPE,
            start_new_session=True,
        )
        assert stubborn.stdout is not None
        assert stubborn.stdout.readline() == b"ready\n"
        waits: list[float | None] = []
        wait = stubborn.wait

        def recorded(timeout: float | None = None) -> int:
            waits.append(timeout)
            return wait(timeout)

        monkeypatch.setattr(stubborn, "wait", recorded)
        local = LocalStepFunctions(port=free_port(), home=tmp_path / "home")
        local._process = stubborn
        local._state = tmp_path / "state"
        local._state.mkdir()
        try:
            local.stop()
            assert stubborn.returncode == -signal.SIGKILL
            assert None not in waits
            assert sum(waits) <= local_module.STOP_TIMEOUT <= promised  # type: ignore[arg-type]
            assert not (tmp_path / "state").exists()
        finally:
            if stubborn.poll() is None:
                os.killpg(stubborn.pid, signal.SIGKILL)
                stubborn.wait()
            stubborn.stdout.close()


class TestErrorsPoint:
    """A start-up error says where it is, in one line."""

    @pytest.fixture(autouse=True)
    def own_import_path(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setattr(sys, "path", sys.path.copy())
        monkeypatch.chdir(tmp_path)

    @pytest.mark.parametrize("level", ["DEBUG", "INFO", "ERROR"])
    def test_a_module_raising_at_import_names_its_file_and_line(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str], level: str
    ) -> None:
        name = f"boom_{level.lower()}"
        (tmp_path / f"{name}.py").write_text('import os\n\nraise RuntimeError("boom at import")\n')
        assert main(["worker", name, "--log-level", level]) == 2
        assert capsys.readouterr().err.splitlines()[-1] == (
            f"activities worker: error: {name}.py:3: cannot import {name!r}: "
            "RuntimeError: boom at import"
        )

    def test_the_line_is_in_the_users_module_not_below(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """An error raised in a library the module calls points at the module's call;
        one in a submodule of a package points at the submodule."""
        (tmp_path / "deep").mkdir()
        (tmp_path / "deep" / "__init__.py").write_text("from deep import inner\n")
        (tmp_path / "deep" / "inner.py").write_text('import json\n\n\njson.loads("{")\n')
        assert main(["list", "deep"]) == 2
        error = capsys.readouterr().err
        assert error.startswith(
            f"activities list: error: {Path('deep', 'inner.py')}:4: cannot import 'deep': "
            "JSONDecodeError: "
        )

    def test_a_syntax_error_names_its_file_and_line(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        (tmp_path / "broken_syntax.py").write_text("x = 1\ndef f(:\n    pass\n")
        assert main(["list", "broken_syntax"]) == 2
        error = capsys.readouterr().err
        assert error.startswith(
            "activities list: error: broken_syntax.py:2: cannot import 'broken_syntax': "
            "SyntaxError: "
        )

    def test_other_errors_are_not_given_a_place(self, capsys: pytest.CaptureFixture[str]) -> None:
        assert main(["list", "json"]) == 2
        assert capsys.readouterr().err == "activities list: error: no activities found in json\n"

    @pytest.mark.parametrize(
        ("arguments", "said"),
        [
            (
                ["worker", "examples", "--procesess", "2"],
                (
                    "activities worker: error: unrecognized arguments: --procesess 2; did you mean "
                    "--processes? (see activities worker --help)\n"
                ),
            ),
            (
                ["register", "examples", "--tags=a=b", "--regoin", "eu-west-1"],
                (
                    "activities register: error: unrecognized arguments: --tags=a=b --regoin "
                    "eu-west-1; did you mean --tag or --region? (see activities register --help)\n"
                ),
            ),
            (
                ["invoke", "Echo", "--zzz"],
                (
                    "activities invoke: error: unrecognized arguments: --zzz "
                    "(see activities invoke --help)\n"
                ),
            ),
        ],
    )
    def test_a_typo_names_the_subcommands_help_and_the_closest_option(
        self, capsys: pytest.CaptureFixture[str], arguments: list[str], said: str
    ) -> None:
        with pytest.raises(SystemExit) as info:
            main(arguments)
        assert info.value.code == 2
        assert capsys.readouterr().err == said

    @pytest.mark.parametrize(
        ("arguments", "message"),
        [
            (
                ["worker", "examples", "--log-format", "json", "--procesess", "2"],
                (
                    "activities worker: error: unrecognized arguments: --procesess 2; did you mean "
                    "--processes? (see activities worker --help)"
                ),
            ),
            (
                ["worker", "examples", "--log-format=json", "--processes", "0"],
                (
                    "activities worker: error: argument --processes: must be a positive integer, "
                    "not 0 (see activities worker --help)"
                ),
            ),
            (
                ["list", "nowhere_at_all", "--log-format", "json"],
                "activities list: error: cannot import 'nowhere_at_all': no nowhere_at_all.py",
            ),
        ],
    )
    def test_with_json_logs_an_error_is_a_json_line(
        self, capsys: pytest.CaptureFixture[str], arguments: list[str], message: str
    ) -> None:
        try:
            code = main(arguments)
        except SystemExit as exc:
            code = exc.code  # type: ignore[assignment]
        assert code == 2
        [line] = capsys.readouterr().err.splitlines()
        said = json.loads(line)
        assert (said["level"], said["logger"]) == ("ERROR", "activities.cli")
        assert said["message"].startswith(message)

    def test_the_command_run_where_the_module_is(self, tmp_path: Path) -> None:
        """`python -m activities worker boom` as a newcomer runs it: file and line, one line
        for a module that is not there (no directory of the virtualenv in it)."""
        (tmp_path / "boom.py").write_text('import os\n\nraise RuntimeError("boom at import")\n')
        environment = {**os.environ, "PYTHONPATH": str(ROOT)}
        said = []
        for module in ("boom", "no_such_module"):
            done = subprocess.run(
                [sys.executable, "-m", "activities", "worker", module],
                cwd=tmp_path,
                env=environment,
                capture_output=True,
                text=True,
                check=False,
                timeout=60,
            )
            assert done.returncode == 2
            said.append(done.stderr)
        assert said[0] == (
            "activities worker: error: boom.py:3: cannot import 'boom': RuntimeError: boom at "
            "import\n"
        )
        assert said[1] == (
            "activities worker: error: cannot import 'no_such_module': no no_such_module.py nor "
            f"no_such_module/ in {tmp_path} (the current directory), nor elsewhere on sys.path; "
            "run the command where it is, or give its directory with --path DIR\n"
        )


class TestModuleLookup:
    """Modules are looked for in the current directory first, as with python -m."""

    @pytest.fixture(autouse=True)
    def own_import_path(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setattr(sys, "path", sys.path.copy())

    @staticmethod
    def write_module(directory: Path, name: str) -> None:
        (directory / f"{name}.py").write_text(
            "from activities import Activity\n\n\n"
            f"class {name.title().replace('_', '')}(Activity):\n"
            "    def run(self, value):\n"
            "        return value\n"
        )

    def test_a_module_in_the_current_directory(
        self,
        tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        self.write_module(tmp_path, "lookup_here")
        monkeypatch.chdir(tmp_path)
        assert main(["list", "lookup_here"]) == 0
        assert "lookup_here.LookupHere" in capsys.readouterr().out

    def test_a_module_in_a_directory_given_with_path(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        for name in ("one", "two"):
            (tmp_path / name).mkdir()
        self.write_module(tmp_path / "two", "lookup_there")
        options = ["--path", str(tmp_path / "one"), "--path", str(tmp_path / "two")]
        assert main(["list", "lookup_there", *options]) == 0
        assert "lookup_there.LookupThere" in capsys.readouterr().out

    def test_a_module_found_nowhere_names_the_directories_searched(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """One line: what was looked for, in the current directory and the --path ones."""
        monkeypatch.chdir(tmp_path)
        assert main(["list", "lookup_nowhere.sub", "--path", str(tmp_path / "extra")]) == 2
        assert capsys.readouterr().err == (
            "activities list: error: cannot import 'lookup_nowhere.sub': no lookup_nowhere.py "
            f"nor lookup_nowhere/ in {tmp_path} (the current directory), {tmp_path / 'extra'}, "
            "nor elsewhere on sys.path; run the command where it is, or give its directory "
            "with --path DIR\n"
        )

    def test_the_command_itself_finds_a_module_where_it_runs(self, tmp_path: Path) -> None:
        """`activities list` (the console script, not python -m) from the module's directory."""
        self.write_module(tmp_path, "lookup_script")
        script = Path(sys.executable).with_name("activities")
        done = subprocess.run(
            [str(script), "list", "lookup_script"],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            check=False,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
        assert "lookup_script.LookupScript" in done.stdout


@pytest.mark.integration
class TestInvoke:
    """`activities invoke`: one task through a real (local) Step Functions."""

    @pytest.fixture(autouse=True)
    def local_environment(
        self, local_sfn: LocalStepFunctions, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        for name, value in local_sfn.environment().items():
            monkeypatch.setenv(name, value)
        monkeypatch.setattr(sys, "path", sys.path.copy())

    def test_the_output_of_a_task_served_here(self, capsys: pytest.CaptureFixture[str]) -> None:
        prefix = unique("inv") + "-"
        command = ["invoke", "it-Echo", "--input", '{"value": {"n": [1, 2]}}', "--prefix", prefix]
        assert main([*command, "--module", "tests.workloads"]) == 0
        assert json.loads(capsys.readouterr().out) == {"n": [1, 2]}

    def test_a_failure_with_its_error_and_cause(self, capsys: pytest.CaptureFixture[str]) -> None:
        prefix = unique("inv") + "-"
        command = ["invoke", "it-Picky", "--input", '{"quantity": 0}', "--prefix", prefix]
        assert main([*command, "--module", "tests.workloads"]) == 1
        captured = capsys.readouterr()
        reported = json.loads(captured.out)
        assert (reported["status"], reported["error"]) == ("FAILED", "ValueError")
        assert "quantity must be positive" in json.loads(reported["cause"])["errorMessage"]
        assert "the execution ended FAILED" in captured.err

    def test_a_task_served_by_a_worker_elsewhere(
        self, local_sfn: LocalStepFunctions, capsys: pytest.CaptureFixture[str]
    ) -> None:
        prefix = unique("inv") + "-"
        worker = Worker([workloads.Echo], threads=1, prefix=prefix, client=local_sfn.client())
        worker.start()
        try:
            assert main(["invoke", f"{prefix}it-Echo", "--input", '{"value": "hi"}']) == 0
        finally:
            worker.terminate()
        assert json.loads(capsys.readouterr().out) == "hi"

    def test_input_that_is_not_json_is_refused(self, capsys: pytest.CaptureFixture[str]) -> None:
        prefix = unique("inv") + "-"
        command = ["invoke", "it-Echo", "--input", "{value: 1}", "--prefix", prefix]
        assert main([*command, "--module", "tests.workloads"]) == 2
        assert "--input is not JSON" in capsys.readouterr().err

    def test_on_a_local_step_functions_of_its_own(self, capsys: pytest.CaptureFixture[str]) -> None:
        """--local starts one for the task and stops it; --module serves the task."""
        command = ["invoke", "it-Echo", "--input", '{"value": 3}', "--local"]
        assert main([*command, "--module", "tests.workloads"]) == 0
        assert json.loads(capsys.readouterr().out) == 3

    def test_local_without_module_is_refused(self, capsys: pytest.CaptureFixture[str]) -> None:
        assert main(["invoke", "it-Echo", "--local"]) == 2
        assert "--local needs --module" in capsys.readouterr().err
