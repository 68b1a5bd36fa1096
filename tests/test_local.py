"""The local endpoint itself, and the low-level client against real state machines."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from typing import TYPE_CHECKING, Any

import pytest

from activities import Activity, ActivityClient, Success, TaskGone
from activities.cli import main
from activities.local import LocalStepFunctions, LocalStepFunctionsError, default_home
from tests.stepfunctions import create_machine, start, task_state, unique, wait_for

if TYPE_CHECKING:
    from collections.abc import Generator
    from pathlib import Path

    from mypy_boto3_stepfunctions import SFNClient

pytestmark = pytest.mark.integration


class Progress(Activity):
    def run(self, steps: int) -> Generator[None, None, dict[str, Any]]:
        for _ in range(steps):
            yield
        return {"steps": steps}


class TestLocalStepFunctions:
    def test_environment_points_boto3_at_it(self, local_sfn: LocalStepFunctions) -> None:
        """The environment a worker process gets names the endpoint and usable credentials."""
        env = local_sfn.environment()
        assert env["AWS_ENDPOINT_URL"] == local_sfn.endpoint_url
        assert local_sfn.endpoint_url.startswith("http://127.0.0.1:")
        assert env["AWS_ACCESS_KEY_ID"]

    def test_stop_leaves_nothing_behind(self, tmp_path: Path) -> None:
        """After stop() the process is gone and its state directory removed."""
        local = LocalStepFunctions(home=default_home())
        local.start()
        process, state = local._process, local._state
        assert process is not None
        assert state is not None
        local.stop()
        assert process.poll() is not None
        assert not state.exists()
        local.stop()  # a second stop is harmless

    def test_server_ends_when_its_owner_is_killed(self) -> None:
        """A process killed without cleaning up does not leave LocalStack running."""
        code = (
            "import sys, time\n"
            "from activities.local import LocalStepFunctions\n"
            "local = LocalStepFunctions()\n"
            "local.start()\n"
            "print(local._process.pid, flush=True)\n"
            "time.sleep(600)\n"
        )
        owner = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
        try:
            assert owner.stdout is not None
            server = int(owner.stdout.readline())
            assert alive(server)
        finally:
            owner.kill()  # SIGKILL: no cleanup runs
            owner.wait()
            if owner.stdout is not None:
                owner.stdout.close()
        deadline = time.monotonic() + 30
        while alive(server) and time.monotonic() < deadline:
            time.sleep(0.2)
        if alive(server):
            os.kill(server, signal.SIGKILL)
            pytest.fail("LocalStack outlived the process that started it")

    def test_broken_install_says_what_to_do(self, tmp_path: Path) -> None:
        """A virtualenv that cannot run LocalStack fails fast with the log, not a hang."""
        home = tmp_path / "not-localstack"
        (home / "bin").mkdir(parents=True)
        (home / "bin" / "python").symlink_to("/bin/false")
        (home / ".sfn-activities-installed").write_text("fake")
        with pytest.raises(LocalStepFunctionsError, match="exited at start with code 1"):
            LocalStepFunctions(home=home).start()

    def test_a_port_in_use_is_refused_at_once(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """Not after LocalStack's own 90 s of retries: before anything is installed."""
        home = tmp_path / "never-installed"
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", 0))
            taken.listen()
            port = taken.getsockname()[1]
            with pytest.raises(LocalStepFunctionsError, match=f"cannot listen on 127.0.0.1:{port}"):
                LocalStepFunctions(port=port, home=home).start()
            assert main(["local", "--port", str(port)]) == 2
        assert not home.exists(), "refused before installing"
        error = capsys.readouterr().err
        assert error.startswith(f"activities local: error: cannot listen on 127.0.0.1:{port}")


