"""The event loop that runs a process's async tasks, in a thread of its own.

A slot that takes a task of an ``async def run()`` hands its coroutine to this process's
:class:`EventLoop` and waits for the outcome; the loop runs the coroutines of every slot
of the process at once, so a process with many slots (``--threads``) waits on many
tasks with one loop. The framework's own Step Functions calls (polls, outcomes,
heartbeats) stay in the slots' threads: nothing of the framework blocks the loop.

What user code does can: a call that does not await (``time.sleep``, a sync client)
inside an ``async def run()`` stops every async task of the process while it runs. A
watchdog thread notices when the loop has not come round for :data:`BLOCKED_AFTER`
seconds and logs a warning naming the task that holds it; it also cancels the
coroutines whose flag is set (the worker's shutdown grace is over), so that the slots
waiting for them need not look.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    import concurrent.futures
    from collections.abc import Coroutine

    from activities.worker._control import Flag

__all__ = ["EventLoop", "Running", "event_loop"]

logger = logging.getLogger(__name__)

#: Seconds the loop may go without coming round before the watchdog says it is blocked.
BLOCKED_AFTER = 0.5

#: Seconds between two marks of the loop coming round, and two looks of the watchdog.
TICK = 0.05

R = TypeVar("R")


class Running:
    """A coroutine handed to the loop: wait for its result, or cancel it from any thread."""

    def __init__(
        self, loop: asyncio.AbstractEventLoop, label: str, cancel_when: Flag | None
    ) -> None:
        self.label = label
        self.cancel_when = cancel_when
        self._loop = loop
        self._task: asyncio.Task[object] | None = None
        self._cancelled = False
        self.future: concurrent.futures.Future[object] | None = None

    def cancel(self) -> None:
        """Cancel the coroutine at the ``await`` it is in (before it starts, if it has not)."""
        self._loop.call_soon_threadsafe(self._cancel)

    def _cancel(self) -> None:
        self._cancelled = True
        if self._task is not None:
            self._task.cancel()


class EventLoop:
    """An event loop running in a daemon thread, with a watchdog for blocking callbacks."""

    def __init__(self, *, blocked_after: float = BLOCKED_AFTER) -> None:
        self._loop = asyncio.new_event_loop()
        self._blocked_after = blocked_after
        self._tasks: dict[asyncio.Task[object], Running] = {}
        self._came_round = time.monotonic()
        self._thread = threading.Thread(target=self._run, name="sfn-activities-loop", daemon=True)
        self._thread.start()
        threading.Thread(target=self._watch, name="sfn-activities-loop-watch", daemon=True).start()

    def start(
        self,
        coroutine: Coroutine[object, object, R],
        label: str,
        *,
        cancel_when: Flag | None = None,
    ) -> Running:
        """Start ``coroutine`` on the loop; ``label`` names it in the watchdog's warnings.

        The watchdog cancels it once ``cancel_when`` is set (the shutdown grace is over).
        """
        running = Running(self._loop, label, cancel_when)

        async def run() -> object:
            task = asyncio.current_task()
            assert task is not None  # noqa: S101 - run by the loop
            running._task = task
            self._tasks[task] = running
            try:
                if running._cancelled:
                    coroutine.close()
                    raise asyncio.CancelledError
                return await coroutine
            finally:
                del self._tasks[task]

        running.future = asyncio.run_coroutine_threadsafe(run(), self._loop)
        return running

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.call_soon(self._tick)
        self._loop.run_forever()

    def _tick(self) -> None:
        self._came_round = time.monotonic()
        self._loop.call_later(TICK, self._tick)

    def _watch(self) -> None:
        reported = 0.0  # when the block reported began
        while True:
            time.sleep(TICK)
            for each in list(self._tasks.values()):
                if each.cancel_when is not None and each.cancel_when.is_set():
                    each.cancel_when = None  # once
                    each.cancel()
            since = self._came_round
            blocked = time.monotonic() - since
            if blocked < self._blocked_after or since == reported:
                continue
            reported = since
            task = asyncio.current_task(self._loop)
            running = self._tasks.get(task) if task is not None else None
            holder = running.label if running is not None else "a callback of the loop"
            logger.warning(
                "%s has blocked this process's event loop for %.1f s: every async task of "
                "the process waits meanwhile; something in it does not await (time.sleep, "
                "a sync client, CPU-bound work: use asyncio.to_thread)",
                holder,
                blocked,
            )


_lock = threading.Lock()
_loop: EventLoop | None = None


def event_loop() -> EventLoop:
    """This process's loop for async tasks, started when first needed."""
    global _loop  # noqa: PLW0603 - one per process
    with _lock:
        if _loop is None:
            _loop = EventLoop()
        return _loop
