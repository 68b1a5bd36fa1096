"""A second of I/O the async way: ``activities worker benchmarks.workloads.awaiting``."""

from __future__ import annotations

import asyncio
from typing import Any

from activities import Activity


class Await(Activity):
    """Awaits ``asyncio.sleep(1)`` on its process's event loop."""

    name = "bench-Await"

    async def run(self, value: Any) -> Any:
        """Wait a second; return ``value``."""
        await asyncio.sleep(1)
        return value