class TestActivityClientAgainstStepFunctions:
    def test_poll_process_with_heartbeat_seconds(self, sfn: SFNClient) -> None:
        """A task polled, heartbeated and completed at once ends the execution with its output."""
        client = ActivityClient(sfn, worker_name="integration")
        arn = client.create_activity(unique("Progress"))
        machine = create_machine(sfn, {"Work": task_state(arn, HeartbeatSeconds=5)}, "Work")
        execution = start(sfn, machine, {"steps": 3})
        task = client.poll(arn)
        assert task is not None
        assert json.loads(task.input) == {"steps": 3}
        assert client.process(Progress(), task) == Success('{"steps":3}')
        done = wait_for(sfn, execution)
        assert done["status"] == "SUCCEEDED"
        assert json.loads(done["output"]) == {"steps": 3}

    def test_heartbeats_without_heartbeat_seconds_are_accepted(self, sfn: SFNClient) -> None:
        """As on AWS: unpatched LocalStack answers InvalidToken and the execution hangs."""
        client = ActivityClient(sfn, worker_name="integration")
        arn = client.create_activity(unique("Progress"))
        execution = start(sfn, create_machine(sfn, {"Work": task_state(arn)}, "Work"), {"steps": 2})
        task = client.poll(arn)
        assert task is not None
        assert client.process(Progress(), task) == Success('{"steps":2}')
        assert wait_for(sfn, execution)["status"] == "SUCCEEDED"

    def test_failure_reaches_the_execution(self, sfn: SFNClient) -> None:
        """An exception's name and Lambda-shaped cause are what the execution reports."""

        class Refuses(Activity):
            def run(self) -> None:
                raise PermissionError("no entry")

        client = ActivityClient(sfn, worker_name="integration")
        arn = client.create_activity(unique("Refuses"))
        execution = start(sfn, create_machine(sfn, {"Work": task_state(arn)}, "Work"), {})
        task = client.poll(arn)
        assert task is not None
        client.process(Refuses(), task)
        done = wait_for(sfn, execution)
        assert done["status"] == "FAILED"
        assert done["error"] == "PermissionError"
        assert json.loads(done["cause"])["errorMessage"] == "no entry"

    def test_finished_task_token_is_gone(self, sfn: SFNClient) -> None:
        """Heartbeating a task whose execution has ended raises TaskGone.

        (LocalStack accepts the token for a moment while the execution winds up: the test
        waits for the end.)
        """
        client = ActivityClient(sfn, worker_name="integration")
        arn = client.create_activity(unique("Echo"))
        execution = start(sfn, create_machine(sfn, {"Work": task_state(arn)}, "Work"), {"value": 1})
        task = client.poll(arn)
        assert task is not None
        client.send_success(task.token, 1)
        assert wait_for(sfn, execution)["status"] == "SUCCEEDED"
        with pytest.raises(TaskGone):
            client.send_heartbeat(task.token)

    @pytest.mark.parametrize("direct", [True, False], ids=["direct", "botocore"])
    def test_the_calls_on_either_path(self, local_sfn: LocalStepFunctions, direct: bool) -> None:
        """Polls, heartbeats, outcomes and a gone task's error, on the direct path or botocore's."""
        sfn = local_sfn.client(direct=direct)
        client = ActivityClient(sfn, worker_name="integration")
        assert (client._wire is not None) is direct
        arn = client.create_activity(unique("Echo"))
        machine = create_machine(sfn, {"Work": task_state(arn, HeartbeatSeconds=30)}, "Work")
        execution = start(sfn, machine, {"value": [1, "two"]})
        task = client.poll(arn)
        assert task is not None
        assert json.loads(task.input) == {"value": [1, "two"]}
        client.send_heartbeat(task.token)
        client.send_success(task.token, {"echo": "é"})
        done = wait_for(sfn, execution)
        assert done["status"] == "SUCCEEDED"
        assert json.loads(done["output"]) == {"echo": "é"}
        with pytest.raises(TaskGone):
            client.send_heartbeat(task.token)


def alive(pid: int) -> bool:
    """Whether ``pid`` is a running (not zombie) process."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split()[2] != "Z"
    except FileNotFoundError:
        return False
