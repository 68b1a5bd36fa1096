"""Slots: places that run a task the worker hands them, and report it, one at a time.

A slot is a loop of its own (:class:`~activities.worker._loop.SlotLoop`): run the task handed to
it with heartbeats, deliver its outcome, take the next; the Step Functions calls of all
slots run side by side. Slots live in *units* the worker starts, replaces and stops:

- a task process (:mod:`activities.worker._process`) holds one slot, or several with
  ``threads``: a crash or a leak stays inside it, and it is replaced when it dies;
- a :class:`ThreadSlot` is a thread of the worker's own process, one slot, for I/O-bound
  work;
- an :class:`AsyncUnit` holds the async positions of the worker's own process
  (``threads`` alone with ``async_tasks``; see :mod:`activities.worker._asyncslots`).

What the worker keeps of a slot is its record, :class:`~activities.worker._slotstate.SlotState`;
it hears from a unit when it is ready, when it is to be recycled and when it ended
(:class:`SlotOwner`).
"""

from __future__ import annotations

import itertools
import logging
import queue
import threading
from typing import TYPE_CHECKING, Protocol

from activities._ops.metrics import NO_METRICS
from activities.worker._asyncslots import AsyncSlots
from activities.worker._heartbeats import Heartbeats
from activities.worker._loop import SlotLoop
from activities.worker._slotstate import Answer, Cells, SlotState

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence
    from concurrent.futures import Executor
    from multiprocessing.context import BaseContext

    from activities._ops.metrics import Metrics
    from activities.client import ActivityClient
    from activities.task import Task
    from activities.worker._control import Control
    from activities.worker._heartbeats import Job
    from activities.worker._loop import SlotSettings
    from activities.worker._serving import GraceWatch
    from activities.worker._slotstate import Held

__all__ = [
    "HEARTBEAT_THREADS",
    "AsyncUnit",
    "Slot",
    "SlotOwner",
    "ThreadSlot",
    "Unit",
    "take_all",
    "thread_heartbeats",
]

logger = logging.getLogger(__name__)

#: Threads sending the heartbeats of the slots of one process, at most.
HEARTBEAT_THREADS = 16

_ids = itertools.count(1)


class SlotOwner(Protocol):
    """What a unit tells the worker. Called from a thread of the unit's own."""

    def on_ready(self, unit: Unit) -> None:
        """The unit's slots take tasks."""

    def on_exit(self, unit: Unit, reason: str, *, was_ready: bool) -> None:
        """The unit ended; ``reason`` says how."""

    def on_recycle(self, unit: Unit) -> None:
        """The unit is to be recycled: hand it no more tasks (see ``Slot.close``)."""

    def on_free(self) -> None:
        """A slot is free, and tasks wait for one."""


class Slot(Protocol):
    """A place that runs one task at a time, handed to it by the worker."""

    name: str
    kind: str
    position: int
    state: SlotState
    #: Whether it takes tasks of sync activities (an async position takes async ones only).
    takes_sync: bool

    @property
    def ready(self) -> bool:
        """Whether the slot takes tasks (its unit has started)."""

    def offer(self, task: Task, index: int) -> bool:
        """Hand ``task`` (of task list ``index``) to the slot; ``False`` if it is not free."""

    def close(self) -> None:
        """Hand the slot no more tasks: it ends once those handed are done."""


class Unit(Protocol):
    """What the worker starts, replaces and stops: a task process, or a thread slot."""

    name: str
    kind: str
    ready: bool

    @property
    def slots(self) -> Sequence[Slot]:
        """The unit's slots."""

    def start(self) -> None:
        """Start the process or thread; ``on_ready`` follows."""

    def terminate(self) -> bool:
        """Stop the unit at once; ``False`` if this kind cannot be stopped."""

    def is_alive(self) -> bool:
        """Whether the unit's process or thread still runs."""


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


def heartbeat_threads(slots: int) -> int:
    """How many heartbeats the tasks of ``slots`` slots of one process send at once."""
    return max(2, min(slots, HEARTBEAT_THREADS))


def take_all(units: Iterable[Unit]) -> list[Held]:
    """Take every task the slots of ``units`` answer for (see :meth:`SlotState.take`)."""
    return [held for unit in units for slot in unit.slots for held in slot.state.take()]
