from __future__ import annotations

import json
import os
from typing import TYPE_CHECKING, Any

import pytest

from activities import Activity, ConfigurationError, Worker, make_client
from tests import workloads
from tests.stepfunctions import create_machine, start, task_state, wait_for

if TYPE_CHECKING:
    from mypy_boto3_stepfunctions import SFNClient

    from activities.local import LocalStepFunctions


class One(Activity):
    def run(self) -> None: ...


class Two(Activity):
    name = "One"

    def run(self) -> None: ...


@pytest.fixture
def sfn_offline() -> SFNClient:
    """A client that is never called: construction must not touch AWS."""
    return make_client(region_name="us-east-1", endpoint_url="http://127.0.0.1:9")


class TestOptions:
    def test_duplicate_names_name_both_classes(self, sfn_offline: SFNClient) -> None:
        """Two classes under one name cannot be served together."""
        with pytest.raises(ConfigurationError, match=r"test_worker\.One and test_worker\.Two"):
            Worker([One, Two], client=sfn_offline)

    def test_nothing_to_serve(self, sfn_offline: SFNClient) -> None:
        """An empty worker is refused."""
        with pytest.raises(ConfigurationError, match="at least one activity"):
            Worker([], client=sfn_offline)

    def test_processes_or_threads(self, sfn_offline: SFNClient) -> None:
        """The pool is of one kind."""
        with pytest.raises(ConfigurationError, match="either processes or threads"):
            Worker([One], processes=2, threads=2, client=sfn_offline)

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
        self, sfn_offline: SFNClient, option: str, value: float
    ) -> None:
        """A setting out of range fails at construction, naming the setting."""
        with pytest.raises(ConfigurationError, match=option):
            Worker([One], client=sfn_offline, **{option: value})

    def test_defaults(self, sfn_offline: SFNClient) -> None:
        """Processes default to the CPUs, one poller per slot."""
        worker = Worker([One], client=sfn_offline)
        assert worker.concurrency == (os.cpu_count() or 1)
        assert worker.pollers == worker.concurrency
        assert not worker.use_threads

    def test_stop_before_start_returns_at_once(self, sfn_offline: SFNClient) -> None:
        """A worker never started is stopped already."""
        assert Worker([One], client=sfn_offline).stop(timeout=1)


def run_pid_task(sfn: SFNClient, activity: type[Activity]) -> int:
    arn = f"arn:aws:states:us-east-1:000000000000:activity:{activity.name}"
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
        worker = Worker([activity], processes=1, client=local_sfn.client(), **option)
        worker.start()
        try:
            first = run_pid_task(sfn, activity)
            second = run_pid_task(sfn, activity)
        finally:
            worker.terminate()
        assert first != second
        assert os.getpid() not in {first, second}
