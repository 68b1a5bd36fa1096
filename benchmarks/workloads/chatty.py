"""Heartbeat cost: ``activities worker benchmarks.workloads.chatty``."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from activities import Activity

if TYPE_CHECKING:
    from collections.abc import Generator


class Chatty(Activity):
    """Yields a thousand times a second for a second."""

    name = "bench-Chatty"

    def run(self, value: Any) -> Generator[None, None, int]:
        """Yield every millisecond for a second; how many times."""
        deadline = time.monotonic() + 1.0
        count = 0
        while time.monotonic() < deadline:
            time.sleep(0.001)
            count += 1
            yield
        return count
