"""The local endpoint itself, and the low-level client against real state machines."""

from __future__ import annotations

import ipaddress
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import boto3
import botocore.config
import pytest

import activities._local.listening
from activities import Activity, ActivityClient, Success, TaskGone
from activities._local.listening import listeners
from activities.cli import main
from activities.local import (
    LAUNCHER,
    LocalStepFunctions,
    LocalStepFunctionsError,
    default_home,
    free_port,
    install_localstack,
)
from tests.stepfunctions import create_machine, start, task_state, unique, wait_for

if TYPE_CHECKING:
    from collections.abc import Generator

    from mypy_boto3_stepfunctions import SFNClient

#: The user's AWS settings that must not reach LocalStack: boto3's credential chain.
USER_AWS = {
    "AWS_ACCESS_KEY_ID": "AKIAUSERSREALKEY0000",
    "AWS_SECRET_ACCESS_KEY": "users-real-secret",
    "AWS_SESSION_TOKEN": "users-session-token",
    "AWS_SECURITY_TOKEN": "users-security-token",
    "AWS_PROFILE": "production",
    "AWS_DEFAULT_PROFILE": "production",
    "AWS_SHARED_CREDENTIALS_FILE": "/home/user/.aws/credentials",
    "AWS_CONFIG_FILE": "/home/user/.aws/config",
    "AWS_WEB_IDENTITY_TOKEN_FILE": "/var/run/token",
    "AWS_ROLE_ARN": "arn:aws:iam::123456789012:role/admin",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI": "http://169.254.170.23/v1/credentials",
    "AWS_CONTAINER_AUTHORIZATION_TOKEN": "users-container-token",
    "AWS_ENDPOINT_URL": "https://states.eu-west-1.amazonaws.com",
    "BOTO_CONFIG": "/home/user/.boto",
    "LOCALSTACK_AUTH_TOKEN": "users-localstack-token",
}

#: The only AWS settings LocalStack gets: stand-in credentials, and no file or metadata look-up.
SERVER_AWS = {
    "AWS_ACCESS_KEY_ID": "test",
    "AWS_SECRET_ACCESS_KEY": "test",
    "AWS_CONFIG_FILE": os.devnull,
    "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
    "AWS_EC2_METADATA_DISABLED": "true",
}


class Progress(Activity):
    def run(self, steps: int) -> Generator[None, None, dict[str, Any]]:
        for _ in range(steps):
            yield
        return {"steps": steps}


@pytest.mark.integration
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
            "print(local._process.pid, local._state, flush=True)\n"
            "time.sleep(600)\n"
        )
        owner = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
        try:
            assert owner.stdout is not None
            pid, state = owner.stdout.readline().split()
            server = int(pid)
            assert alive(server)
            assert Path(state).is_dir()
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
        assert not Path(state).exists(), "its state directory is removed with it"

    def test_an_empty_poll_lasts_poll_seconds_and_a_task_is_taken_at_once(
        self, local_sfn: LocalStepFunctions, sfn: SFNClient
    ) -> None:
        """The suite's LocalStack ends empty polls after its poll_seconds, not AWS's 60 s."""
        assert local_sfn.poll_seconds < 60
        arn = sfn.create_activity(name=unique("poll"))["activityArn"]
        # A client that would give up long before an unpatched LocalStack's 60 s answered.
        config = botocore.config.Config(
            read_timeout=local_sfn.poll_seconds + 20, retries={"total_max_attempts": 1}
        )
        client = boto3.client(
            "stepfunctions",
            endpoint_url=local_sfn.endpoint_url,
            config=config,
            region_name="us-east-1",
            aws_access_key_id="test",
            aws_secret_access_key="test",
        )
        assert client.get_activity_task(activityArn=arn).get("taskToken") is None
        machine = create_machine(sfn, {"Only": task_state(arn)}, "Only")
        start(sfn, machine, {"n": 1})
        answered = client.get_activity_task(activityArn=arn)
        assert json.loads(answered["input"]) == {"n": 1}

    @pytest.mark.parametrize("seconds", [0, -1, 61])
    def test_poll_seconds_out_of_range_are_refused(self, seconds: float) -> None:
        with pytest.raises(ValueError, match="poll_seconds"):
            LocalStepFunctions(poll_seconds=seconds)

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


@pytest.mark.integration
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


