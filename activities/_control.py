"""What the worker and its slots share across processes: stop flags, open polls, held tasks.

All of it lives in memory the processes share (``multiprocessing`` synchronized objects),
so that the worker's parent process makes no call and reads no pipe per task: it only
looks at a slot's :class:`SlotState` when the slot died, or when a stop runs out of time.
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

RUNNING, DELIVERING, TAKEN = b"R", b"D", b"T"


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
        pollers: how many polls may be open at once, ``None`` for one per slot.
    """

    def __init__(
        self, context: SpawnContext, arns: Sequence[str], *, slots: int, pollers: int | None
    ) -> None:
        self.arns = tuple(arns)
        #: Set when the worker stops: slots start no new poll.
        self.stopping = Flag(context)
        #: Set when the shutdown grace is over: a task that arrives now is failed at once.
        self.past_deadline = Flag(context)
        #: Set when the worker stops at once: outcomes get one more attempt at most.
        self.give_up = Flag(context)
        # The activity each slot polls, by the slot's position; -1 when it does not poll.
        self._polling = context.RawArray(ctypes.c_int, [-1] * slots)
        self._permits = context.BoundedSemaphore(pollers) if pollers is not None else None

    def choose(self, position: int, turn: int) -> int:
        """The index of the activity with the fewest polls open (ties in turn) to poll now.

        So every activity has a poll open whenever as many slots as activities are free.
        The counts are read without a lock: two slots choosing at the same moment may
        pick the same activity, and the next choices even it out.
        """
        size = len(self.arns)
        best = 0
        if size > 1:
            counts = [0] * size
            for index in self._polling:
                if index >= 0:
                    counts[index] += 1
            best = min(((turn + step) % size for step in range(size)), key=counts.__getitem__)
        self._polling[position] = best
        return best

    def done_polling(self, position: int) -> None:
        """The poll of the slot at ``position`` returned (or the slot ended)."""
        self._polling[position] = -1

    @contextlib.contextmanager
    def poll_permit(self) -> Iterator[bool]:
        """Wait for the right to poll (when pollers are limited); ``False`` if stopping."""
        if self._permits is None:
            yield not self.stopping.is_set()
            return
        while not self._permits.acquire(timeout=PERMIT_WAIT):
            if self.stopping.is_set():
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
    slot sends it in the background while it polls for the next task). The slot
    :meth:`hold`\ s a task while running it, then moves it to delivering, then releases
    it. The worker takes what the slot holds when the slot died (running and delivering:
    it fails them with WorkerCrashed) or when the shutdown grace is over (running only):
    from then on the slot drops whatever that task returns. Every change is made under one
    lock, so exactly one of them reports each task.
    """

    def __init__(self, context: SpawnContext) -> None:
        self._lock = context.Lock()
        self._running = context.RawArray(ctypes.c_char, STATE_CAPACITY)
        self._delivering = context.RawArray(ctypes.c_char, STATE_CAPACITY)

    def hold(self, activity_arn: str, token: str) -> None:
        """The slot starts running a task."""
        value = b"\n".join([RUNNING, activity_arn.encode(), token.encode()])
        with self._lock:
            self._running.value = value

    def start_delivering(self) -> bool:
        """The slot is about to send the running task's outcome.

        ``False`` if the worker took the task: the outcome is dropped. The slot must have
        finished sending the previous outcome (see :meth:`done_delivering`).
        """
        with self._lock:
            value = self._running.value
            self._running.value = b""
            if not value.startswith(RUNNING):
                return False
            self._delivering.value = DELIVERING + value[1:]
            return True

    def done_delivering(self) -> None:
        """The outcome being sent was sent (or given up)."""
        with self._lock:
            self._delivering.value = b""

    def release(self) -> None:
        """The slot is done with the task it ran, without an outcome to send."""
        with self._lock:
            self._running.value = b""

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
