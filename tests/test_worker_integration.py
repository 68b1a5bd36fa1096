"""The worker against real state machines on a local Step Functions endpoint."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from typing import TYPE_CHECKING, Any

import pytest

from activities import Worker
from tests import workloads
from tests.processes import running
from tests.shutdown_workload import Slow
from tests.stepfunctions import create_machine, history, start, task_state, unique, wait_for
from tests.waiting import wait_until

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from mypy_boto3_stepfunctions import SFNClient

    from activities.local import LocalStepFunctions

pytestmark = pytest.mark.integration

SERVED = [
    workloads.Echo,
    workloads.Flaky,
    workloads.Picky,
    workloads.Patient,
    workloads.Stubborn,
    workloads.Crasher,
]


@pytest.fixture(scope="module")
def worker(local_sfn: LocalStepFunctions) -> Iterator[Worker]:
    """One process pool for the module, a process per activity."""
    worker = Worker(SERVED, processes=len(SERVED), client=local_sfn.client_factory())
    worker.start()
    yield worker
    worker.terminate()  # no task is left; open polls need not be waited for


def arn(activity: type[Any], prefix: str = "") -> str:
    return f"arn:aws:states:us-east-1:000000000000:activity:{prefix}{activity.name}"


@pytest.mark.usefixtures("worker")
class TestStateMachines:
    def test_one_process_serves_six_activities_at_once(
        self, local_sfn: LocalStepFunctions, sfn: SFNClient, tmp_path: Path
    ) -> None:
        """An execution started on each of six activities at once: none waits for a poll.

        The one task process runs them in turn; the others wait in the worker's buffer,
        and the crash of the process (Crasher) loses none of them: the task that crashed
        it fails with WorkerCrashed, as does the one whose outcome it was still sending.
        A worker of its own, on task lists of its own: the crash abandons a poll of the
        process's, which may take a later task of its task list (LocalStack keeps it).
        """
        prefix = unique("six") + "-"
        inputs = {
            workloads.Echo: {"value": "hi"},
            workloads.Flaky: {"attempt": 1, "succeed_on": 1},
            workloads.Picky: {"quantity": 2},
            workloads.Patient: {"seconds": 0.1, "marker": str(tmp_path / "patient")},
            workloads.Stubborn: {"seconds": 0.1, "marker": str(tmp_path / "stubborn")},
            workloads.Crasher: {},
        }
        worker = Worker(SERVED, processes=1, prefix=prefix, client=local_sfn.client_factory())
        worker.start()
        try:
            executions = {
                activity: start(
                    sfn,
                    create_machine(
                        sfn,
                        {"Run": task_state(arn(activity, prefix), HeartbeatSeconds=10)},
                        "Run",
                    ),
                    data,
                )
                for activity, data in inputs.items()
            }
            done = {
                activity.name: wait_for(sfn, execution, timeout=15)
                for activity, execution in executions.items()
            }
        finally:
            worker.terminate()
        crashed = done.pop(workloads.Crasher.name)
        assert crashed["status"] == "FAILED"
        assert crashed["error"] == "activities.WorkerCrashed"
        ended = {name: (d["status"], d.get("error")) for name, d in done.items()}
        assert all(
            outcome in {("SUCCEEDED", None), ("FAILED", "activities.WorkerCrashed")}
            for outcome in ended.values()
        ), ended
        assert sum(outcome[0] == "SUCCEEDED" for outcome in ended.values()) >= 4, ended

    def test_echo_round_trip(self, sfn: SFNClient) -> None:
        """A state machine's input reaches run() and its return value is the output."""
        machine = create_machine(
            sfn, {"Echo": task_state(arn(workloads.Echo), HeartbeatSeconds=10)}, "Echo"
        )
        done = wait_for(sfn, start(sfn, machine, {"value": {"greeting": "hi", "n": [1, 2]}}))
        assert done["status"] == "SUCCEEDED"
        assert json.loads(done["output"]) == {"greeting": "hi", "n": [1, 2]}

    def test_retry_on_a_custom_error_name(self, sfn: SFNClient) -> None:
        """Retry matches the ActivityError's name; the second attempt succeeds."""
        state = task_state(
            arn(workloads.Flaky),
            Parameters={"attempt.$": "$$.State.RetryCount", "succeed_on": 1},
            Retry=[{"ErrorEquals": ["Inventory.Busy"], "IntervalSeconds": 1, "MaxAttempts": 2}],
        )
        execution = start(sfn, create_machine(sfn, {"Reserve": state}, "Reserve"), {})
        done = wait_for(sfn, execution)
        assert done["status"] == "SUCCEEDED", done
        assert json.loads(done["output"]) == {"attempt": 1}
        failures = [e for e in history(sfn, execution) if e["type"] == "ActivityFailed"]
        assert [f["activityFailedEventDetails"]["error"] for f in failures] == ["Inventory.Busy"]

    def test_catch_on_value_error(self, sfn: SFNClient) -> None:
        """Catch on "ValueError" catches a ValueError raised in run(), with its cause."""
        states = {
            "Pick": task_state(
                arn(workloads.Picky),
                Catch=[{"ErrorEquals": ["ValueError"], "ResultPath": "$.error", "Next": "Caught"}],
                Next="Done",
            ),
            "Caught": {"Type": "Pass", "End": True},
            "Done": {"Type": "Succeed"},
        }
        done = wait_for(sfn, start(sfn, create_machine(sfn, states, "Pick"), {"quantity": 0}))
        assert done["status"] == "SUCCEEDED", done
        error = json.loads(done["output"])["error"]
        assert error["Error"] == "ValueError"
        assert "quantity must be positive" in json.loads(error["Cause"])["errorMessage"]

    def test_invalid_input_is_catchable(self, sfn: SFNClient) -> None:
        """Input that does not fit run() fails as activities.InvalidInput, for a Catch."""
        machine = create_machine(sfn, {"Pick": task_state(arn(workloads.Picky))}, "Pick")
        done = wait_for(sfn, start(sfn, machine, {"quantity": "three"}))
        assert done["status"] == "FAILED"
        assert done["error"] == "activities.InvalidInput"

    @pytest.mark.parametrize(
        ("timeouts", "silence"),
        [({"TimeoutSeconds": 2}, 0), ({"HeartbeatSeconds": 1, "TimeoutSeconds": 60}, 3)],
        ids=["TimeoutSeconds", "HeartbeatSeconds"],
    )
    def test_timed_out_task_cancels_yielding_work(
        self, sfn: SFNClient, tmp_path: Path, timeouts: dict[str, int], silence: float
    ) -> None:
        """When Step Functions times the task out, its next heartbeat raises TaskCancelled."""
        marker = tmp_path / "cancelled"
        state = task_state(arn(workloads.Patient), **timeouts)
        machine = create_machine(sfn, {"Wait": state}, "Wait")
        execution = start(sfn, machine, {"seconds": 60, "marker": str(marker), "silence": silence})
        done = wait_for(sfn, execution)
        assert done["status"] == "FAILED"
        assert done["error"] == "States.Timeout"
        assert wait_until(marker.exists), "the activity never saw TaskCancelled"

    def test_timed_out_task_stops_work_that_never_yields(
        self, sfn: SFNClient, tmp_path: Path
    ) -> None:
        """Automatic heartbeats find the task gone; the process running it is replaced."""
        marker = tmp_path / "pid"
        state = task_state(arn(workloads.Stubborn), TimeoutSeconds=2)
        execution = start(
            sfn,
            create_machine(sfn, {"Wait": state}, "Wait"),
            {"seconds": 600, "marker": str(marker)},
        )
        assert wait_for(sfn, execution)["status"] == "FAILED"
        assert wait_until(marker.exists)
        pid = int(marker.read_text())
        # It ends at once, or when a poll of its own still open returns (up to 60 s):
        # that poll's task must not be lost.
        assert wait_until(lambda: not running(pid), timeout=90), "the stubborn process lives on"

    def test_crashed_process_fails_its_task_at_once(self, sfn: SFNClient) -> None:
        """os._exit in run() fails the task as activities.WorkerCrashed; the pool goes on."""
        machine = create_machine(sfn, {"Crash": task_state(arn(workloads.Crasher))}, "Crash")
        done = wait_for(sfn, start(sfn, machine, {}))
        assert done["status"] == "FAILED"
        assert done["error"] == "activities.WorkerCrashed"
        assert "exit code 3" in json.loads(done["cause"])["errorMessage"]
        echo = create_machine(sfn, {"Echo": task_state(arn(workloads.Echo))}, "Echo")
        assert wait_for(sfn, start(sfn, echo, {"value": 1}))["status"] == "SUCCEEDED"