@pytest.mark.integration
class TestReachableFromLoopbackOnly:
    def test_it_listens_on_127_0_0_1_only(self, local_sfn: LocalStepFunctions) -> None:
        """Its one listening socket, as /proc shows it, is 127.0.0.1 on its port."""
        if not Path("/proc/net/tcp").exists():
            pytest.skip("no /proc/net/tcp on this system: nothing to read the sockets from")
        assert local_sfn._process is not None
        assert listeners(local_sfn.port, local_sfn._process.pid) == [("127.0.0.1", local_sfn.port)]

    def test_other_addresses_of_this_machine_are_refused(
        self, local_sfn: LocalStepFunctions
    ) -> None:
        """A connection to its port on any non-loopback address of this machine is refused."""
        addresses = own_ipv4_addresses()
        if not addresses:
            pytest.skip("this machine has no non-loopback IPv4 address to connect to")
        for address in addresses:
            with pytest.raises(ConnectionRefusedError):
                socket.create_connection((address, local_sfn.port), timeout=5).close()

    def test_another_address_than_its_own_is_refused(self, local_sfn: LocalStepFunctions) -> None:
        """127.0.0.2 is this machine too: a server bound to every interface answers it.

        Unlike the test above, this one never lacks an address to try, so it proves on any
        Linux machine that the bind is to 127.0.0.1 alone (the unpatched server answered).
        """
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.2", local_sfn.port), timeout=5).close()
        socket.create_connection(("127.0.0.1", local_sfn.port), timeout=5).close()

    def test_it_refuses_to_run_when_it_listens_elsewhere(
        self, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
    ) -> None:
        """A listener beyond loopback on its port stops it, with an error that says where."""
        port = free_port()
        (tmp_path / "net").mkdir()
        (tmp_path / "net" / "tcp").write_text(
            "  sl  local_address rem_address   st\n"
            f"   0: 00000000:{port:04X} 00000000:0000 0A 00000000:00000000 00:00000000 "
            "00000000     0        0 4242 1 0000000000000000 100 0 0 10 0\n"
        )
        monkeypatch.setattr(activities._local.listening, "PROC", tmp_path)
        checked = []
        check = LocalStepFunctions._check_loopback_only

        def spy(local: LocalStepFunctions) -> None:
            checked.append((local._process, local._state))
            check(local)

        monkeypatch.setattr(LocalStepFunctions, "_check_loopback_only", spy)
        local = LocalStepFunctions(port=port)
        with pytest.raises(LocalStepFunctionsError, match=f"listens on 0.0.0.0:{port}, not on"):
            local.start()
        [(process, state)] = checked
        assert process is not None
        assert process.poll() is not None, "stopped"
        assert state is not None
        assert not state.exists()
        assert local._process is None

    def test_the_launcher_fails_loudly_without_its_patch_point(self, tmp_path: Path) -> None:
        """A LocalStack whose server has no reactor.listenTCP to wrap is not started at all."""
        code = (
            "import runpy, sys\n"
            "from localstack.runtime.server import twisted\n"
            "del twisted.reactor\n"
            f"runpy.run_path({str(LAUNCHER)!r}, run_name='__main__')\n"
        )
        result = launcher_python(code, tmp_path, GATEWAY_LISTEN="127.0.0.1:9")
        assert result.returncode == 1
        assert result.stderr.strip().endswith(
            "sfn-activities launcher: localstack.runtime.server.twisted has no "
            "reactor.listenTCP to patch"
        )

    def test_the_launcher_binds_wildcards_to_the_gateway_host(self, tmp_path: Path) -> None:
        """After the patch, a listener for every interface gets 127.0.0.1; another is refused."""
        code = (
            "import runpy, sys\n"
            f"launcher = runpy.run_path({str(LAUNCHER)!r})\n"
            "launcher['_bind_to_gateway_host']()\n"
            "from localstack.runtime.server.twisted import reactor\n"
            "from twisted.internet.protocol import Factory\n"
            "port = reactor.listenTCP(0, Factory())\n"
            "print(port.getHost().host)\n"
            "port.stopListening()\n"
            "try:\n"
            "    reactor.listenTCP(0, Factory(), interface='10.9.9.9')\n"
            "except RuntimeError as exc:\n"
            "    print(exc)\n"
        )
        result = launcher_python(code, tmp_path, GATEWAY_LISTEN="127.0.0.1:9")
        assert result.returncode == 0, result.stderr
        assert result.stdout.splitlines() == [
            "127.0.0.1",
            "refusing to listen on 10.9.9.9:0; GATEWAY_LISTEN names 127.0.0.1",
        ]


