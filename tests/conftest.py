"""Shared fixtures of the test suite."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from typing import TYPE_CHECKING

import botocore.session
import pytest
from botocore.stub import Stubber

from activities import ActivityClient, RetryPolicy
from activities.local import LocalStepFunctions, free_port
from activities.testing import ActivityEnvironment
from tests.fake_sfn import FakeStepFunctions
from tests.processes import ROOT

if TYPE_CHECKING:
    from collections.abc import Iterator

    from mypy_boto3_s3 import S3Client
    from mypy_boto3_stepfunctions import SFNClient


@pytest.fixture
def env() -> ActivityEnvironment:
    """A stand-in Step Functions that never cancels."""
    return ActivityEnvironment()


@pytest.fixture
def stubbed() -> Iterator[tuple[ActivityClient, Stubber]]:
    """An ActivityClient over a botocore client whose responses the test lays out."""
    session = botocore.session.get_session()
    sfn = session.create_client(
        "stepfunctions",
        region_name="us-east-1",
        aws_access_key_id="test",
        aws_secret_access_key="test",
    )
    with Stubber(sfn) as stubber:
        yield ActivityClient(sfn, worker_name="test-worker"), stubber  # type: ignore[arg-type]
        stubber.assert_no_pending_responses()


#: How long an empty poll of the tests' local Step Functions lasts (60 s on AWS): a graceful
#: stop waits for a worker's open polls, and the suite stops many workers.
POLL_SECONDS = 10.0


@pytest.fixture(scope="session")
def local_sfn() -> Iterator[LocalStepFunctions]:
    """One real local Step Functions for the whole session (starting one costs seconds)."""
    with LocalStepFunctions(poll_seconds=POLL_SECONDS) as local:
        yield local


@pytest.fixture
def sfn(local_sfn: LocalStepFunctions) -> SFNClient:
    """A client of the local Step Functions."""
    return local_sfn.client()


@pytest.fixture(scope="module")
def s3(local_sfn: LocalStepFunctions) -> S3Client:
    """LocalStack's S3, for the claim checks' tests."""
    return local_sfn.s3_client()


@pytest.fixture
def bucket(s3: S3Client, request: pytest.FixtureRequest) -> Iterator[str]:
    """An empty bucket of the test's own, emptied and removed after it."""
    name = "t-" + hashlib.sha256(request.node.nodeid.encode()).hexdigest()[:40]
    s3.create_bucket(Bucket=name)
    yield name
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=name):
        for stored in page.get("Contents", []):
            s3.delete_object(Bucket=name, Key=stored["Key"])
    s3.delete_bucket(Bucket=name)


@pytest.fixture
def bench_endpoint() -> Iterator[str]:
    """The benchmarks' in-memory Step Functions on 127.0.0.1, empty polls ending after 1 s."""
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.endpoint", "--port", str(port), "--poll-wait", "1"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        server.stdout.readline()  # "ready on PORT"
        yield f"http://127.0.0.1:{port}"
    finally:
        server.kill()
        server.wait()
        if server.stdout is not None:
            server.stdout.close()


@pytest.fixture
def fake() -> Iterator[FakeStepFunctions]:
    """An in-memory Step Functions client (see tests.fake_sfn), closed after the test."""
    fake = FakeStepFunctions()
    yield fake
    fake.close()


@pytest.fixture
def never_busy(monkeypatch: pytest.MonkeyPatch) -> None:
    """No task list gets a second poll.

    The limit counts tasks held, not polls open: a poll may open on a busy task list in
    the moment a task its poll brought is not yet held, and then stays open (documented in
    ``HandOff._may_poll``). Tests that count the polls at the limit rule that moment out.
    """
    monkeypatch.setattr("activities.worker._poll.BUSY_WINDOW", 0.0)


@pytest.fixture
def short_cadence(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tasks of activities that declare no heartbeat_seconds are heartbeated every 0.2 s."""
    monkeypatch.setattr("activities._activity.DEFAULT_CADENCE", 0.2)  # cadence() reads it


@pytest.fixture
def long_busy(monkeypatch: pytest.MonkeyPatch) -> None:
    """A task list a poll brought a task for stays busy for the test, however slow the machine."""
    monkeypatch.setattr("activities.worker._poll.BUSY_WINDOW", 600.0)


@pytest.fixture
def quick_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    """Retries of polls and outcomes wait a hundredth of a second: tests of retrying stay fast."""
    monkeypatch.setattr(RetryPolicy, "pause", lambda *_: 0.01)


#: Set (to anything) to keep the session's temporary directory for a look after the run.
KEEP_TMP_VARIABLE = "SFN_ACTIVITIES_KEEP_TEST_TMP"


def pytest_configure(config: pytest.Config) -> None:
    """Give the session a temporary directory of its own, for every process it starts.

    Workers killed on purpose (SIGKILL) cannot clean up after themselves (multiprocessing's
    ``pymp-*`` folders, LocalStack's state): everything the suite's processes make goes
    under one directory, ``$TMPDIR`` for the processes the session starts (pytest-xdist's
    workers included), removed when the session ends.
    """
    if getattr(config, "workerinput", None) is not None:
        return  # a pytest-xdist worker: $TMPDIR is the controller's already
    session_tmp = tempfile.mkdtemp(prefix="sfn-activities-tests-")
    config.stash[_SESSION_TMP] = (os.environ.get("TMPDIR"), session_tmp)
    # For the processes started from now on; this one keeps its own (pytest's tmp_path
    # stays where it was: under it, AF_UNIX paths in a test's folder grow too long).
    os.environ["TMPDIR"] = session_tmp


def pytest_unconfigure(config: pytest.Config) -> None:
    """Remove the session's temporary directory (see :func:`pytest_configure`)."""
    saved = config.stash.get(_SESSION_TMP, None)
    if saved is None:
        return
    previous, session_tmp = saved
    if previous is None:
        os.environ.pop("TMPDIR", None)
    else:
        os.environ["TMPDIR"] = previous
    if not os.environ.get(KEEP_TMP_VARIABLE):
        shutil.rmtree(session_tmp, ignore_errors=True)


_SESSION_TMP = pytest.StashKey[tuple[str | None, str]]()


#: Outcomes of the integration tests' calls, counted where the session is reported.
_INTEGRATION: dict[str, int] = {}


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """Count the integration tests that ran (in pytest-xdist's controller too)."""
    if "integration" not in report.keywords:
        return
    if report.when == "call" or (report.when == "setup" and not report.passed):
        _INTEGRATION[report.outcome] = _INTEGRATION.get(report.outcome, 0) + 1


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Say how many tests ran against a local Step Functions (LocalStack)."""
    if getattr(terminalreporter.config, "workerinput", None) is not None:
        return  # a pytest-xdist worker: the controller reports
    ran = sum(_INTEGRATION.values())
    outcomes = ", ".join(f"{count} {outcome}" for outcome, count in sorted(_INTEGRATION.items()))
    terminalreporter.write_line(
        f"{ran} integration tests against a local Step Functions (LocalStack)"
        + (f": {outcomes}" if outcomes else "")
    )
