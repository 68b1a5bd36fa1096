"""The activities sfn-activities serves in the benchmarks."""

from __future__ import annotations

import datetime as dt
import time
from typing import TYPE_CHECKING, Any

from activities import Activity
from benchmarks.work import burn

if TYPE_CHECKING:
    from collections.abc import Generator


class Nothing(Activity):
    """Zero work: the framework's own cost."""

    name = "bench-Nothing"

    def run(self, value: Any) -> Any:
        return value


class Burn(Activity):
    """20 ms of pure-Python CPU work."""

    name = "bench-Burn"

    def run(self, value: Any) -> int:
        return burn()


class Dispatch(Activity):
    """Returns the seconds from the poll returning to run() starting."""

    name = "bench-Dispatch"

    def run(self, value: Any) -> float:
        return (dt.datetime.now(dt.UTC) - self.task.started_at).total_seconds()


class Chatty(Activity):
    """Yields a thousand times a second for a second."""

    name = "bench-Chatty"

    def run(self, value: Any) -> Generator[None, None, int]:
        deadline = time.monotonic() + 1.0
        count = 0
        while time.monotonic() < deadline:
            time.sleep(0.001)
            count += 1
            yield
        return count
