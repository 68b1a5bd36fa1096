"""The units of the worker's own process (``threads`` alone): thread slots and async units.

A :class:`ThreadSlot` is a thread of the worker's process that is one slot, for I/O-bound
work: its :class:`~activities.worker._loop.SlotLoop` runs in it. An :class:`AsyncUnit` holds
the process's async positions (:class:`AsyncPosition`, served as a task process's are: see
:mod:`activities.worker._asyncslots`). Both are units of :mod:`activities.worker._slot`'s
contract, made by :func:`~activities.worker._pool.thread_units`. Neither can be stopped from
outside: a task found gone that does not yield runs on (:func:`thread_heartbeats`).
"""

from __future__ import annotations

import itertools
import logging
import queue
import threading
from typing import TYPE_CHECKING

from activities._ops.metrics import NO_METRICS
from activities.worker._asyncslots import AsyncSlots
from activities.worker._heartbeats import Heartbeats, heartbeat_threads
from activities.worker._loop import SlotLoop
from activities.worker._slotstate import Answer, Cells, SlotState

if TYPE_CHECKING:
    from collections.abc import Sequence
    from concurrent.futures import Executor
    from multiprocessing.context import BaseContext

    from activities._ops.metrics import Metrics
    from activities.client import ActivityClient
    from activities.task import Task
    from activities.worker._control import Control
    from activities.worker._heartbeats import Job
    from activities.worker._loop import SlotSettings
    from activities.worker._serving import GraceWatch
    from activities.worker._slot import Slot, SlotOwner

__all__ = ["AsyncPosition", "AsyncUnit", "ThreadSlot", "thread_heartbeats"]

logger = logging.getLogger(__name__)

_ids = itertools.count(1)


class ThreadSlot:
    """A thread of the worker's process that runs the tasks handed to it, for I/O-bound work.

    A thread cannot be stopped from outside: a task whose heartbeat finds it gone is
    cancelled at its next heartbeat, and its outcome is dropped.
    """

    kind = "thread"
    takes_sync = True

    def __init__(
        self,
        settings: SlotSettings,
        control: Control,
        owner: SlotOwner,
        context: BaseContext,
        *,
        client: ActivityClient,
        heartbeats: Heartbeats,
        grace: GraceWatch,
        sender: Executor,
        position: int = 0,
    ) -> None:
        self.name = f"thread-{next(_ids)}"
        self.position = position
        self.ready = False
        cells = Cells(context, 1)
        self.state = SlotState(cells, 0)
        self._owner = owner
        self._grace = grace
        self._loop = SlotLoop(
            self.name,
            client,
            settings=settings,
            control=control,
            answer=Answer(cells, 0),
            heartbeats=heartbeats,
            freed=owner.on_free,
            position=position,
            sender=sender,
        )
        grace.add(self._loop)
        self._thread = threading.Thread(
            target=self._main, name=f"sfn-activities-{self.name}", daemon=True
        )

    def __repr__(self) -> str:
        return f"<ThreadSlot {self.name}>"

    @property
    def slots(self) -> Sequence[Slot]:
        """The thread is one slot."""
        return (self,)

    def start(self) -> None:
        """Start the thread."""
        self._thread.start()

    def terminate(self) -> bool:
        """Threads cannot be stopped from outside."""
        return False

    def offer(self, task: Task, index: int) -> bool:
        """Record ``task`` as the slot's and queue it for the thread; ``False`` if busy."""
        number = self.state.hold(task, index)
        if number is None:
            return False
        self._loop.hand(number, task)
        return True

    def close(self) -> None:
        """Hand the thread no more tasks: it ends once those handed are done."""
        self.state.close()
        self._loop.close()

    def is_alive(self) -> bool:
        """Whether the thread still runs."""
        return self._thread.is_alive()

    def _main(self) -> None:
        self.ready = True
        self._owner.on_ready(self)
        try:
            reason = self._loop.run()
        except Exception as exc:
            logger.exception("%s failed", self.name)
            reason = f"{type(exc).__name__}: {exc}"
        self._grace.forget(self._loop)  # nothing runs on it now: the grace has nothing to fail
        self.state.close()  # no task is handed to an ended thread from now on
        self._owner.on_exit(self, reason, was_ready=True)