@pytest.mark.integration
class TestNoUserCredentials:
    def test_the_running_server_has_only_stand_in_credentials(
        self, local_sfn: LocalStepFunctions
    ) -> None:
        """The AWS settings in LocalStack's environment are exactly the fixed stand-ins."""
        assert local_sfn._process is not None
        environ = Path(f"/proc/{local_sfn._process.pid}/environ").read_bytes().decode()
        variables = dict(item.split("=", 1) for item in environ.split("\0") if item)
        assert {k: v for k, v in variables.items() if k.startswith("AWS_")} == SERVER_AWS


class TestServerEnvironment:
    def test_the_users_aws_settings_are_left_out(self, tmp_path: Path) -> None:
        """Credentials, profiles, credential files and endpoints of the user never reach it."""
        local = LocalStepFunctions(port=4566, home=tmp_path / "home")
        local._state = tmp_path
        env = local._server_environment({**USER_AWS, "PATH": "/usr/bin", "LANG": "C.UTF-8"})
        assert {k: v for k, v in env.items() if k.startswith("AWS_")} == SERVER_AWS
        assert not (set(USER_AWS) - set(SERVER_AWS)) & set(env)
        assert not set(env.values()) & set(USER_AWS.values())
        assert env["PATH"] == "/usr/bin"
        assert env["LANG"] == "C.UTF-8"
        assert env["GATEWAY_LISTEN"] == "127.0.0.1:4566"
        assert env["GATEWAY_SERVER"] == "twisted"

    def test_only_what_a_process_needs_is_passed(self, tmp_path: Path) -> None:
        """LocalStack's own settings of the user's never reach it: DEVELOP opens a debugger."""
        local = LocalStepFunctions(port=4566, home=tmp_path / "home")
        local._state = tmp_path
        user = {
            "DEVELOP": "1",
            "PERSISTENCE": "1",
            "DEBUG": "1",
            "LOCALSTACK_HOST": "0.0.0.0",  # noqa: S104 - what the user had, refused
            "GATEWAY_LISTEN": "0.0.0.0:4566",
            "LOCALSTACK_AUTH_TOKEN": "secret",
            "PYTHONPATH": "/somewhere",
            "SOME_APP_SECRET": "secret",
            "LC_ALL": "C.UTF-8",
            "SSL_CERT_FILE": "/etc/ca.pem",
        }
        env = local._server_environment(user)
        for name in ("DEVELOP", "PERSISTENCE", "DEBUG", "LOCALSTACK_HOST"):
            assert name not in env
        assert "PYTHONPATH" not in env
        assert "secret" not in env.values()
        assert env["GATEWAY_LISTEN"] == "127.0.0.1:4566"
        assert env["LC_ALL"] == "C.UTF-8"
        assert env["SSL_CERT_FILE"] == "/etc/ca.pem"


class FakeInstall:
    """Stands in for ``venv`` and ``pip``: records the commands, builds a tiny virtualenv."""

    def __init__(self, *, pip_fails: bool = False) -> None:
        self.commands: list[list[str]] = []
        self.pip_fails = pip_fails

    def __call__(self, command: list[str], what: str) -> None:
        self.commands.append(command)
        if command[1:3] == ["-m", "venv"]:
            venv = Path(command[-1])
            (venv / "bin").mkdir(parents=True)
            (venv / "bin" / "python").symlink_to(sys.executable)
            (venv / "bin" / "activate").write_text(f'VIRTUAL_ENV="{venv}"\n')
            (venv / "pyvenv.cfg").write_text(f"command = python -m venv {venv}\n")
            return
        if self.pip_fails:
            msg = f"could not {what} (exit 1): no network"
            raise LocalStepFunctionsError(msg)
        (Path(command[0]).parent / "localstack").write_text(f"#!{command[0]}\nimport sys\n")


def leftovers(home: Path) -> list[str]:
    """What the installer left beside ``home``, its lock file aside."""
    return sorted(
        entry.name
        for entry in home.parent.iterdir()
        if entry != home and entry.name != f".{home.name}.lock"
    )


