from __future__ import annotations

import contextlib
import functools
import json
import logging
import multiprocessing
import os
import subprocess
import sys
import threading
from typing import TYPE_CHECKING, Any

import pytest

from activities import Activity, ConfigurationError, Worker, make_client
from activities import registry as stop_module_registry
from activities.local import local_client
from activities.worker import _stop as stop_module
from tests import workloads
from tests.fake_sfn import FakeStepFunctions, client_error
from tests.processes import ROOT, bench_environment, running
from tests.stepfunctions import create_machine, start, task_state, unique, wait_for
from tests.waiting import wait_until

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from pathlib import Path

    from mypy_boto3_stepfunctions import SFNClient

    from activities.local import LocalStepFunctions


pytestmark = pytest.mark.usefixtures("quick_backoff")


class One(Activity):
    def run(self) -> None: ...


class Two(Activity):
    name = "One"

    def run(self) -> None: ...


def local_in_parent_only(endpoint_url: str) -> SFNClient:
    """A client of the local endpoint in the worker's process; an error in a task process."""
    if multiprocessing.parent_process() is not None:
        msg = "no credentials in this process"
        raise RuntimeError(msg)
    return local_client(endpoint_url)


def offline() -> SFNClient:
    """A client that is never called: construction must not touch AWS."""
    return make_client(region_name="us-east-1", endpoint_url="http://127.0.0.1:9")


@pytest.fixture
def sfn_offline() -> Callable[[], SFNClient]:
    """A picklable factory of clients that are never called."""
    return offline


class TestOptions:
    def test_duplicate_names_name_both_classes(self, sfn_offline: Callable[[], SFNClient]) -> None:
        """Two classes under one name cannot be served together."""
        with pytest.raises(ConfigurationError, match=r"test_worker\.One and test_worker\.Two"):
            Worker([One, Two], client=sfn_offline)

    def test_nothing_to_serve(self, sfn_offline: Callable[[], SFNClient]) -> None:
        """An empty worker is refused."""
        with pytest.raises(ConfigurationError, match="no activity to serve"):
            Worker([], client=sfn_offline)

    def test_processes_of_threads(self, sfn_offline: Callable[[], SFNClient]) -> None:
        """processes and threads together: threads in each task process, none in the worker's."""
        worker = Worker([One], processes=2, threads=3, client=sfn_offline)
        assert worker.settings.concurrency == 6
        assert worker.settings.slots_per_unit == 3
        assert not worker.settings.use_threads

    def test_a_client_cannot_be_shared_with_processes_of_threads(self) -> None:
        with pytest.raises(ConfigurationError, match=r"client: .* pass a function"):
            Worker([One], processes=2, threads=3, client=offline())

    @pytest.mark.parametrize(
        ("option", "value"),
        [
            ("pollers", 0),
            ("processes", -1),
            ("shutdown_grace", -1.0),
            ("shutdown_grace", float("nan")),
            ("max_tasks_per_process", 0),
            ("max_memory_per_process", 0),
        ],
    )
    def test_bad_settings_name_themselves(
        self, sfn_offline: Callable[[], SFNClient], option: str, value: float
    ) -> None:
        """A setting out of range fails at construction, naming the setting."""
        with pytest.raises(ConfigurationError, match=option):
            Worker([One], client=sfn_offline, **{option: value})

    def test_defaults(self, sfn_offline: Callable[[], SFNClient]) -> None:
        """Processes default to the CPUs; polls are not capped."""
        worker = Worker([One], client=sfn_offline)
        assert worker.settings.concurrency == (os.cpu_count() or 1)
        assert worker.settings.pollers is None
        assert not worker.settings.use_threads

    def test_a_client_cannot_be_shared_with_processes(self) -> None:
        """Each process makes its own client: a client instance is refused, with the way out."""
        with pytest.raises(ConfigurationError, match=r"client: .* pass a function that makes one"):
            Worker([One], processes=1, client=offline())

    def test_a_client_can_be_shared_by_threads(self) -> None:
        """Threads share the worker's client."""
        client = offline()
        assert Worker([One], threads=1, client=client).client.client is client

    def test_client_factory_must_be_picklable(self) -> None:
        """A factory that cannot reach the processes is refused at construction."""
        with pytest.raises(ConfigurationError, match="must be picklable"):
            Worker([One], processes=1, client=lambda: offline())  # noqa: PLW0108 - a lambda cannot be pickled

    def test_stop_before_start_returns_at_once(self, sfn_offline: Callable[[], SFNClient]) -> None:
        """A worker never started is stopped already."""
        assert Worker([One], client=sfn_offline).stop(timeout=1)


