"""Task processes: what the worker can do to them, when they recycle, what they inherit."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from typing import TYPE_CHECKING

from activities._control import Control
from activities._forkserver import FRAMEWORK_MODULES, task_process_context
from activities._loop import SlotSettings
from activities._process import TaskProcess
from tests.processes import (
    ROOT,
    bench_environment,
    children,
    forkservers,
    name,
    polls_waiting,
    running,
    task_processes,
)
from tests.waiting import wait_until

if TYPE_CHECKING:
    from activities._slot import Unit
    from activities.task import Task


class Owner:
    def on_ready(self, unit: Unit) -> None: ...

    def on_exit(self, unit: Unit, reason: str, *, was_ready: bool) -> None: ...

    def on_overflow(self, task: Task) -> None: ...

    def on_free(self) -> None: ...


def test_a_process_stopped_before_it_started_is_no_error() -> None:
    """A stop at once can come while the worker is still starting its processes."""
    context = task_process_context(list(FRAMEWORK_MODULES), fork=False)
    settings = SlotSettings(by_arn={}, heartbeat_intervals={}, worker_name="w")
    control = Control(context, ["arn:a"], slots=3, pollers=None)
    process = TaskProcess(settings, control, Owner(), context, positions=[0, 1, 2])
    assert [slot.position for slot in process.slots] == [0, 1, 2]
    assert [slot.name for slot in process.slots] == [f"{process.name}.{n}" for n in (1, 2, 3)]
    assert not any(slot.ready for slot in process.slots)
    assert process.terminate()
    assert not process.is_alive()


def test_task_processes_end_when_the_worker_process_is_killed(bench_endpoint: str) -> None:
    """Nobody would drain or replace them: they stop polling and exit, the forkserver too."""
    environment = bench_environment(bench_endpoint)
    worker = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.serve", "Nothing", "--processes", "2"],
        cwd=ROOT,
        env=environment,
    )
    pids: list[int] = []
    try:
        assert wait_until(
            lambda: polls_waiting(bench_endpoint) >= 1 and len(task_processes(worker.pid)) == 2
        ), "the slots never polled"
        pids = task_processes(worker.pid) + forkservers(worker.pid)
        pids += [child for child in children(worker.pid) if name(child) == "sfn-tracker"]
        assert len(pids) == 4  # the task processes, their forkserver, the resource tracker
        worker.kill()
        worker.wait()
        assert wait_until(lambda: not any(running(pid) for pid in pids)), "orphans poll on"
    finally:
        worker.kill()
        worker.wait()
        for pid in pids:
            if running(pid):
                os.kill(pid, signal.SIGKILL)
