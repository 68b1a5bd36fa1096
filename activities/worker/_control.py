"""What the worker shares with its task processes: flags it sets and they read.

Set once by the worker's process and read by every slot without a lock (a byte of shared
memory, see :class:`Flag`), plus a count of the tasks waiting in the worker's buffer and
each process's last word from Step Functions (:mod:`activities._aws.outage`). Everything else
the worker knows, its polls, limits and the record of which task is where, stays in its
own process (:mod:`activities.worker._poll`, :mod:`activities.worker._handoff`,
:mod:`activities.worker._slotstate`): no task process can hold any of it.
"""

from __future__ import annotations

import ctypes
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Sequence
    from multiprocessing.context import BaseContext

__all__ = ["Control", "Flag"]

#: Seconds between two looks at a flag that is being waited for.
FLAG_POLL = 0.05


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
    """The flags every slot of one worker reads, and the few numbers it shares.

    Args:
        context: the multiprocessing context the slots' processes are started with.
        arns: the activities (task lists) served, in a fixed order.
        slots: how many slots the worker has; each has a position below this.
    """

    def __init__(self, context: BaseContext, arns: Sequence[str], *, slots: int) -> None:
        self.arns = tuple(arns)
        self.slots = slots
        #: Set when the worker stops: no new poll starts.
        self.stopping = Flag(context)
        #: Set when the shutdown grace is over: a running task is failed by its process.
        self.past_deadline = Flag(context)
        #: Set when the worker stops at once: outcomes get one more attempt at most.
        self.give_up = Flag(context)
        #: Set by the first task process that finds the worker's process gone.
        self.orphaned = Flag(context)
        self._waiting = context.RawValue(ctypes.c_int, 0)
        #: When each process last heard Step Functions answer, and since when a call of
        #: it has been due an answer: a cell per slot position (a process uses its first
        #: slot's), and one for the worker's own process, at ``slots`` (see
        #: :mod:`activities._aws.outage`).
        self.answered = context.RawArray(ctypes.c_double, [0.0] * (slots + 1))
        self.overdue = context.RawArray(ctypes.c_double, [0.0] * (slots + 1))

    def tasks_waiting(self) -> int:
        """How many tasks wait in the worker's buffer for a slot."""
        return int(self._waiting.value)

    def set_waiting(self, count: int) -> None:
        """The worker's buffer holds ``count`` tasks now (the worker writes it)."""
        self._waiting.value = count
