"""What the worker and its slots share across processes: flags, polls, limits.

All of it lives in memory the processes share (``multiprocessing`` synchronized objects),
so that the worker's parent process makes no call and reads no pipe per task on the busy
path: slots read and write their own cells without a lock, and only a task of an
activity with a ``max_concurrency`` takes one. The task each slot answers for is in its
:class:`~activities._slotstate.SlotState`.

Positions: slots are at ``0 .. slots - 1``; the worker's own coverage polls, one per task
list, at ``slots + index``.
"""

from __future__ import annotations

import collections
import contextlib
import ctypes
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence
    from multiprocessing.context import BaseContext

__all__ = ["Control", "Flag"]

#: Seconds a slot waits at a time for a poll permit, so that it notices a stop.
PERMIT_WAIT = 0.25

#: Seconds between two looks at a flag that is being waited for.
FLAG_POLL = 0.05

#: Seconds a task list counts as busy after a poll brought a task: free slots add polls
#: to a busy task list, where one poll is enough for an idle one.
BUSY_WINDOW = 0.5


class Flag:
    """A flag the worker sets once and every slot reads, without a lock.

    Slots read their flags for every task: a ``multiprocessing.Event`` would make every
    process take one shared lock each time, and on a busy machine the processes then
    queue behind whichever holds it. A byte of shared memory is read without one.
    """

    def __init__(self, context: BaseContext) -> None:
        self._value = context.RawValue(ctypes.c_bool, False)

    def set(self) -> None:
        """Set the flag (for good)."""
        self._value.value = True

    def is_set(self) -> bool:
        """Whether the flag is set."""
        return bool(self._value.value)

    def is_unset(self) -> bool:
        """Whether the flag is not set (yet)."""
        return not self._value.value

    def wait(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for the flag; whether it is set."""
        deadline = time.monotonic() + timeout
        while not self._value.value:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            time.sleep(min(FLAG_POLL, remaining))
        return True


class Control:
    """The flags and counters every slot of one worker reads.

    Args:
        context: the multiprocessing context the slots' processes are started with.
        arns: the activities (task lists) served, in a fixed order.
        slots: how many slots the worker has; each has a position below this.
        pollers: how many polls may be open at once, ``None`` for no cap.
        groups: for each task list, the index of the activity class served on it
            (``None``: each task list its own).
        limits: for each activity class, the most of its tasks run at once
            (``max_concurrency``), ``None`` for no limit.
    """

    def __init__(
        self,
        context: BaseContext,
        arns: Sequence[str],
        *,
        slots: int,
        pollers: int | None,
        groups: Sequence[int] | None = None,
        limits: Sequence[int | None] = (),
    ) -> None:
        self.arns = tuple(arns)
        self.slots = slots
        size = len(self.arns)
        self.groups = tuple(groups) if groups is not None else tuple(range(size))
        self.limits = tuple(limits) or (None,) * (max(self.groups, default=-1) + 1)
        #: Set when the worker stops: slots start no new poll.
        self.stopping = Flag(context)
        #: Set when the shutdown grace is over: a task that arrives now is failed at once.
        self.past_deadline = Flag(context)
        #: Set when the worker stops at once: outcomes get one more attempt at most.
        self.give_up = Flag(context)
        #: Set once stopping, no poll is open and no task waits: slots may end.
        self.drained = Flag(context)
        #: Set by the first task process that finds the worker's process gone.
        self.orphaned = Flag(context)
        # The task list each position polls now; -1 when it does not poll.
        self._polling = context.RawArray(ctypes.c_int, [-1] * (slots + size))
        # The task list of the task each slot runs; -1 when it runs none.
        self._running = context.RawArray(ctypes.c_int, [-1] * slots)
        # Tasks received and waiting in the worker's hand-off buffer, by task list.
        self._buffered = context.RawArray(ctypes.c_int, [0] * size)
        self._buffered_total = context.RawValue(ctypes.c_int, 0)
        self._busy_until = context.RawArray(ctypes.c_double, [0.0] * size)
        self._paused_until = context.RawArray(ctypes.c_double, [0.0] * size)
        self._errors = context.RawArray(ctypes.c_int, [0] * size)
        # Tasks a slot's poll brought while the slot had been handed another, by position:
        # sent toward the worker's buffer (written by the slot's process only), and put in
        # it (written by the worker only). While the two differ, a task is on its way.
        self._overflowed = context.RawArray(ctypes.c_int, [0] * slots)
        self._overflow_taken = context.RawArray(ctypes.c_int, [0] * slots)
        #: When each process last heard Step Functions answer, and since when a call of
        #: it has been due an answer: a cell per slot position (a process uses its first
        #: slot's), and one for the worker's own process, at ``slots`` (see
        #: :mod:`activities._outage`).
        self.answered = context.RawArray(ctypes.c_double, [0.0] * (slots + 1))
        self.overdue = context.RawArray(ctypes.c_double, [0.0] * (slots + 1))
        self._limit_lock = context.Lock()
        self._permits = context.BoundedSemaphore(pollers) if pollers is not None else None

    # -- choosing what to poll ------------------------------------------------------------

    def polls_open(self) -> list[int]:
        """How many polls are open on each task list now."""
        return _counts(self._polling, len(self.arns))

    def choose(self, turn: int, among: Sequence[int] | None = None) -> int:
        """The busy task list a free slot should poll now, or -1 if none is busy.

        A task list is busy when a poll brought a task within :data:`BUSY_WINDOW`: then
        free slots add polls of their own to it, the one with the fewest polls open first
        (ties in turn). An idle task list needs one poll only, and the worker's own
        process keeps it (:mod:`activities._handoff`), so an idle slot holds no poll and
        is free for the first task that comes. Task lists pausing after errors, and those
        of an activity at its ``max_concurrency``, are left alone. The counts are read
        without a lock: two slots choosing at once may pick the same one, and later
        choices even it out. ``among`` limits the choice to those task lists (an async
        position polls those of async activities only).
        """
        now = time.monotonic()
        counts = self.polls_open()
        indices = range(len(counts)) if among is None else among
        size = len(indices)
        best, fewest = -1, 1 << 30
        for step in range(size):
            index = indices[(turn + step) % size]
            count = counts[index]
            if (
                count < fewest
                and self._busy_until[index] > now
                and self._paused_until[index] <= now
                and not self.at_limit(index)
            ):
                best, fewest = index, count
        return best

    def claim_poll(self, position: int, index: int) -> bool:
        """Record that ``position`` polls task list ``index``; ``False`` if at its limit."""
        if self.at_limit(index):
            return False
        self._polling[position] = index
        return True

    def overflowed(self, position: int) -> None:
        """The slot at ``position`` sends the worker a task its poll brought (see on_overflow).

        Called before its poll counts as done, so that a stop never sees neither.
        """
        self._overflowed[position] += 1

    def overflow_taken(self, position: int) -> None:
        """The worker put the task the slot at ``position`` sent in its buffer."""
        self._overflow_taken[position] += 1

    def overflow_settled(self, positions: Sequence[int]) -> None:
        """The process of ``positions`` ended and its messages were read: none is on its way."""
        for position in positions:
            self._overflow_taken[position] = self._overflowed[position]

    def overflowing(self) -> bool:
        """Whether a task brought by a slot's poll is on its way to the worker's buffer."""
        return bytes(memoryview(self._overflowed)) != bytes(memoryview(self._overflow_taken))

    def done_polling(self, position: int) -> None:
        """The poll of ``position`` returned (or its slot ended)."""
        self._polling[position] = -1

    def polling(self, position: int) -> int:
        """The task list ``position`` polls now, or -1."""
        return int(self._polling[position])

    def at_limit(self, index: int) -> bool:
        """Whether task list ``index``'s activity holds (runs, or keeps waiting) its most.

        Its task lists are then not polled: its tasks stay in Step Functions. A poll
        open when the limit is reached may still bring one, which waits for its turn.
        """
        group = self.groups[index]
        limit = self.limits[group]
        if limit is None:
            return False
        groups = self.groups
        waiting = sum(int(count) for at, count in enumerate(self._buffered) if groups[at] == group)
        return self._running_of(group) + waiting >= limit

    def start_running(self, position: int, index: int) -> bool:
        """The slot at ``position`` is to run a task of task list ``index``.

        ``False`` if its activity already runs as many tasks as its ``max_concurrency``;
        checked and recorded under one lock, so that no two slots pass it at once.
        """
        group = self.groups[index]
        limit = self.limits[group]
        if limit is None:
            self._running[position] = index
            return True
        with self._limit_lock:
            if self._running_of(group) >= limit:
                return False
            self._running[position] = index
            return True

    def may_run(self, index: int) -> bool:
        """Whether a task of task list ``index`` may start now (read without the lock)."""
        limit = self.limits[self.groups[index]]
        return limit is None or self._running_of(self.groups[index]) < limit

    def _running_of(self, group: int) -> int:
        groups = self.groups
        counts = _counts(self._running, len(self.arns))
        return sum(count for index, count in enumerate(counts) if groups[index] == group)

    def mark_busy(self, index: int) -> None:
        """A poll of task list ``index`` brought a task."""
        self._busy_until[index] = time.monotonic() + BUSY_WINDOW
        self._errors[index] = 0

    def is_busy(self, index: int) -> bool:
        """Whether a poll of task list ``index`` brought a task lately."""
        return self._busy_until[index] > time.monotonic()

    def paused_until(self, index: int) -> float:
        """Until when (``time.monotonic()``) task list ``index`` is not polled after errors."""
        return float(self._paused_until[index])

    def poll_failed(self, index: int) -> int:
        """A poll of task list ``index`` failed; how many did in a row (see :meth:`pause`)."""
        errors = self._errors[index] = self._errors[index] + 1
        return int(errors)

    def pause(self, index: int, seconds: float) -> None:
        """Poll task list ``index`` again in ``seconds`` at the earliest."""
        self._paused_until[index] = time.monotonic() + seconds

    def poll_succeeded(self, index: int) -> None:
        """A poll of task list ``index`` returned without an error."""
        if self._errors[index]:
            self._errors[index] = 0

    # -- the hand-off buffer --------------------------------------------------------------

    def buffered(self, index: int, change: int) -> None:
        """The worker's buffer gained (or lost) ``change`` tasks of task list ``index``."""
        self._buffered[index] += change
        self._buffered_total.value += change

    def tasks_waiting(self) -> int:
        """How many tasks wait in the worker's buffer for a slot."""
        return int(self._buffered_total.value)

    def set_running(self, position: int, index: int) -> None:
        """The slot at ``position`` runs a task of task list ``index`` (-1: none)."""
        self._running[position] = index

    def running_cells(self) -> list[int]:
        """The task list of the task each slot runs now (-1: none), by position."""
        return _cells(self._running)

    def running_by_task_list(self) -> list[int]:
        """How many slots run a task of each task list now."""
        return _counts(self._running, len(self.arns))

    def buffered_by_task_list(self) -> list[int]:
        """How many tasks of each task list wait in the worker's buffer now."""
        return list(self._buffered)

    def all_failing(self) -> bool:
        """Whether the last poll of every task list failed (expired credentials, say)."""
        return all(errors > 0 for errors in self._errors)

    def slots_in_use(self, among: Sequence[int] | None = None) -> int:
        """Slots' tasks running plus slots' polls open: each may hold a task.

        ``among``: of those slots (positions) only.
        """
        running, polling = _cells(self._running), _cells(self._polling)[: self.slots]
        if among is None:
            return 2 * self.slots - running.count(-1) - polling.count(-1)
        return sum((running[at] >= 0) + (polling[at] >= 0) for at in among)

    @contextlib.contextmanager
    def poll_permit(self, *, block: bool = True) -> Iterator[bool]:
        """Wait for the right to poll (when pollers are capped); ``False`` if stopping.

        With ``block=False``, ``False`` at once when no permit is free.
        """
        if self._permits is None:
            yield not self.stopping.is_set()
            return
        while not self._permits.acquire(timeout=PERMIT_WAIT if block else 0):
            if self.stopping.is_set() or not block:
                yield False
                return
        try:
            yield not self.stopping.is_set()
        finally:
            self._permits.release()


def _cells(array: ctypes.Array[ctypes.c_int]) -> list[int]:
    """The values of a shared array of ints, read at once (a worker may have hundreds)."""
    return memoryview(array).cast("B").cast("i").tolist()


def _counts(array: ctypes.Array[ctypes.c_int], size: int) -> list[int]:
    """How often each of ``0 .. size - 1`` is in ``array`` (its -1s not counted)."""
    counts = [0] * size
    for index, count in collections.Counter(_cells(array)).items():
        if index >= 0:
            counts[index] = count
    return counts
