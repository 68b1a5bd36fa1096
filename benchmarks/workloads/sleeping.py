"""A second of I/O the sync way: ``activities worker benchmarks.workloads.sleeping``."""

from __future__ import annotations

import time
from typing import Any

from activities import Activity


class Sleep(Activity):
    """Sleeps 1 s in its slot's thread."""

    name = "bench-Sleep"

    def run(self, value: Any) -> Any:
        """Wait a second; return ``value``."""
        time.sleep(1)
        return value
