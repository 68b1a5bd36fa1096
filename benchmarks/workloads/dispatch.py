"""Dispatch latency: ``activities worker benchmarks.workloads.dispatch``."""

from __future__ import annotations

import datetime as dt
from typing import Any

from activities import Activity


class Dispatch(Activity):
    """Returns the seconds from the poll returning to run() starting."""

    name = "bench-Dispatch"

    def run(self, value: Any) -> float:
        """Seconds since the poll that brought the task returned."""
        return (dt.datetime.now(dt.UTC) - self.task.started_at).total_seconds()
