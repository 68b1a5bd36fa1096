"""Task processes: what the worker can do to them, when they recycle, what they inherit."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from typing import TYPE_CHECKING

import pytest

from activities.task import Task
from activities.worker._control import Control
from activities.worker._forkserver import FRAMEWORK_MODULES, task_process_context
from activities.worker._loop import SlotSettings
from activities.worker._process import TaskProcess
from activities.worker._taskprocess import _read, closing, handing
from tests.processes import (
    ROOT,
    bench,
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
    from pathlib import Path

    from activities.worker._slot import Unit


class Owner:
    def on_ready(self, unit: Unit) -> None: ...

    def on_exit(self, unit: Unit, reason: str, *, was_ready: bool) -> None: ...

    def on_recycle(self, unit: Unit) -> None: ...

    def on_free(self) -> None: ...


def test_a_process_stopped_before_it_started_is_no_error() -> None:
    """A stop at once can come while the worker is still starting its processes."""
    context = task_process_context(list(FRAMEWORK_MODULES), fork=False)
    settings = SlotSettings(by_arn={}, heartbeat_intervals={}, worker_name="w")
    control = Control(context, ["arn:a"], slots=3)
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
        _kill_all(worker, pids)


ORPHANED = "the worker's process is gone: ending this task process after its tasks"

#: A worker whose records are forwarded to its own process (a file handler of the user's).
FORWARDING_WORKER = """
import logging, sys
from activities import Worker
from benchmarks import workloads
logging.basicConfig(filename=sys.argv[1], level=logging.INFO)
Worker([workloads.Nothing], processes=2).run()
"""


@pytest.mark.parametrize("run", range(10))
def test_every_orphaned_task_process_says_so(bench_endpoint: str, tmp_path: Path, run: int) -> None:
    """Each task process of a killed worker writes its line itself: 10 runs of 10."""
    lines = _orphaned_lines(
        [sys.executable, "-m", "benchmarks.serve", "Nothing", "--processes", "2"],
        bench_endpoint,
        tmp_path,
    )
    assert len(lines) == 2, lines
    assert all(" ERROR   sfn-activities-process-" in line for line in lines)


def test_an_orphan_whose_records_were_forwarded_writes_to_stderr(
    bench_endpoint: str, tmp_path: Path
) -> None:
    """The worker's process would have written the line: it is gone, so stderr has it."""
    log = tmp_path / "user.log"
    command = [sys.executable, "-c", FORWARDING_WORKER, str(log)]
    lines = _orphaned_lines(command, bench_endpoint, tmp_path, ready_in=log)
    assert len(lines) == 2, lines
    assert all(" ERROR   sfn-activities-process-" in line for line in lines), "the usual format"
    assert ORPHANED not in log.read_text(), "not the file: the worker's process wrote it"


def _orphaned_lines(
    command: list[str], endpoint: str, tmp_path: Path, ready_in: Path | None = None
) -> list[str]:
    """Start ``command``, kill it once its slots are up; the orphan lines on its stderr.

    It says it is ready in ``ready_in``, or on its stderr.
    """
    stderr = tmp_path / "stderr.log"
    with stderr.open("w") as file:
        worker = subprocess.Popen(command, cwd=ROOT, env=bench_environment(endpoint), stderr=file)
    pids: list[int] = []
    try:
        assert wait_until(lambda: len(task_processes(worker.pid)) == 2), "no task processes"
        ready = ready_in or stderr
        assert wait_until(lambda: "ready: all 2 slots are up" in ready.read_text()), "not ready"
        pids = task_processes(worker.pid)
        worker.kill()
        worker.wait()
        assert wait_until(lambda: not any(running(pid) for pid in pids)), "orphans poll on"
    finally:
        _kill_all(worker, pids)
    return [line for line in stderr.read_text().splitlines() if ORPHANED in line]


def test_orphans_under_load_end_their_tasks_and_say_so_once(
    bench_endpoint: str, tmp_path: Path
) -> None:
    """Killed while its slots run and report tasks: no traceback, no "replacing", one line each.

    Their messages to the worker's process (a slot freed, a task for its buffer) meet a
    broken pipe: expected once the worker is gone, and never a reason to end a slot.
    """
    stderr = tmp_path / "stderr.log"
    command = [sys.executable, "-m", "activities", "worker", "tests.fault_workload"]
    with stderr.open("w") as file:
        worker = subprocess.Popen(
            [*command, "--processes", "2", "--threads", "2"],
            cwd=ROOT,
            env=bench_environment(bench_endpoint),
            stderr=file,
        )
    pids: list[int] = []
    try:
        assert wait_until(lambda: "ready: all 4 slots are up" in stderr.read_text())
        # More than the slots take: tasks wait in the worker's buffer, and each slot that
        # frees tells the worker so.
        bench(bench_endpoint, "Load", {"activity": "faults-Pause", "count": 200, "input": "0.3"})
        assert wait_until(lambda: bench(bench_endpoint, "Stats").get("succeeded", 0) >= 24)
        pids = task_processes(worker.pid)
        assert len(pids) == 2
        worker.kill()
        worker.wait()
        assert wait_until(lambda: not any(running(pid) for pid in pids)), "orphans poll on"
    finally:
        _kill_all(worker, pids)
    text = stderr.read_text()
    assert "Traceback" not in text, text
    assert "replacing its process" not in text, text
    assert "the poller failed" not in text, text
    assert len([line for line in text.splitlines() if ORPHANED in line]) == 2, text


def _kill_all(worker: subprocess.Popen[bytes], pids: list[int]) -> None:
    """Whatever a test left running: the worker, and the task processes it started."""
    worker.kill()
    worker.wait()
    for pid in pids:
        if running(pid):
            os.kill(pid, signal.SIGKILL)


def test_a_task_crosses_to_its_process_whole() -> None:
    """The worker's message of a task: every field comes back, an input with newlines too."""
    task = Task(
        token="AAAA/bbb+ccc==" * 100,
        activity_arn="arn:aws:states:eu-west-1:1:activity:Ünïcode",
        worker_name="w",
        input='{"text": "two\\nlines", "more": "\\u00e9"}\n',
    )
    said = _read(handing(3, 17, task), "w")
    assert said == (3, 17, task)
    assert _read(closing(3), "w") == 3
