"""What the worker and its slots share across processes: flags, polls, held tasks, limits.

All of it lives in memory the processes share (``multiprocessing`` synchronized objects),
so that the worker's parent process makes no call and reads no pipe per task on the busy
path: slots read and write their own cells without a lock, and only the hand-off of a
buffered task, a poll of an activity with a ``max_concurrency``, a slot that died or a
stop that ran out of time take one.

Positions: slots are at ``0 .. slots - 1``; the worker's own coverage polls, one per task
list, at ``slots + index``.
"""

from __future__ import annotations

import contextlib
import ctypes
import time
from typing import TYPE_CHECKING

from activities.task import TOKEN_PREFIX_LENGTH, Task

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence
    from multiprocessing.context import SpawnContext

__all__ = ["Control", "Flag", "Held", "SlotState"]

#: Bytes a slot's state holds: a phase, an activity ARN (up to 256 characters) and a task
#: token (up to 2,048).
STATE_CAPACITY = 4096

#: Seconds a slot waits at a time for a poll permit, so that it notices a stop.
PERMIT_WAIT = 0.25

#: Seconds between two looks at a flag that is being waited for.
FLAG_POLL = 0.05

#: Seconds a task list counts as busy after a poll brought a task: free slots add polls
#: to a busy task list, where one poll is enough for an idle one.
BUSY_WINDOW = 0.5

RUNNING, DELIVERING, TAKEN, RETIRED = b"R", b"D", b"T", b"X"


class Flag:
    """A flag the worker sets once and every slot reads, without a lock.

    Slots read their flags for every task: a ``multiprocessing.Event`` would make every
    process take one shared lock each time, and on a busy machine the processes then
    queue behind whichever holds it. A byte of shared memory is read without one.
    """

    def __init__(self, context: SpawnContext) -> None:
        self._value = context.RawValue(ctypes.c_bool, False)

    def set(self) -> None:
        """Set the flag (for good)."""
        self._value.value = True

    def is_set(self) -> bool:
        """Whether the flag is set."""
        return bool(self._value.value)

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
        context: SpawnContext,
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
        self._limit_lock = context.Lock()
        self._permits = context.BoundedSemaphore(pollers) if pollers is not None else None

    # -- choosing what to poll ------------------------------------------------------------

    def polls_open(self) -> list[int]:
        """How many polls are open on each task list now."""
        counts = [0] * len(self.arns)
        for index in self._polling:
            if index >= 0:
                counts[index] += 1
        return counts

    def choose(self, turn: int) -> int:
        """The busy task list a free slot should poll now, or -1 if none is busy.

        A task list is busy when a poll brought a task within :data:`BUSY_WINDOW`: then
        free slots add polls of their own to it, the one with the fewest polls open first
        (ties in turn). An idle task list needs one poll only, and the worker's own
        process keeps it (:mod:`activities._handoff`), so an idle slot holds no poll and
        is free for the first task that comes. Task lists pausing after errors, and those
        of an activity at its ``max_concurrency``, are left alone. The counts are read
        without a lock: two slots choosing at once may pick the same one, and later
        choices even it out.
        """
        now = time.monotonic()
        counts = self.polls_open()
        size = len(counts)
        best, fewest = -1, 1 << 30
        for step in range(size):
            index = (turn + step) % size
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
        return sum(1 for index in self._running if index >= 0 and groups[index] == group)

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

    def slots_in_use(self) -> int:
        """Slots' tasks running plus slots' polls open: each may hold a task."""
        running = sum(1 for index in self._running if index >= 0)
        polling = sum(1 for position in range(self.slots) if self._polling[position] >= 0)
        return running + polling

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


class Held:
    """A task a slot answered for, as taken from its :class:`SlotState`."""

    def __init__(self, activity_arn: str, token: str) -> None:
        self.activity_arn = activity_arn
        self.token = token

    @property
    def token_prefix(self) -> str:
        """The start of the token, to name the task in logs."""
        return self.token[:TOKEN_PREFIX_LENGTH]

    def as_task(self, worker_name: str) -> Task:
        """The task, as far as reporting it goes (its input is not kept)."""
        return Task(
            token=self.token, activity_arn=self.activity_arn, worker_name=worker_name, input=""
        )


