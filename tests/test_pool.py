"""The worker's units: what a worker of thread slots starts beside them (nothing).

``max_concurrency`` is no longer held by a lock the slots share: the worker's hand-off
counts it in its own process (``tests/test_handoff.py``), so what thread slots share
holds no limit to test here.
"""

from __future__ import annotations

import subprocess
import sys

from tests.processes import ROOT, bench, bench_environment, children, polls_waiting
from tests.waiting import wait_until

#: Makes what thread slots share, then says whether multiprocessing's resource tracker runs.
SHARED_IN_THREADS = """
import multiprocessing.resource_tracker as tracker
from activities.worker._control import Control
from activities.worker._pool import thread_context
from activities.worker._slotstate import Answer, Cells, SlotState
from activities.task import Task
control = Control(thread_context(), ["arn:a"], slots=2)
control.stopping.set()
control.set_waiting(1)
cells = [Cells(thread_context(), 1) for _ in range(2)]  # a thread slot's unit is itself
states = [SlotState(each, 0) for each in cells]
answers = [Answer(each, 0) for each in cells]
states[0].hold(Task(token="t", activity_arn="arn:a", worker_name="w", input=""), 0)
print(tracker._resource_tracker._pid)
"""


def test_what_thread_slots_share_starts_no_resource_tracker() -> None:
    """The tracker is a process of its own: a worker of threads has no use for it."""
    result = subprocess.run(
        [sys.executable, "-c", SHARED_IN_THREADS],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    assert result.stdout.strip() == "None"


def test_a_worker_of_threads_starts_no_other_process(bench_endpoint: str) -> None:
    """After serving tasks, a ``--threads`` worker is one process: no tracker, no forkserver."""
    worker = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.serve", "Nothing", "--threads", "2"],
        cwd=ROOT,
        env=bench_environment(bench_endpoint),
    )
    try:
        assert wait_until(lambda: polls_waiting(bench_endpoint) >= 1), "the worker never polled"
        bench(
            bench_endpoint,
            "Load",
            {"activity": "bench-Nothing", "count": 20, "input": '{"value": 1}'},
        )
        assert wait_until(lambda: bench(bench_endpoint, "Stats").get("succeeded", 0) == 20)
        assert children(worker.pid) == []
    finally:
        worker.kill()
        worker.wait()
