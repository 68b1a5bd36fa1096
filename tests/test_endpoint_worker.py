"""A worker's metrics, probes and JSON logs (``--metrics-port``, ``--log-format json``)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from typing import TYPE_CHECKING, Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from activities import ConfigurationError, Worker
from activities._ops import endpoint as _endpoint
from activities._ops.prometheus import DIRECTORY_VARIABLE
from activities.cli import main
from tests import workloads
from tests.fake_sfn import FakeStepFunctions, client_error
from tests.processes import ROOT, bench_environment, running, task_processes
from tests.waiting import wait_until

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

JUDGE = "it-Judge"


pytestmark = pytest.mark.usefixtures("quick_backoff")


def get(address: tuple[str, int], path: str) -> tuple[int, str]:
    """GET ``path`` from a worker's endpoint: the status and the body."""
    url = f"http://{address[0]}:{address[1]}{path}"
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def samples(address: tuple[str, int]) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """The samples of ``/metrics``, by name and labels."""
    status, text = get(address, "/metrics")
    assert status == 200
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(
    found: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str
) -> float:
    """One sample's value (0 when it is not there: a counter not counted yet)."""
    return found.get((name, frozenset(labels.items())), 0.0)


@contextlib.contextmanager
def thread_worker(fake: FakeStepFunctions, **options: Any) -> Iterator[Worker]:
    """A started worker with two threads and metrics on a free port, stopped at the end."""
    worker = Worker([workloads.Echo], threads=2, client=fake, metrics_port=0, **options)  # type: ignore[arg-type]
    worker.start()
    try:
        yield worker
    finally:
        worker.terminate()


