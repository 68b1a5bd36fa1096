"""A real Step Functions endpoint on this machine: LocalStack, installed and run on demand.

AWS cannot be reached from every machine, and moto has no activity API. LocalStack's
Step Functions is a real interpreter of state machines, with activities, ``Retry``/
``Catch`` and heartbeat timeouts. :class:`LocalStepFunctions` installs it on first use
into a virtualenv of its own (it pins its own boto3), starts it listening on 127.0.0.1
only (checked once it runs) and without your AWS credentials, and stops it cleanly. The
test suite and the demo use it; so can your own tests::

    with LocalStepFunctions() as local:
        client = local.client()
        ...

It needs only Python and access to PyPI the first time (about 250 MB, 20 to 60 s).
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING, Any, Self

import boto3

from activities._aws.sfnclient import make_client
from activities._local.install import default_home, install_localstack
from activities._local.listening import is_loopback, listeners
from activities.errors import LocalStepFunctionsError

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from types import TracebackType

    from mypy_boto3_s3 import S3Client
    from mypy_boto3_stepfunctions import SFNClient

__all__ = [
    "LocalStepFunctions",
    "free_port",
    "local_client",
]


logger = logging.getLogger(__name__)

#: The script LocalStack's Python runs: it patches a heartbeat race, then starts LocalStack.
LAUNCHER = Path(__file__).parent / "_local" / "main.py"

#: Seconds to wait for the endpoint to report Step Functions ready.
STARTUP_TIMEOUT = 90.0

#: Seconds :meth:`LocalStepFunctions.stop` takes at most, SIGKILL included (the tutorial
#: promises 10), unless the process does not end even on SIGKILL.
STOP_TIMEOUT = 10.0

#: Seconds LocalStack gets to end on SIGTERM before SIGKILL. Idle, it ends in about 4; it
#: hangs while a long poll or a waiting execution exists. Its state is thrown away either way.
TERM_TIMEOUT = 5.0

#: How long an empty ``GetActivityTask`` lasts, as on AWS.
POLL_SECONDS = 60.0

#: The account, Region and credentials LocalStack accepts.
ACCOUNT_ID = "000000000000"
REGION = "us-east-1"

#: The services LocalStack runs: Step Functions, and S3 for the claim-check transport.
SERVICES = ("stepfunctions", "s3")
ACCESS_KEY_ID = "test"
SECRET_ACCESS_KEY = "test"  # noqa: S105 - LocalStack's fixed stand-in

#: The only variables of the user's environment LocalStack gets (and ``LC_*``): what a
#: process needs to run, find its temporary directory and trust a company's CA. Not the
#: user's AWS credentials, profiles or endpoints, not Python's paths, and not LocalStack's
#: own settings (``DEVELOP=1`` would open a debugger on every interface; ``PERSISTENCE``
#: would keep state): its settings are this module's.
PASSED_VARIABLES = frozenset({
    "PATH",
    "HOME",
    "USER",
    "LOGNAME",
    "LANG",
    "LANGUAGE",
    "TZ",
    "TMPDIR",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
    "REQUESTS_CA_BUNDLE",
    "CURL_CA_BUNDLE",
})  # fmt: skip


def local_client(endpoint_url: str, **kwargs: Any) -> SFNClient:
    """A Step Functions client of a local endpoint, with its dummy credentials and Region.

    Args:
        endpoint_url: e.g. ``http://127.0.0.1:4566``.
        kwargs: passed to :func:`~activities.make_client`.
    """
    session = boto3.Session(
        aws_access_key_id=ACCESS_KEY_ID,
        aws_secret_access_key=SECRET_ACCESS_KEY,
        region_name=REGION,
    )
    return make_client(endpoint_url=endpoint_url, session=session, **kwargs)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _check_port_free(port: int) -> None:
    """Refuse a port something listens on already, at once (LocalStack would retry it)."""
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError as exc:
            msg = f"cannot listen on 127.0.0.1:{port}: {exc.strerror or exc}; choose another --port"
            raise LocalStepFunctionsError(msg) from None


class LocalStepFunctions:
    """A LocalStack Step Functions endpoint on 127.0.0.1, for tests and demos.

    ``start()`` installs LocalStack if needed, starts it in a session of its own (so a
    Ctrl-C meant for you does not reach it) with a fresh state directory, and waits until
    Step Functions is ready. ``stop()`` ends it by its pid and removes its state. As a
    context manager it does both. Should this process die without stopping it, the server
    ends itself within a second: it never outlives its owner.

    Args:
        port: the port to listen on; a free one by default.
        home: LocalStack's virtualenv; see :func:`default_home`.
        startup_timeout: seconds to wait for readiness before giving up.
        poll_seconds: how long an empty ``GetActivityTask`` lasts: 60 s, as on AWS, by
            default. A test suite may set it shorter: a worker's graceful stop waits for
            its open polls.
    """

    def __init__(
        self,
        *,
        port: int | None = None,
        home: Path | None = None,
        startup_timeout: float = STARTUP_TIMEOUT,
        poll_seconds: float = POLL_SECONDS,
    ) -> None:
        if not 0 < poll_seconds <= POLL_SECONDS:
            msg = f"poll_seconds must be over 0 and at most {POLL_SECONDS:g}, got {poll_seconds}"
            raise ValueError(msg)
        self.poll_seconds = poll_seconds
        self.port = port if port is not None else free_port()
        self.home = home if home is not None else default_home()
        self.startup_timeout = startup_timeout
        self._process: subprocess.Popen[bytes] | None = None
        self._state: Path | None = None

    @property
    def endpoint_url(self) -> str:
        """The URL to pass as ``endpoint_url`` (or ``AWS_ENDPOINT_URL``)."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path | None:
        """LocalStack's output, while it runs."""
        return self._state / "localstack.log" if self._state else None

    def environment(self) -> dict[str, str]:
        """Environment variables that point boto3 (and a worker process) at this endpoint."""
        return {
            "AWS_ENDPOINT_URL": self.endpoint_url,
            "AWS_REGION": REGION,
            "AWS_DEFAULT_REGION": REGION,
            "AWS_ACCESS_KEY_ID": ACCESS_KEY_ID,
            "AWS_SECRET_ACCESS_KEY": SECRET_ACCESS_KEY,
        }

    def client(self, **kwargs: Any) -> SFNClient:
        """A Step Functions client for this endpoint (see :func:`~activities.make_client`)."""
        return local_client(self.endpoint_url, **kwargs)

    def s3_client(self) -> S3Client:
        """An S3 client for this endpoint (LocalStack serves S3 too, for claim checks)."""
        session = boto3.Session(
            aws_access_key_id=ACCESS_KEY_ID,
            aws_secret_access_key=SECRET_ACCESS_KEY,
            region_name=REGION,
        )
        return session.client("s3", endpoint_url=self.endpoint_url)

    def client_factory(self, **kwargs: Any) -> Callable[[], SFNClient]:
        """A picklable function that makes clients like :meth:`client`, for worker processes.

        ::

            Worker([Echo], processes=2, client=local.client_factory())
        """
        return functools.partial(local_client, self.endpoint_url, **kwargs)

    def start(self) -> None:
        """Install if needed, start, wait until Step Functions answers, check the bind.

        LocalStack gets none of the user's AWS settings or credentials, nor any other
        variable of the user's environment but ``PASSED_VARIABLES``, and its launcher
        binds it to 127.0.0.1. Once it is
        ready, the sockets it listens on are read from ``/proc`` (where there is one): one
        on any other address stops it.

        Raises:
            LocalStepFunctionsError: the port is in use, it did not become ready (the
                message holds the log's end), or it listens beyond 127.0.0.1.
        """
        if self._process is not None:
            return
        _check_port_free(self.port)
        python = install_localstack(self.home)
        self._state = Path(tempfile.mkdtemp(prefix="sfn-activities-localstack-"))
        env = self._server_environment(os.environ)
        with open(self._state / "localstack.log", "wb") as log:
            self._process = subprocess.Popen(  # noqa: S603 - our own fixed command
                [str(python), "-I", str(LAUNCHER)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=self._state,
                start_new_session=True,
            )
        try:
            self._wait_until_ready()
            self._check_loopback_only()
        except BaseException:
            self.stop()
            raise
        logger.info("local Step Functions ready at %s", self.endpoint_url)

    def _server_environment(self, base: Mapping[str, str]) -> dict[str, str]:
        """LocalStack's environment: ``PASSED_VARIABLES`` of ``base``, and its own settings.

        boto3 inside LocalStack finds the fixed stand-in credentials first and stops looking:
        no ``~/.aws`` file, profile, container or instance credentials are read.
        """
        assert self._state is not None  # noqa: S101 - start() made it
        env = {
            name: value
            for name, value in base.items()
            if name in PASSED_VARIABLES or name.startswith("LC_")
        }
        env.update({
            "AWS_ACCESS_KEY_ID": ACCESS_KEY_ID,
            "AWS_SECRET_ACCESS_KEY": SECRET_ACCESS_KEY,
            "AWS_CONFIG_FILE": os.devnull,
            "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
            "AWS_EC2_METADATA_DISABLED": "true",
            "GATEWAY_LISTEN": f"127.0.0.1:{self.port}",
            "GATEWAY_SERVER": "twisted",  # the server whose bind the launcher fixes
            "SERVICES": ",".join(SERVICES),
            "EAGER_SERVICE_LOADING": "1",
            "DISABLE_EVENTS": "1",
            "SKIP_SSL_CERT_DOWNLOAD": "1",
            "DNS_ADDRESS": "0",
            "OVERRIDE_IN_DOCKER": "0",
            "FILESYSTEM_ROOT": str(self._state / "root"),
            "LOCALSTACK_VOLUME_DIR": str(self._state / "volume"),
            "SFN_ACTIVITIES_PARENT_PID": str(os.getpid()),  # it exits when we are gone
            "SFN_ACTIVITIES_STATE_DIR": str(self._state),  # and removes this
            "SFN_ACTIVITIES_POLL_SECONDS": f"{self.poll_seconds:g}",
        })  # fmt: skip
        return env

    def _check_loopback_only(self) -> None:
        """Refuse a LocalStack that listens anywhere but on loopback (read from ``/proc``)."""
        assert self._process is not None  # noqa: S101 - start() set it
        found = listeners(self.port, self._process.pid)
        if found is None:
            logger.warning(
                "no /proc/net/tcp here: where LocalStack listens is not checked (its launcher "
                "binds it to 127.0.0.1)"
            )
            return
        exposed = [f"{host}:{port}" for host, port in found if not is_loopback(host)]
        if exposed:
            msg = (
                f"LocalStack listens on {', '.join(exposed)}, not on 127.0.0.1 only; "
                f"stopped it rather than serve the network"
            )
            raise LocalStepFunctionsError(msg)
        if not any(port == self.port for _, port in found):
            msg = f"cannot see LocalStack's socket on port {self.port} in /proc/net/tcp"
            raise LocalStepFunctionsError(msg)

    def _wait_until_ready(self) -> None:
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            assert self._process is not None  # noqa: S101 - start() set it
            if self._process.poll() is not None:
                self._fail(f"LocalStack exited at start with code {self._process.returncode}")
            if self._services_ready():
                return
            time.sleep(0.2)
        self._fail(f"Step Functions was not ready within {self.startup_timeout:.0f} s")

    def _services_ready(self) -> bool:
        url = f"{self.endpoint_url}/_localstack/health"
        try:
            with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 - our loopback URL
                health = json.load(response)
        except (OSError, urllib.error.URLError, ValueError):
            return False
        states = health.get("services", {})
        return all(states.get(service) in {"running", "available"} for service in SERVICES)

    def _fail(self, reason: str) -> None:
        log = self.log_path.read_text(errors="replace")[-3000:] if self.log_path else ""
        msg = f"{reason}. The end of LocalStack's log:\n{log}"
        raise LocalStepFunctionsError(msg)

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """Stop the endpoint by its pid and remove its state, within ``timeout`` seconds.

        SIGTERM first; what still runs after ``TERM_TIMEOUT`` (half of ``timeout`` if
        less) gets SIGKILL, and the rest of ``timeout`` to end.
        """
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            deadline = time.monotonic() + timeout
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(min(TERM_TIMEOUT, timeout / 2))
            except subprocess.TimeoutExpired:
                logger.debug("LocalStack did not end on SIGTERM (a poll is open?): SIGKILL")
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                try:
                    process.wait(max(deadline - time.monotonic(), 0.0))
                except subprocess.TimeoutExpired:
                    logger.warning("LocalStack (pid %d) did not end on SIGKILL", process.pid)
        if self._state is not None:
            shutil.rmtree(self._state, ignore_errors=True)
            self._state = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
