"""A mixed load for ``nox -s chaos``: ``activities worker benchmarks.workloads.chaos``."""

from __future__ import annotations

import asyncio
import time

from activities import Activity


class ChaosSleep(Activity):
    """Sleeps ``seconds`` in its slot's thread."""

    name = "bench-ChaosSleep"

    def run(self, seconds: float) -> float:
        """Wait ``seconds``; return them."""
        time.sleep(seconds)
        return seconds


class ChaosAwait(Activity):
    """Awaits ``seconds`` on its process's event loop."""

    name = "bench-ChaosAwait"

    async def run(self, seconds: float) -> float:
        """Wait ``seconds``; return them."""
        await asyncio.sleep(seconds)
        return seconds