class AsyncUnit:
    """The async positions of the worker's own process: async tasks on its event loop.

    As a task process's (:mod:`activities.worker._asyncslots`), without the process: a task
    found gone that ignores its cancellation runs on, as in a thread slot.
    """

    kind = "thread"

    def __init__(
        self,
        settings: SlotSettings,
        control: Control,
        owner: SlotOwner,
        context: BaseContext,
        *,
        client: ActivityClient,
        heartbeats: Heartbeats,
        grace: GraceWatch,
        positions: Sequence[int],
    ) -> None:
        self.name = f"async-{next(_ids)}"
        self.ready = False
        self._owner = owner
        self._grace = grace
        cells = Cells(context, len(positions))
        self._slots = [
            AsyncPosition(self, f"{self.name}.{number}", position, SlotState(cells, at))
            for at, (number, position) in enumerate(enumerate(positions, 1))
        ]
        self._positions = AsyncSlots(
            self.name,
            client,
            settings=settings,
            control=control,
            positions=[
                (slot.name, slot.position, Answer(cells, at)) for at, slot in enumerate(self._slots)
            ],
            heartbeats=heartbeats,
            freed=owner.on_free,
        )
        grace.add(self._positions)
        # Tasks handed over start in a thread of the unit's, not the hand-off's: starting
        # one may run the activity's __init__.
        self._inbox: queue.SimpleQueue[tuple[int, int, Task] | tuple[int] | None] = (
            queue.SimpleQueue()
        )
        self._thread = threading.Thread(
            target=self._main, name=f"sfn-activities-{self.name}", daemon=True
        )

    def __repr__(self) -> str:
        return f"<AsyncUnit {self.name} x {len(self._slots)}>"

    @property
    def slots(self) -> Sequence[Slot]:
        """The async positions."""
        return self._slots

    def start(self) -> None:
        """Start the thread that starts handed tasks, and the one that serves the positions."""
        threading.Thread(
            target=self._receive, name=f"sfn-activities-{self.name}-inbox", daemon=True
        ).start()
        self._thread.start()

    def terminate(self) -> bool:
        """Threads cannot be stopped from outside."""
        return False

    def is_alive(self) -> bool:
        """Whether the positions are still served."""
        return self._thread.is_alive()

    def hand(self, position: int, number: int, task: Task) -> None:
        """Start ``task``, recorded at ``position`` already, as soon as the inbox thread can."""
        self._inbox.put((position, number, task))

    def close(self, position: int) -> None:
        """No task comes to ``position`` after those handed (in order, through the inbox)."""
        self._inbox.put((position,))

    def _receive(self) -> None:
        while (handed := self._inbox.get()) is not None:
            try:
                if len(handed) == 1:
                    self._positions.close(handed[0])
                else:
                    self._positions.hand(*handed)
            except Exception:
                # The worker's record holds it: the worker fails it if the unit ends.
                logger.exception("a task could not be started")

    def _main(self) -> None:
        self.ready = True
        self._owner.on_ready(self)
        try:
            reason = self._positions.run()
        except Exception as exc:
            logger.exception("%s failed", self.name)
            reason = f"{type(exc).__name__}: {exc}"
        self._grace.forget(self._positions)  # nothing runs on them now
        for slot in self._slots:
            slot.state.close()  # no task is handed to an ended unit from now on
        self._inbox.put(None)
        self._owner.on_exit(self, reason, was_ready=True)


class AsyncPosition:
    """One async position of an :class:`AsyncUnit`: where the worker hands it a task."""

    kind = "thread"
    takes_sync = False

    def __init__(self, unit: AsyncUnit, name: str, position: int, state: SlotState) -> None:
        self.name = name
        self.position = position
        self.state = state
        self._unit = unit

    def __repr__(self) -> str:
        return f"<AsyncPosition {self.name}>"

    @property
    def ready(self) -> bool:
        """Whether the unit's positions are served."""
        return self._unit.ready

    def offer(self, task: Task, index: int) -> bool:
        """Record ``task`` as the position's and start it; ``False`` if it is busy."""
        number = self.state.hold(task, index)
        if number is None:
            return False
        self._unit.hand(self.position, number, task)
        return True

    def close(self) -> None:
        """Hand the position no more tasks."""
        self.state.close()
        self._unit.close(self.position)


def thread_heartbeats(
    client: ActivityClient, threads: int, *, metrics: Metrics = NO_METRICS
) -> Heartbeats:
    """The heartbeats of ``threads`` thread slots, which share the worker's process."""
    return Heartbeats(
        client, on_stuck=_cannot_stop, threads=heartbeat_threads(threads), metrics=metrics
    )


def _cannot_stop(job: Job) -> None:
    logger.warning(
        "task %s is gone but %s does not yield; a thread cannot be stopped: it runs on",
        job.task.token_prefix,
        job.activity.name,
    )