class TestShutdown:
    """A worker started from the command line, stopped with signals to its process group."""

    @pytest.fixture
    def prefix(self) -> str:
        """A task list of the test's own: a killed worker's open poll cannot take its tasks."""
        return unique("t") + "-"

    @pytest.fixture
    def cli_worker(self, local_sfn: LocalStepFunctions, prefix: str) -> Iterator[Any]:
        processes: list[subprocess.Popen[str]] = []

        def launch(*options: str) -> subprocess.Popen[str]:
            command = ["worker", "tests.shutdown_workload", "--prefix", prefix, *options]
            process = subprocess.Popen(
                [sys.executable, "-m", "activities", *command],
                env={**os.environ, **local_sfn.environment()},
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                start_new_session=True,
            )
            processes.append(process)
            return process

        yield launch
        for process in processes:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            if process.stdout is not None:
                process.stdout.close()

    def slow_machine(self, sfn: SFNClient, prefix: str) -> str:
        """A machine running the Slow activity of this test's task list."""
        name = prefix + Slow.name
        # Created as deployment does, before executions start: the worker may be starting.
        activity_arn = sfn.create_activity(name=name)["activityArn"]
        return create_machine(sfn, {"Slow": task_state(activity_arn)}, "Slow")

    def run_slow_task(
        self,
        sfn: SFNClient,
        tmp_path: Path,
        seconds: float,
        worker: subprocess.Popen[str],
        prefix: str,
    ) -> str:
        """Start a Slow task and wait until the worker runs it; the execution's ARN."""
        marker = tmp_path / "started"
        machine = self.slow_machine(sfn, prefix)
        execution = start(sfn, machine, {"seconds": seconds, "marker": str(marker)})
        if not wait_until(marker.exists):
            os.killpg(worker.pid, signal.SIGKILL)
            output, _ = worker.communicate()
            pytest.fail(f"the task never started; the worker said:\n{output}")
        return execution

    def test_sigterm_lets_the_running_task_finish(
        self, sfn: SFNClient, tmp_path: Path, cli_worker: Any, prefix: str
    ) -> None:
        """SIGTERM to the whole group: the child survives, the task ends, exit code 0."""
        process = cli_worker("--processes", "1")
        execution = self.run_slow_task(sfn, tmp_path, 3, process, prefix)
        os.killpg(process.pid, signal.SIGTERM)
        output, _ = process.communicate(timeout=120)
        assert process.returncode == 0, output
        done = wait_for(sfn, execution)
        assert done["status"] == "SUCCEEDED", output
        assert json.loads(done["output"]) == "slept"
        assert "SIGTERM: stopping gracefully" in output
        # The task process writes its own lines, in the command's format.
        assert re.search(
            r"INFO +sfn-activities-process-\d+ activities\.task: task \S+ succeeded: \S*Slow in",
            output,
        ), output

    def test_task_from_a_poll_in_flight_at_sigterm_is_run(
        self, sfn: SFNClient, tmp_path: Path, cli_worker: Any, prefix: str
    ) -> None:
        """The poll open when the signal comes is not abandoned: what it brings runs."""
        process = cli_worker("--processes", "2")
        assert _wait_for_line(process, "ready: all 2 slots are up")
        first = self.run_slow_task(sfn, tmp_path, 2, process, prefix)
        # The worker reopens a poll on the task list within milliseconds of taking a task.
        time.sleep(0.5)
        os.killpg(process.pid, signal.SIGTERM)
        # That poll is still open (a poll lasts up to 60 s): it takes this task.
        second = start(
            sfn,
            self.slow_machine(sfn, prefix),
            {"seconds": 0, "marker": str(tmp_path / "second-started")},
        )
        output, _ = process.communicate(timeout=120)
        assert process.returncode == 0, output
        assert wait_for(sfn, first)["status"] == "SUCCEEDED"
        assert wait_for(sfn, second)["status"] == "SUCCEEDED", output

    def test_second_signal_stops_at_once(
        self, sfn: SFNClient, tmp_path: Path, cli_worker: Any, prefix: str
    ) -> None:
        """Ctrl-C twice: the running task is failed with WorkerShutdown, exit code 1."""
        process = cli_worker("--processes", "1", "--shutdown-grace", "600")
        execution = self.run_slow_task(sfn, tmp_path, 600, process, prefix)
        os.killpg(process.pid, signal.SIGINT)
        assert _wait_for_line(process, "stopping gracefully")
        os.killpg(process.pid, signal.SIGINT)
        output, _ = process.communicate(timeout=60)
        assert process.returncode == 1, output
        done = wait_for(sfn, execution)
        assert done["status"] == "FAILED"
        assert done["error"] == "activities.WorkerShutdown"

    def test_tasks_past_the_grace_fail_with_worker_shutdown(
        self, sfn: SFNClient, tmp_path: Path, cli_worker: Any, prefix: str
    ) -> None:
        """A task still running when the grace expires is failed, never lost; exit code 1."""
        process = cli_worker("--processes", "1", "--shutdown-grace", "1")
        execution = self.run_slow_task(sfn, tmp_path, 600, process, prefix)
        os.killpg(process.pid, signal.SIGINT)
        output, _ = process.communicate(timeout=120)
        assert process.returncode == 1, output
        done = wait_for(sfn, execution)
        assert done["status"] == "FAILED"
        assert done["error"] == "activities.WorkerShutdown"


def _wait_for_line(process: subprocess.Popen[str], text: str, timeout: float = 30) -> bool:
    """Read the worker's output until a line contains ``text``."""
    assert process.stdout is not None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            return False
        if text in line:
            return True
    return False