class TestInOneProcess:
    """A worker of threads against an in-memory Step Functions."""

    def test_counts_tasks_polls_and_retries(self, fake: FakeStepFunctions) -> None:
        fake.errors["SendTaskSuccess"] = [client_error("ServiceUnavailable", "SendTaskSuccess")]
        for number in range(3):
            fake.add_task("it-Echo", json.dumps({"value": number}))
        fake.add_task("it-Echo", '{"wrong": 1}')
        with thread_worker(fake) as worker:
            assert fake.wait_for(4)
            address = worker.metrics_address
            assert address is not None
            found = samples(address)
        assert (
            value(found, "sfn_activities_tasks_total", activity="it-Echo", outcome="succeeded") == 3
        )
        assert value(found, "sfn_activities_tasks_total", activity="it-Echo", outcome="failed") == 1
        failures = "sfn_activities_task_failures_total"
        assert value(found, failures, activity="it-Echo", error="activities.InvalidInput") == 1
        assert value(found, "sfn_activities_task_duration_seconds_count", activity="it-Echo") == 4
        assert value(found, "sfn_activities_task_wait_seconds_count", activity="it-Echo") == 4
        assert value(found, "sfn_activities_polls_total", activity="it-Echo", result="task") == 4
        assert value(found, "sfn_activities_delivery_retries_total", activity="it-Echo") == 1
        assert value(found, "sfn_activities_slots", state="free", kind="slot") == 2

    def test_async_positions_are_a_kind_of_their_own(self, fake: FakeStepFunctions) -> None:
        with thread_worker(fake, async_tasks=3) as worker:
            address = worker.metrics_address
            assert address is not None
            found = samples(address)
        assert value(found, "sfn_activities_slots", state="free", kind="slot") == 2
        assert value(found, "sfn_activities_slots", state="free", kind="async") == 3

    def test_the_directory_is_the_workers_own_and_goes_at_stop(
        self, fake: FakeStepFunctions, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv(DIRECTORY_VARIABLE, "/somewhere/else")
        with thread_worker(fake) as first, thread_worker(fake) as second:
            assert first.metrics_address != second.metrics_address
            directories = [
                worker._operations._directory.path  # type: ignore[union-attr]
                for worker in (first, second)
            ]
            assert directories[0] != directories[1]
            assert all(os.path.isdir(path) for path in directories)
        assert not any(os.path.exists(path) for path in directories)
        assert os.environ[DIRECTORY_VARIABLE] == "/somewhere/else"

    def test_not_ready_while_every_poll_fails(self, fake: FakeStepFunctions) -> None:
        """Expired credentials, say: the orchestrator sends no work until polls succeed."""
        failing = threading.Event()
        poll = fake.get_activity_task

        def get_activity_task(**kwargs: str) -> dict[str, str]:
            if failing.is_set():
                raise client_error("UnrecognizedClientException", "GetActivityTask")
            return poll(**kwargs)

        fake.get_activity_task = get_activity_task  # type: ignore[method-assign]
        with thread_worker(fake) as worker:
            address = worker.metrics_address
            assert address is not None
            assert wait_until(lambda: get(address, "/readyz")[0] == 200)
            failing.set()
            assert wait_until(lambda: get(address, "/readyz")[0] == 503)
            assert (
                get(address, "/readyz")[1] == "not ready: the last poll of every task list failed\n"
            )
            assert get(address, "/healthz") == (200, "ok\n")
            errors = value(
                samples(address), "sfn_activities_polls_total", activity="it-Echo", result="error"
            )
            assert errors >= 1
            failing.clear()
            assert wait_until(lambda: get(address, "/readyz")[0] == 200)

    def test_not_alive_when_the_hand_off_stalls(self, fake: FakeStepFunctions) -> None:
        with thread_worker(fake) as worker:
            address = worker.metrics_address
            assert address is not None
            assert get(address, "/healthz") == (200, "ok\n")
            assert worker._handoff is not None
            # The hand-off looks again within milliseconds unless it is stuck: hold it.
            with worker._handoff._wake:
                worker._handoff.looked_at -= _endpoint.STALL_AFTER + 1
                status, body = get(address, "/healthz")
            assert status == 503
            assert body.startswith("stalled: the worker's hand-off has not run for")

    def test_a_port_in_use_is_a_clear_error(self, fake: FakeStepFunctions) -> None:
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", 0))
            taken.listen()
            port = taken.getsockname()[1]
            worker = Worker([workloads.Echo], threads=1, client=fake, metrics_port=port)  # type: ignore[arg-type]
            with pytest.raises(
                ConfigurationError, match=f"cannot serve metrics on 127.0.0.1:{port}"
            ):
                worker.start()
        assert worker._operations is not None
        assert worker._operations._directory is None  # removed again


def test_without_the_extra_the_command_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    real = _endpoint.importlib.util.find_spec

    def find_spec(name: str, *args: Any) -> Any:
        return None if name == "prometheus_client" else real(name, *args)

    monkeypatch.setattr(_endpoint.importlib.util, "find_spec", find_spec)
    code = main(["worker", "tests.workloads", "--region", "us-east-1", "--metrics-port", "9090"])
    assert code == 2
    error = capsys.readouterr().err
    assert error == (
        "activities worker: error: metrics need prometheus_client: "
        "python3 -m pip install prometheus_client\n"
    )


def load(endpoint: str, count: int, **task_input: Any) -> None:
    """Queue ``count`` tasks of it-Judge on the benchmarks' endpoint."""
    body = json.dumps({"activity": JUDGE, "count": count, "input": json.dumps(task_input)})
    request = urllib.request.Request(  # noqa: S310 - a local http URL
        endpoint, data=body.encode(), headers={"X-Amz-Target": "Bench.Load"}
    )
    urllib.request.urlopen(request, timeout=10).close()  # noqa: S310


def completed(endpoint: str) -> int:
    request = urllib.request.Request(  # noqa: S310 - a local http URL
        endpoint, data=b"{}", headers={"X-Amz-Target": "Bench.Stats"}
    )
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
        stats = json.load(response)
    return int(stats.get("succeeded", 0)) + int(stats.get("failed", 0))


def counted(address: tuple[str, int], name: str, **labels: str) -> float:
    """One sample's value in a scrape now."""
    return value(samples(address), name, **labels)


TASKS, FAILURES = "sfn_activities_tasks_total", "sfn_activities_task_failures_total"


def test_a_worker_of_two_processes(bench_endpoint: str, tmp_path: Path) -> None:
    """Totals exact across processes, replaced ones' included; probes through a drain."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    address = ("127.0.0.1", port)
    log = tmp_path / "worker.log"
    environment = {**bench_environment(bench_endpoint), "TMPDIR": str(tmp_path)}
    command = [sys.executable, "-m", "activities", "worker", "tests.metrics_workload"]
    command += ["--processes", "2", "--metrics-port", str(port), "--log-format", "json"]
    with log.open("w") as stderr:
        worker = subprocess.Popen(command, cwd=ROOT, env=environment, stderr=stderr)
    try:
        assert wait_until(lambda: _status(address, "/readyz") == 200), "never ready"
        directories = list(tmp_path.glob("sfn-activities-metrics-*"))
        assert len(directories) == 1
        assert counted(address, TASKS, activity=JUDGE, outcome="failed") == 0  # there, at 0

        load(bench_endpoint, 20, verdict="ok")
        load(bench_endpoint, 3, verdict="out-of-stock")
        load(bench_endpoint, 2, verdict="invalid")
        assert wait_until(lambda: completed(bench_endpoint) == 25)
        # Counted once Step Functions took the outcome: a moment after the endpoint saw it.
        assert wait_until(lambda: counted(address, TASKS, activity=JUDGE, outcome="failed") == 5)
        assert counted(address, TASKS, activity=JUDGE, outcome="succeeded") == 20

        _crash(worker.pid, bench_endpoint, address)

        load(bench_endpoint, 20, verdict="ok")
        load(bench_endpoint, 2, verdict="out-of-stock")
        load(bench_endpoint, 3, verdict="invalid")
        assert wait_until(lambda: completed(bench_endpoint) == 51)
        assert wait_until(lambda: counted(address, TASKS, activity=JUDGE, outcome="failed") == 11)
        found = samples(address)
        assert value(found, TASKS, activity=JUDGE, outcome="succeeded") == 40
        assert value(found, FAILURES, activity=JUDGE, error="Inventory.OutOfStock") == 5
        assert value(found, FAILURES, activity=JUDGE, error="ValueError") == 5
        assert value(found, FAILURES, activity=JUDGE, error="activities.WorkerCrashed") == 1
        assert value(found, "sfn_activities_polls_total", activity=JUDGE, result="task") == 51
        assert value(found, "sfn_activities_task_duration_seconds_count", activity=JUDGE) == 50
        assert value(found, "it_judged_total", verdict="invalid") == 5, "the user's own metric"

        _drain(worker, bench_endpoint, address)
        assert not directories[0].exists()
    finally:
        if running(worker.pid):
            worker.kill()
        worker.wait()

    _check_json_lines(log)


def _crash(worker: int, endpoint: str, address: tuple[str, int]) -> None:
    """Kill both task processes while one runs a task: the worker fails it, replaces them."""
    load(endpoint, 1, verdict="ok", seconds=60)
    assert wait_until(lambda: counted(address, "sfn_activities_tasks_running", activity=JUDGE) == 1)
    killed = task_processes(worker)
    assert len(killed) == 2
    for pid in killed:
        os.kill(pid, signal.SIGKILL)
    assert wait_until(lambda: completed(endpoint) == 26), "the task held was not failed"
    assert wait_until(
        lambda: counted(address, "sfn_activities_process_restarts_total", reason="crashed") == 2
    )
    assert wait_until(lambda: len(set(task_processes(worker)) - set(killed)) == 2)
    assert wait_until(lambda: _status(address, "/readyz") == 200)
    # The killed processes' last polls are abandoned: they end empty after the endpoint's
    # poll wait (1 s) if no task is queued meanwhile.
    threading.Event().wait(1.5)


def _drain(worker: subprocess.Popen[bytes], endpoint: str, address: tuple[str, int]) -> None:
    """SIGTERM while a task runs: not ready at once, alive until the exit, the task done."""
    load(endpoint, 1, verdict="ok", seconds=3)
    assert wait_until(
        lambda: value(samples(address), "sfn_activities_tasks_running", activity=JUDGE) == 1
    )
    assert value(samples(address), "sfn_activities_slots", state="busy", kind="slot") == 1
    worker.send_signal(signal.SIGTERM)
    assert wait_until(lambda: _status(address, "/readyz") == 503)
    assert get(address, "/readyz") == (503, "not ready: the worker is stopping\n")
    assert get(address, "/healthz") == (200, "ok\n")  # draining: not to be killed
    assert worker.wait(timeout=60) == 0
    assert completed(endpoint) == 52
    assert _status(address, "/healthz") is None  # gone with the worker


def _check_json_lines(log: Path) -> None:
    """Every line is a JSON object; the task lines carry the task's fields."""
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    assert {"time", "level", "logger", "process", "pid", "message"} <= set(lines[0])
    started = [line for line in lines if line["message"].endswith(f"started: {JUDGE}")]
    ended = [line for line in lines if "outcome" in line]
    assert len(started) == 52
    assert all(line["activity"] == JUDGE and line["token_prefix"] for line in started)
    crashed = [line for line in lines if "died" in line["message"]]
    assert [(line["level"], line["activity"]) for line in crashed] == [("ERROR", JUDGE)]
    assert crashed[0]["error"] == "activities.WorkerCrashed"
    ran = [line for line in ended if line not in crashed]
    outcomes = [line["outcome"] for line in ran]
    assert outcomes.count("succeeded") == 41
    assert outcomes.count("failed") == 10
    assert sorted(line["error"] for line in ran if line["outcome"] == "failed") == (
        ["Inventory.OutOfStock"] * 5 + ["ValueError"] * 5
    )
    assert all(isinstance(line["duration"], float) for line in ran)


def _status(address: tuple[str, int], path: str) -> int | None:
    """The status of ``path``; ``None`` while nothing listens."""
    try:
        return get(address, path)[0]
    except OSError:
        return None


def test_recycled_processes_still_count_and_leave_no_files(
    bench_endpoint: str, tmp_path: Path
) -> None:
    """A process replaced every 3 tasks: exact totals, and a directory that does not grow."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    address = ("127.0.0.1", port)
    environment = {**bench_environment(bench_endpoint), "TMPDIR": str(tmp_path)}
    command = [sys.executable, "-m", "activities", "worker", "tests.metrics_workload"]
    command += ["--processes", "2", "--max-tasks-per-process", "3"]
    command += ["--metrics-port", str(port), "--log-level", "WARNING"]
    worker = subprocess.Popen(command, cwd=ROOT, env=environment)
    try:
        assert wait_until(lambda: _status(address, "/readyz") == 200), "never ready"
        load(bench_endpoint, 30, verdict="ok")
        assert wait_until(lambda: completed(bench_endpoint) == 30)
        assert wait_until(
            lambda: counted(address, TASKS, activity=JUDGE, outcome="succeeded") == 30
        )
        assert wait_until(
            lambda: (
                counted(address, "sfn_activities_process_restarts_total", reason="recycled") >= 8
            )
        )
        (directory,) = tmp_path.glob("sfn-activities-metrics-*")

        def owners() -> set[str]:
            """Whose files the directory holds: pids, and "ended" for ended processes."""
            return {name.rpartition("_")[2].removesuffix(".db") for name in os.listdir(directory)}

        # The worker's own process and the two task processes alive (a replacement may
        # be on its way), and the ended ones' file.
        assert wait_until(lambda: len(owners() - {"ended"}) <= 3), sorted(owners())
        assert "ended" in owners()
        assert counted(address, "sfn_activities_task_duration_seconds_count", activity=JUDGE) == 30
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(timeout=60) == 0
    finally:
        if running(worker.pid):
            worker.kill()
        worker.wait()
