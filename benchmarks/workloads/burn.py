"""CPU-bound tasks: ``activities worker benchmarks.workloads.burn``."""

from __future__ import annotations

from typing import Any

from activities import Activity
from benchmarks.work import burn


class Burn(Activity):
    """20 ms of pure-Python CPU work."""

    name = "bench-Burn"

    def run(self, value: Any) -> int:
        """Burn 20 ms of this thread's CPU time; the loop count."""
        return burn()