class SlotState:
    r"""The tasks a slot answers for: whoever *takes* one sends that task's outcome.

    Two places: the task the slot runs, and the one whose outcome it is sending (a process
    slot sends it in the background while it polls for the next task). A task is
    :meth:`try_hold`\ ed, by the slot for a task its own poll brought or by the worker for
    one it hands over from its buffer, only while the slot runs nothing; then it moves to
    delivering, then it is released. The worker takes what the slot holds when the slot
    died (running and delivering: it fails them with WorkerCrashed) or when the shutdown
    grace is over (running only): from then on the slot drops whatever that task returns.
    Every change is made under one lock, so exactly one of them reports each task.

    Args:
        context: the multiprocessing context of the slots.
        control: the worker's shared state, where the task list of the task run is shown.
        position: the slot's position in ``control``.
    """

    def __init__(self, context: SpawnContext, control: Control, position: int) -> None:
        self._lock = context.Lock()
        self._control = control
        self._position = position
        self._running = context.RawArray(ctypes.c_char, STATE_CAPACITY)
        self._delivering = context.RawArray(ctypes.c_char, STATE_CAPACITY)

    def free(self) -> bool:
        """Whether the slot runs nothing now (read without the lock)."""
        return not self._running.value

    def try_hold(self, activity_arn: str, token: str, index: int) -> bool:
        """The slot is to run this task of task list ``index``.

        ``False`` if it runs one already, or the task's activity is at its limit.
        """
        value = b"\n".join([RUNNING, activity_arn.encode(), token.encode()])
        with self._lock:
            if self._running.value or not self._control.start_running(self._position, index):
                return False
            self._running.value = value
            return True

    def claim_poll(self, index: int) -> bool:
        """The slot, free, is to poll task list ``index``; ``False`` if it runs a task now.

        Under the lock the worker hands buffered tasks over with: a poll opened by a slot
        that was just handed a task is seen, and counted against the buffer.
        """
        with self._lock:
            if self._running.value:
                return False
            return self._control.claim_poll(self._position, index)

    def retire(self) -> bool:
        """The slot ends: no task is handed to it any more; ``False`` if it runs one."""
        with self._lock:
            if self._running.value:
                return False
            self._running.value = RETIRED
            return True

    def retired(self) -> bool:
        """Whether the slot ended (see :meth:`retire`)."""
        return self._running.value == RETIRED

    def start_delivering(self, *, retire: bool = False) -> bool:
        """The slot is about to send the running task's outcome.

        ``False`` if the worker took the task: the outcome is dropped. The slot must have
        finished sending the previous outcome (see :meth:`done_delivering`). With
        ``retire``, the slot ends after it (see :meth:`retire`) instead of being free.
        """
        with self._lock:
            value = self._running.value
            self._running.value = RETIRED if retire else b""
            self._control.set_running(self._position, -1)
            if not value.startswith(RUNNING):
                return False
            self._delivering.value = DELIVERING + value[1:]
            return True

    def done_delivering(self) -> None:
        """The outcome being sent was sent (or given up)."""
        with self._lock:
            self._delivering.value = b""

    def release(self, *, retire: bool = False) -> None:
        """The slot is done with the task it ran, without an outcome to send."""
        with self._lock:
            self._running.value = RETIRED if retire else b""
            self._control.set_running(self._position, -1)

    def take(self, *, delivering: bool) -> list[Held]:
        """Take the task the slot runs (and, with ``delivering``, the one it reports).

        The slot keeps running it, but no longer answers for it.
        """
        taken: list[bytes] = []
        with self._lock:
            if self._running.value.startswith(RUNNING):
                taken.append(self._running.value)
                self._running.value = TAKEN
            if delivering and self._delivering.value:
                taken.append(self._delivering.value)
                self._delivering.value = b""
        return [Held(*value.decode().split("\n", 2)[1:]) for value in taken]

    def answering(self) -> bool:
        """Whether the slot runs or reports a task it still answers for."""
        return self._running.value.startswith(RUNNING) or bool(self._delivering.value)

    def running_taken(self) -> bool:
        """Whether the slot still runs a task the worker took from it."""
        return self._running.value == TAKEN
