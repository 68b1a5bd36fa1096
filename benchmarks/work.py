"""The work each benchmark task does, shared by every contender."""

from __future__ import annotations

import time

#: Seconds of pure-Python CPU work in a CPU-bound task.
CPU_SECONDS = 0.020


def burn(seconds: float = CPU_SECONDS) -> int:
    """Spin pure Python for ``seconds`` of this thread's CPU time; the loop count."""
    deadline = time.thread_time() + seconds
    count = 0
    while time.thread_time() < deadline:
        count += 1
    return count


#: The activities of the "many task lists" scenario, each a zero-work task on a list of its
#: own (:mod:`benchmarks.many` defines them for the worker).
MANY = tuple(f"bench-Many-{index:02d}" for index in range(60))