class TestInstallLocalStack:
    def test_a_folder_of_the_users_is_refused_and_kept(
        self, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
    ) -> None:
        """An existing folder that is not an installation is named in the error, not deleted."""
        home = tmp_path / "my-project"
        home.mkdir()
        (home / "notes.txt").write_text("mine")
        fake = FakeInstall()
        monkeypatch.setattr("activities._local.install._run", fake)
        with pytest.raises(
            LocalStepFunctionsError,
            match=f"^{home} exists and is not a LocalStack installation of sfn-activities",
        ):
            install_localstack(home)
        assert (home / "notes.txt").read_text() == "mine"
        assert [entry.name for entry in home.iterdir()] == ["notes.txt"]
        assert fake.commands == []
        assert leftovers(home) == []

    def test_installs_beside_then_renames_into_place(
        self, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
    ) -> None:
        """The virtualenv is built in a temporary sibling, moved to ``home``, scripts fixed."""
        home = tmp_path / "localstack"
        fake = FakeInstall()
        monkeypatch.setattr("activities._local.install._run", fake)
        assert install_localstack(home) == home / "bin" / "python"
        assert fake.commands[0][3:5] == ["--prompt", "localstack"]
        staging = Path(fake.commands[0][-1])
        assert staging.parent == tmp_path
        assert staging.name.startswith(".localstack.installing-")
        assert fake.commands[1][0] == str(staging / "bin" / "python")
        assert "--no-compile" in fake.commands[1]
        assert (home / ".sfn-activities-installed").read_text() == "4.9.2"
        assert (home / "bin" / "localstack").read_text().startswith(f"#!{home}/bin/python\n")
        assert str(staging) not in (home / "bin" / "activate").read_text()
        assert str(staging) not in (home / "pyvenv.cfg").read_text()
        assert not (home / ".sfn-activities-installing").exists()
        assert leftovers(home) == []
        assert install_localstack(home) == home / "bin" / "python"
        assert len(fake.commands) == 2, "an installation is reused"

    def test_a_failed_install_leaves_nothing(
        self, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
    ) -> None:
        """pip failing removes the temporary sibling, and ``home`` is not created."""
        home = tmp_path / "localstack"
        monkeypatch.setattr("activities._local.install._run", FakeInstall(pip_fails=True))
        with pytest.raises(LocalStepFunctionsError, match="no network"):
            install_localstack(home)
        assert not home.exists()
        assert leftovers(home) == []

    def test_an_empty_folder_is_filled(
        self, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
    ) -> None:
        """A folder made for it, still empty, receives the installation."""
        home = tmp_path / "localstack"
        home.mkdir()
        monkeypatch.setattr("activities._local.install._run", FakeInstall())
        install_localstack(home)
        assert (home / ".sfn-activities-installed").exists()

    def test_only_its_own_unfinished_installs_are_cleared(
        self, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
    ) -> None:
        """A sibling a killed install left is removed; a look-alike without its mark stays."""
        home = tmp_path / "localstack"
        ours = tmp_path / ".localstack.installing-dead1"
        ours.mkdir()
        (ours / ".sfn-activities-installing").write_text("12345")
        theirs = tmp_path / ".localstack.installing-users"
        theirs.mkdir()
        (theirs / "data").write_text("keep")
        monkeypatch.setattr("activities._local.install._run", FakeInstall())
        install_localstack(home)
        assert not ours.exists()
        assert (theirs / "data").read_text() == "keep"


def alive(pid: int) -> bool:
    """Whether ``pid`` is a running (not zombie) process."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split()[2] != "Z"
    except FileNotFoundError:
        return False


def own_ipv4_addresses() -> list[str]:
    """This machine's own IPv4 addresses other than loopback, from the kernel's routing table."""
    addresses: set[str] = set()
    candidate = None
    try:
        lines = Path("/proc/net/fib_trie").read_text().splitlines()
    except OSError:
        return []
    for line in lines:
        text = line.strip()
        if text.startswith(("|--", "+--")):
            candidate = text[3:].split()[0]
        elif text == "/32 host LOCAL" and candidate is not None:
            addresses.add(candidate)
    return sorted(a for a in addresses if not ipaddress.ip_address(a).is_loopback)


def launcher_python(code: str, state: Path, **environment: str) -> subprocess.CompletedProcess[str]:
    """Run ``code`` with LocalStack's Python, its state kept in ``state``."""
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "OVERRIDE_IN_DOCKER": "0",
        "FILESYSTEM_ROOT": str(state / "root"),
        "LOCALSTACK_VOLUME_DIR": str(state / "volume"),
        "DISABLE_EVENTS": "1",
        **environment,
    }
    return subprocess.run(
        [str(install_localstack()), "-I", "-c", code],
        capture_output=True,
        text=True,
        env=env,
        cwd=state,
        timeout=120,
        check=False,
    )