@contextlib.contextmanager
def thread_worker(
    fake: FakeStepFunctions, *activities: type[Activity], **options: Any
) -> Iterator[Worker]:
    """A started worker with two threads, stopped at once when the block ends."""
    worker = Worker(activities, threads=2, client=fake, **options)  # type: ignore[arg-type]
    worker.start()
    try:
        yield worker
    finally:
        worker.terminate()


class TestMachinery:
    """The worker's own behaviour, in threads, against an in-memory Step Functions."""

    def test_pollers_survive_every_kind_of_error(self, fake: FakeStepFunctions) -> None:
        """Throttling, service errors, network errors and bugs: the poller goes on."""
        fake.errors["GetActivityTask"] = [
            client_error("ThrottlingException", "GetActivityTask"),
            client_error("ActivityWorkerLimitExceeded", "GetActivityTask"),
            client_error("InternalFailure", "GetActivityTask"),
            RuntimeError("a bug in a dependency"),
        ]
        token = fake.add_task("it-Echo", '{"value": 1}')
        with thread_worker(fake, workloads.Echo):
            assert fake.wait_for(1)
        assert fake.successes[token] == "1"

    def test_its_first_line_counts_the_tasks_that_may_wait(
        self, fake: FakeStepFunctions, caplog: pytest.LogCaptureFixture
    ) -> None:
        """One task list: "up to 1 task may wait", not "1 tasks"."""
        caplog.set_level(logging.INFO, logger="activities.worker")
        with thread_worker(fake, workloads.Echo):
            pass
        said = " ".join(record.getMessage() for record in caplog.records)
        assert "; up to 1 task may wait for a free slot" in said

    def test_outcomes_are_retried_until_delivered(self, fake: FakeStepFunctions) -> None:
        """A result that could not be sent is sent again, not lost."""
        fake.errors["SendTaskSuccess"] = [
            client_error("ServiceUnavailable", "SendTaskSuccess"),
            client_error("ThrottlingException", "SendTaskSuccess"),
        ]
        token = fake.add_task("it-Echo", '{"value": "kept"}')
        with thread_worker(fake, workloads.Echo):
            assert fake.wait_for(1)
        assert fake.successes[token] == '"kept"'
        assert fake.calls["SendTaskSuccess"] == 3

    def test_outcome_of_a_gone_task_is_not_retried(
        self, fake: FakeStepFunctions, caplog: pytest.LogCaptureFixture
    ) -> None:
        """TaskTimedOut on the result ends the delivery with a warning."""
        token = fake.add_task("it-Echo", '{"value": 1}')
        fake.gone.add(token)
        with thread_worker(fake, workloads.Echo) as worker:
            assert wait_until(lambda: fake.calls["SendTaskSuccess"] >= 1)
            assert worker.stop(timeout=10)
        assert fake.calls["SendTaskSuccess"] == 1
        assert "closed by Step Functions before its outcome arrived" in caplog.text

    def test_heartbeats_are_coalesced(self, fake: FakeStepFunctions) -> None:
        """Five thousand yields in a moment cost no heartbeat: none is due before the cadence
        (10 s from the task's receipt, without heartbeat_seconds)."""
        token = fake.add_task("it-Chatty", '{"times": 5000}')
        with thread_worker(fake, workloads.Chatty):
            assert fake.wait_for(1)
        assert fake.successes[token] == "5000"
        assert fake.heartbeats[token] == 0

    def test_one_info_line_per_start_and_end_without_the_input(
        self, fake: FakeStepFunctions, caplog: pytest.LogCaptureFixture
    ) -> None:
        """Start and end are logged with name, token prefix, outcome and duration; input never."""
        fake.add_task("it-Sleepy", '{"seconds": 0, "secret": "hunter2"}')
        with (
            caplog.at_level(logging.INFO, logger="activities"),
            thread_worker(fake, workloads.Sleepy),
        ):
            assert fake.wait_for(1)
        lines = [r.getMessage() for r in caplog.records if r.name == "activities.task"]
        started = [line for line in lines if "started" in line and "token-0001" in line]
        ended = [line for line in lines if "succeeded" in line and "token-0001" in line]
        assert started == ["task token-0001-x started: it-Sleepy"]
        assert len(ended) == 1
        assert "it-Sleepy in 0.0" in ended[0]
        assert "hunter2" not in caplog.text

    def test_graceful_stop_lets_running_tasks_finish(self, fake: FakeStepFunctions) -> None:
        """stop() waits for the task in progress; its result is delivered; the drain is clean."""
        token = fake.add_task("it-Sleepy", '{"seconds": 0.5}')
        with thread_worker(fake, workloads.Sleepy) as worker:
            assert wait_until(lambda: worker_busy(worker))
            assert worker.stop(timeout=10)
        assert fake.successes[token] == "0.5"
        assert worker.clean

    def test_a_graceful_stop_says_what_it_waits_for(
        self,
        fake: FakeStepFunctions,
        caplog: pytest.LogCaptureFixture,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        """One line: the open polls, which may take up to 60 s; then, every so often,
        the tasks and polls it still waits for."""
        monkeypatch.setattr(stop_module, "DRAIN_REPORT_INTERVAL", 0.2)
        caplog.set_level(logging.INFO, logger="activities.worker")
        token = fake.add_task("it-Sleepy", '{"seconds": 1.0}')
        with thread_worker(fake, workloads.Sleepy) as worker:
            assert wait_until(lambda: worker_busy(worker))
            assert wait_until(lambda: sum(fake.polling.values()) >= 1)
            worker.request_stop()
            assert wait_until(lambda: "still stopping: 1 task running" in caplog.text)
            assert worker.join(timeout=10)
        assert fake.successes[token] == "1.0"
        said = [record.getMessage() for record in caplog.records]
        [waiting] = [line for line in said if line.startswith("stopping gracefully")]
        assert "still open may" in waiting
        assert "up to 60 s to return" in waiting

    def test_worker_overrides_the_heartbeat_interval(self, fake: FakeStepFunctions) -> None:
        """A worker's heartbeat interval for an activity wins over the class's."""
        token = fake.add_task("it-Sleepy", '{"seconds": 0.8}')
        with thread_worker(fake, workloads.Sleepy, heartbeat_intervals={"it-Sleepy": 0.1}):
            assert fake.wait_for(1)
        assert workloads.Sleepy.heartbeat_interval is None
        assert fake.heartbeats[token] >= 2

    def test_the_override_reaches_tasks_waiting_for_a_slot(self, fake: FakeStepFunctions) -> None:
        """A task waiting in the buffer is heartbeated at the worker's interval, not the
        default cadence (10 s)."""
        fake.add_task("it-Sleepy", '{"seconds": 1.5}')
        waiting = fake.add_task("it-Sleepy", '{"seconds": 0}')
        worker = Worker(
            [workloads.Sleepy],
            threads=1,
            buffer=1,
            client=fake,  # type: ignore[arg-type]
            heartbeat_intervals={"it-Sleepy": 0.1},
        )
        worker.start()
        try:
            assert fake.wait_for(2)
        finally:
            worker.terminate()
        assert fake.heartbeats[waiting] >= 3

    def test_heartbeat_override_for_nothing_served_is_refused(
        self, sfn_offline: Callable[[], SFNClient]
    ) -> None:
        """A misspelt activity in an override is said, naming the setting."""
        with pytest.raises(ConfigurationError, match="heartbeat_intervals: 'Onee'"):
            Worker([One], client=sfn_offline, heartbeat_intervals={"Onee": 5})

    def test_a_cap_on_polls_below_the_task_lists_is_warned_about(
        self, fake: FakeStepFunctions, caplog: pytest.LogCaptureFixture
    ) -> None:
        """A worker that cannot keep a poll open on every task list says so at start."""
        worker = Worker(
            [workloads.Echo, workloads.Sleepy, workloads.Chatty],
            threads=2,
            pollers=2,
            client=fake,  # type: ignore[arg-type]
        )
        worker.start()
        worker.terminate()
        assert "3 task lists but at most 2 pollers" in caplog.text

    def test_stuck_thread_does_not_hold_up_the_stop(self, fake: FakeStepFunctions) -> None:
        """A thread still busy after its task was failed at the deadline is not waited for."""
        token = fake.add_task("it-Sleepy", '{"seconds": 30}')
        with thread_worker(fake, workloads.Sleepy, shutdown_grace=0.1) as worker:
            assert wait_until(lambda: worker_busy(worker))
            assert worker.stop(timeout=10), "the drain waited for the stuck thread"
        assert fake.failures[token][0] == "activities.WorkerShutdown"

    def test_tasks_past_the_grace_fail_with_worker_shutdown(self, fake: FakeStepFunctions) -> None:
        """A thread cannot be killed: its task fails at the deadline, its late result is dropped."""
        token = fake.add_task("it-Sleepy", '{"seconds": 1.5}')
        with thread_worker(fake, workloads.Sleepy, shutdown_grace=0.1) as worker:
            assert wait_until(lambda: worker_busy(worker))
            worker.request_stop()
            assert fake.wait_for(1)
            assert worker.join(timeout=10)
        assert fake.failures[token][0] == "activities.WorkerShutdown"
        assert token not in fake.successes
        assert not worker.clean

    def test_a_task_the_worker_fails_is_named_in_the_log(
        self, fake: FakeStepFunctions, caplog: pytest.LogCaptureFixture
    ) -> None:
        """Not only the exit code says that the grace expired: a line per task does."""
        token = fake.add_task("it-Sleepy", '{"seconds": 1.5}')
        with thread_worker(fake, workloads.Sleepy, shutdown_grace=0.1) as worker:
            assert wait_until(lambda: worker_busy(worker))
            with caplog.at_level(logging.WARNING, logger="activities.worker"):
                worker.request_stop()
                assert fake.wait_for(1)
                assert worker.join(timeout=10)
        named = [record for record in caplog.records if token[:12] in record.getMessage()]
        assert [record.levelno for record in named] == [logging.WARNING]
        assert named[0].activity == "it-Sleepy"
        assert named[0].error == "activities.WorkerShutdown"
        assert "it-Sleepy failed with activities.WorkerShutdown" in named[0].getMessage()


def worker_busy(worker: Worker) -> bool:
    return any(slot.state.answering() for slot in worker._current_slots())


def run_pid_task(sfn: SFNClient, activity: type[Activity] | str) -> int:
    name = activity if isinstance(activity, str) else activity.name
    arn = f"arn:aws:states:us-east-1:000000000000:activity:{name}"
    machine = create_machine(sfn, {"Pid": task_state(arn)}, "Pid")
    done = wait_for(sfn, start(sfn, machine, {}))
    assert done["status"] == "SUCCEEDED", done
    pid: Any = json.loads(done["output"])
    return int(pid)


@pytest.mark.integration
class TestPools:
    def test_threads_run_tasks_in_the_worker_process(
        self, local_sfn: LocalStepFunctions, sfn: SFNClient
    ) -> None:
        """threads=N runs tasks in this process, for I/O-bound work."""
        worker = Worker([workloads.ThreadPid], threads=2, client=local_sfn.client())
        worker.start()
        try:
            assert run_pid_task(sfn, workloads.ThreadPid) == os.getpid()
        finally:
            worker.terminate()

    def test_one_class_on_two_task_lists(
        self, local_sfn: LocalStepFunctions, sfn: SFNClient
    ) -> None:
        """With task lists, tasks of either activity reach the same code."""
        lists = {workloads.TaskListPid.name: ["pid-gpu", "pid-cpu"]}
        worker = Worker(
            [workloads.TaskListPid],
            processes=2,
            client=local_sfn.client_factory(),
            task_lists=lists,
        )
        worker.start()
        try:
            pids = {run_pid_task(sfn, name) for name in ("pid-gpu", "pid-cpu")}
        finally:
            worker.terminate()
        assert len(pids) >= 1
        assert os.getpid() not in pids

    def test_log_records_of_task_processes_reach_the_worker(
        self, local_sfn: LocalStepFunctions, sfn: SFNClient, caplog: pytest.LogCaptureFixture
    ) -> None:
        """A task process's records (the framework's and run()'s) are handled by the worker's
        process, at the levels set there."""
        caplog.set_level(logging.INFO, logger="activities")
        worker = Worker([workloads.LoudPid], processes=1, client=local_sfn.client_factory())
        worker.start()
        try:
            pid = run_pid_task(sfn, workloads.LoudPid)
        finally:
            worker.terminate()
        assert pid != os.getpid()
        assert f"hello from {pid}" in [r.getMessage() for r in caplog.records]
        started = [r for r in caplog.records if r.name == "activities.task" and "started" in r.msg]
        assert started, "the task process's INFO line did not arrive"
        assert all(r.process == pid for r in started)

    def test_a_process_that_cannot_make_its_client_says_why_and_is_retried(
        self, local_sfn: LocalStepFunctions, caplog: pytest.LogCaptureFixture
    ) -> None:
        """The factory's error reaches the worker's log; the process is replaced, with a pause."""
        factory = functools.partial(local_in_parent_only, local_sfn.endpoint_url)
        worker = Worker([workloads.LoudPid], processes=1, client=factory)
        worker.start()
        try:
            assert wait_until(lambda: "ended before it was ready" in caplog.text)
        finally:
            worker.terminate()
        assert "could not make its Step Functions client" in caplog.text
        assert "no credentials in this process" in caplog.text

    @pytest.mark.parametrize(
        ("activity", "option"),
        [
            (workloads.RecycleByCount, {"max_tasks_per_process": 1}),
            (workloads.RecycleByMemory, {"max_memory_per_process": 1}),
        ],
    )
    def test_processes_are_recycled(
        self,
        local_sfn: LocalStepFunctions,
        sfn: SFNClient,
        activity: type[Activity],
        option: dict[str, int],
    ) -> None:
        """Past the task count or memory ceiling, the process is replaced by a new one."""
        worker = Worker([activity], processes=1, client=local_sfn.client_factory(), **option)
        worker.start()
        try:
            first = run_pid_task(sfn, activity)
            second = run_pid_task(sfn, activity)
        finally:
            worker.terminate()
        assert first != second
        assert os.getpid() not in {first, second}

    def test_processes_of_threads_run_tasks_side_by_side_in_each_process(
        self, local_sfn: LocalStepFunctions, sfn: SFNClient, tmp_path: Path
    ) -> None:
        """processes=2, threads=2: four tasks at once, two threads in each of two processes."""
        prefix = unique("pxt") + "-"
        worker = Worker(
            [workloads.Rendezvous],
            processes=2,
            threads=2,
            prefix=prefix,
            client=local_sfn.client_factory(),
        )
        worker.start()
        try:
            arn = sfn.create_activity(name=prefix + workloads.Rendezvous.name)["activityArn"]
            machine = create_machine(sfn, {"Meet": task_state(arn)}, "Meet")
            executions = [
                start(sfn, machine, {"directory": str(tmp_path), "count": 4}) for _ in range(4)
            ]
            done = [wait_for(sfn, execution, timeout=60) for execution in executions]
        finally:
            worker.terminate()
        assert all(d["status"] == "SUCCEEDED" for d in done), done
        places = [json.loads(d["output"]) for d in done]
        assert all(place["met"] for place in places), places
        pids = {place["pid"] for place in places}
        assert len(pids) == 2
        assert os.getpid() not in pids
        assert len({(place["pid"], place["thread"]) for place in places}) == 4

    def test_a_task_that_ignores_cancellation_recycles_its_process_after_the_others(
        self, local_sfn: LocalStepFunctions, sfn: SFNClient, tmp_path: Path
    ) -> None:
        """processes=1, threads=2: the slot beside a stuck task finishes its own first.

        The stuck task's process takes no new task, lets the other task end and be
        reported, then exits; a new process serves what comes next.
        """
        prefix = unique("stuck") + "-"
        served = [workloads.Stubborn, workloads.Sleepy, workloads.Pid]
        worker = Worker(
            served, processes=1, threads=2, prefix=prefix, client=local_sfn.client_factory()
        )
        worker.start()
        try:
            arns = {
                activity: sfn.create_activity(name=prefix + activity.name)["activityArn"]
                for activity in served
            }
            marker = tmp_path / "stubborn"
            stubborn = start(
                sfn,
                create_machine(
                    sfn, {"Wait": task_state(arns[workloads.Stubborn], TimeoutSeconds=2)}, "Wait"
                ),
                {"seconds": 600, "marker": str(marker)},
            )
            assert wait_until(marker.exists)
            # Longer than the stuck task takes to be found gone and not to stop (2 + 5 s).
            sleepy = start(
                sfn,
                create_machine(sfn, {"Sleep": task_state(arns[workloads.Sleepy])}, "Sleep"),
                {"seconds": 12},
            )
            assert wait_for(sfn, stubborn)["status"] == "FAILED"
            assert wait_for(sfn, sleepy, timeout=60)["status"] == "SUCCEEDED"
            stuck_pid = int(marker.read_text())
            assert wait_until(lambda: not running(stuck_pid), timeout=90), "it lives on"
            assert run_pid_task(sfn, prefix + workloads.Pid.name) not in {stuck_pid, os.getpid()}
        finally:
            worker.terminate()


#: A worker of two task processes whose start is interrupted by a signal (sent from inside
#: the registration of its activities), run as ``activities worker`` runs it.
_SIGNALLED_WHILE_STARTING = """
import logging, os, signal, sys
from activities import Worker, registry
logging.basicConfig(level=logging.INFO)
from tests.fault_workload import Pause

register = registry.register
def interrupted(*args, **kwargs):
    arns = register(*args, **kwargs)
    for name in sys.argv[1:]:
        os.kill(os.getpid(), getattr(signal, name))
    return arns
registry.register = interrupted
worker = Worker([Pause], processes=2)
code = worker.run()
print("units", len(worker._current_units()), "code", code, flush=True)
sys.exit(code)
"""


class TestStopWhileStarting:
    """A stop asked for while the worker starts is carried out, and the process exits."""

    def run(self, endpoint: str, *signals: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-c", _SIGNALLED_WHILE_STARTING, *signals],
            cwd=ROOT,
            env=bench_environment(endpoint),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    def test_sigterm_while_starting_stops_it_and_the_process_exits(
        self, bench_endpoint: str
    ) -> None:
        done = self.run(bench_endpoint, "SIGTERM")
        assert done.returncode == 0, done.stderr
        assert "units 0 code 0" in done.stdout, "no task process was started to be drained"
        assert "INFO:activities.worker:stopped" in done.stderr, done.stderr

    def test_a_second_signal_while_starting_stops_it_at_once(self, bench_endpoint: str) -> None:
        done = self.run(bench_endpoint, "SIGINT", "SIGINT")
        assert "units 0" in done.stdout, done.stderr
        assert done.returncode == 1, done.stderr

    def test_stop_from_another_thread_while_starting(self, fake: FakeStepFunctions) -> None:
        worker = Worker([One], threads=2, client=fake)  # type: ignore[arg-type]
        register = stop_module_registry.register

        def interrupted(*args: Any, **kwargs: Any) -> Any:
            arns = register(*args, **kwargs)
            stopper = threading.Thread(target=worker.request_stop)
            stopper.start()
            stopper.join()
            return arns

        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(stop_module_registry, "register", interrupted)
            worker.start()
        assert worker.join(timeout=30), "the stop asked for while starting was lost"
        assert worker._current_units() == []
