"""Async activities for tests: ``activities worker tests.async_workload``."""

from __future__ import annotations

import asyncio
import sys
import threading
from pathlib import Path
from typing import Any, ClassVar

from activities import Activity, TaskCancelled


class AsyncEcho(Activity):
    """Awaits ``seconds``, then returns ``value``."""

    name = "async-Echo"

    async def run(self, value: Any, seconds: float = 0) -> Any:
        await asyncio.sleep(seconds)
        return value


class AsyncBeats(Activity):
    """Heartbeats ``beats`` times, ``every`` seconds apart; returns how many it sent.

    Its states' HeartbeatSeconds are 3: a worker heartbeats its tasks every second.
    """

    name = "async-Beats"
    heartbeat_seconds = 3

    async def run(self, beats: int, every: float = 0) -> int:
        for _ in range(beats):
            await self.heartbeat()
            await asyncio.sleep(every)
        return beats


class Flaky(Exception):
    """Raised by :class:`AsyncFails`: a name a state machine's Retry matches."""


class AsyncFails(Activity):
    """Fails with ``Flaky`` after awaiting."""

    name = "async-Fails"

    async def run(self, message: str) -> None:
        await asyncio.sleep(0)
        raise Flaky(message)


class Gathering(Activity):
    """Awaits ``seconds``, then returns once ``count`` tasks of it run at once (on one loop).

    Fails after about 10 s if they never do, saying how many did.
    """

    name = "async-Gathering"
    running = 0
    most = 0  # the most that ran at once

    @classmethod
    def reset(cls) -> None:
        """Forget the tasks that ran before (in this process)."""
        cls.running = cls.most = 0

    async def run(self, count: int, seconds: float = 0) -> int:
        cls = type(self)
        cls.running += 1
        cls.most = max(cls.most, cls.running)
        try:
            await asyncio.sleep(seconds)
            for _ in range(1000):
                if cls.most >= count:
                    return count
                await asyncio.sleep(0.01)
            msg = f"only {cls.most} of {count} ran at once"
            raise RuntimeError(msg)
        finally:
            type(self).running -= 1


class Forever(Activity):
    """Awaits for ever, heartbeating automatically; notes that it was cancelled."""

    name = "async-Forever"
    heartbeat_interval = 0.1
    cancelled: ClassVar[list[str]] = []

    async def run(self) -> None:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            type(self).cancelled.append(self.task.token)
            raise
        except TaskCancelled:
            raise


class AsyncFlaky(Activity):
    """Fails with ``Flaky`` until the attempt ``succeed_on``; then returns the attempt."""

    name = "async-Flaky"

    async def run(self, attempt: int, succeed_on: int) -> dict[str, int]:
        await asyncio.sleep(0)
        if attempt < succeed_on:
            msg = f"attempt {attempt}"
            raise Flaky(msg)
        return {"attempt": attempt}


class AsyncWaits(Activity):
    """Awaits for ever with automatic heartbeats; writes ``marker`` when it is cancelled."""

    name = "async-Waits"
    heartbeat_interval = 0.2

    async def run(self, marker: str) -> None:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            Path(marker).write_text("cancelled")
            raise


class AsyncExits(Activity):
    """Calls ``sys.exit`` from an async ``run()``: the task fails, the loop goes on."""

    name = "async-Exits"

    async def run(self) -> None:
        await asyncio.sleep(0)
        sys.exit(3)


class AsyncAwaitsCancelled(Activity):
    """Awaits a task that something else cancelled: not the framework's cancellation."""

    name = "async-AwaitsCancelled"

    async def run(self) -> None:
        other = asyncio.ensure_future(asyncio.sleep(3600))
        await asyncio.sleep(0)
        other.cancel()
        await other


class AsyncIgnoresCancel(Activity):
    """Catches its cancellation and returns as if done."""

    name = "async-IgnoresCancel"

    async def run(self) -> str:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            return "done anyway"
        return "slept"


class AsyncStubborn(Activity):
    """Catches every cancellation and awaits on, until the test sets ``released``."""

    name = "async-Stubborn"
    heartbeat_interval = 0.1
    released = threading.Event()
    refused: ClassVar[list[str]] = []

    async def run(self) -> str:
        while not type(self).released.is_set():
            try:
                await asyncio.sleep(0.05)
            except asyncio.CancelledError:
                type(self).refused.append(self.task.token)
        return "released"


class AsyncBrokenInit(Activity):
    """Cannot be made: its ``__init__`` raises, so each of its tasks fails."""

    name = "async-BrokenInit"

    def __init__(self) -> None:
        msg = "no instance today"
        raise RuntimeError(msg)

    async def run(self) -> None:
        await asyncio.sleep(0)
