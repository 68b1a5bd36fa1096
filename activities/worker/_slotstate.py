"""Who answers for a slot's tasks: the worker's record, the slot's numbers, no shared lock.

The worker hands a slot its tasks, numbered 1, 2, 3... per slot, and keeps the record
(:class:`SlotState`, in the worker's process only): which task has which number, and
which the slot still answers for. The slot writes two numbers into memory the worker
shares with it (:class:`Cells`): the last task it *finished* running (the slot is free
again) and the last it *reported* (its outcome was sent, or there was none to send).
Each number has one writer, and nothing is locked across processes: a task process
killed at any instruction leaves its numbers behind, and the worker reads from them what
it took with it, the tasks handed after the last reported, which it fails.

Inside the process that runs them, :class:`Answer` decides between the slot and the end of
the shutdown grace: whoever takes a task first under its (in-process) lock reports it.
"""

from __future__ import annotations

import ctypes
import threading
from typing import TYPE_CHECKING

from activities.task import TOKEN_PREFIX_LENGTH, Task

if TYPE_CHECKING:
    from multiprocessing.context import BaseContext

__all__ = ["Answer", "Cells", "Held", "SlotState"]

#: Where each number of a slot is in its unit's :class:`Cells`.
FINISHED, REPORTED = 0, 1
_FIELDS = 2


class Cells:
    """The numbers the slots of one unit share with the worker, two per slot.

    ``FINISHED`` and ``REPORTED``, written by the slot only (the worker keeps what it
    handed in its own record). Made before the unit starts; a task process gets them as
    it starts.

    Args:
        context: the multiprocessing context of the unit.
        size: how many slots (and async positions) the unit has.
    """

    def __init__(self, context: BaseContext, size: int) -> None:
        self._array = context.RawArray(ctypes.c_longlong, _FIELDS * size)

    def get(self, at: int, field: int) -> int:
        """The number ``field`` of the unit's slot ``at``."""
        return int(self._array[_FIELDS * at + field])

    def set(self, at: int, field: int, number: int) -> None:
        """Write the number ``field`` of the unit's slot ``at``."""
        self._array[_FIELDS * at + field] = number


class Held:
    """A task a slot answered for, as taken from the worker's :class:`SlotState`.

    Attributes:
        activity_arn: the task's activity.
        token: the task's token.
        index: its task list's place among those the worker serves.
        sent: the slot had finished it, and its outcome may have been sent before the
            slot died: Step Functions may say the task is closed already.
    """

    def __init__(self, activity_arn: str, token: str, index: int = -1) -> None:
        self.activity_arn = activity_arn
        self.token = token
        self.index = index
        self.sent = False

    @property
    def token_prefix(self) -> str:
        """The start of the token, to name the task in logs."""
        return self.token[:TOKEN_PREFIX_LENGTH]

    @property
    def activity_name(self) -> str:
        """The activity's name in Step Functions, the end of its ARN."""
        return self.activity_arn.rpartition(":")[2]

    def as_task(self, worker_name: str) -> Task:
        """The task, as far as reporting it goes (its input is not kept)."""
        return Task(
            token=self.token, activity_arn=self.activity_arn, worker_name=worker_name, input=""
        )


class SlotState:
    """The worker's record of one slot: the tasks it handed there, and which still run.

    In the worker's process only; changed under a lock of its own, which nothing in a
    task process can hold.

    Args:
        cells: the numbers of the slot's unit.
        at: the slot's place in ``cells``.
    """

    def __init__(self, cells: Cells, at: int) -> None:
        self.cells = cells
        self.at = at
        self._lock = threading.Lock()
        self._handed = 0
        self._taken = 0  # the worker answers for the tasks up to this one
        self._closed = False
        self._tasks: dict[int, Held] = {}

    def free(self) -> bool:
        """Whether the slot may be handed a task now: it finished the last, and is open."""
        return not self._closed and self.cells.get(self.at, FINISHED) >= self._handed

    def busy(self) -> bool:
        """Whether the slot runs a task it was handed (read without the lock)."""
        return self.cells.get(self.at, FINISHED) < self._handed

    def hold(self, task: Task, index: int) -> int | None:
        """Record ``task`` (of task list ``index``) as the slot's; its number, or ``None``.

        ``None`` when the slot is not free (see :meth:`free`).
        """
        with self._lock:
            if not self.free():
                return None
            number = self._handed = self._handed + 1
            self._tasks[number] = Held(task.activity_arn, task.token, index)
            done = max(self.cells.get(self.at, REPORTED), self._taken)
            for old in [old for old in self._tasks if old <= done]:
                del self._tasks[old]
            return number

    def close(self) -> None:
        """Hand the slot no task from now on."""
        self._closed = True

    @property
    def closed(self) -> bool:
        """Whether the slot takes no task any more (see :meth:`close`)."""
        return self._closed

    def running(self) -> int:
        """The task list of the task the slot runs now, or -1 when it runs none."""
        with self._lock:
            if self.cells.get(self.at, FINISHED) >= self._handed:
                return -1
            held = self._tasks.get(self._handed)
            return held.index if held is not None else -1

    def answering(self) -> bool:
        """Whether the slot runs, or reports, a task the worker has not taken."""
        return max(self.cells.get(self.at, REPORTED), self._taken) < self._handed

    def take(self) -> list[Held]:
        """Take every task the slot answers for; the slot is closed.

        For a slot whose unit died, or that a stop at once ended: the worker reports
        them from now on.
        """
        with self._lock:
            self._closed = True
            finished = self.cells.get(self.at, FINISHED)
            first = max(self.cells.get(self.at, REPORTED), self._taken) + 1
            taken = [self._tasks[number] for number in range(first, self._handed + 1)]
            for number, held in zip(range(first, self._handed + 1), taken, strict=True):
                held.sent = number <= finished
            self._taken = self._handed
            return taken


class Answer:
    """Inside the process that runs a slot: its task now, and who reports it.

    The slot reports what its task returns, unless the shutdown grace ended first: then
    the process fails the task itself (:meth:`take`) and drops what it returns later.
    One lock, in this process, decides.

    Args:
        cells: the numbers of the slot's unit.
        at: the slot's place in ``cells``.
    """

    def __init__(self, cells: Cells, at: int) -> None:
        self._cells = cells
        self._at = at
        self._lock = threading.Lock()
        self._number = 0
        self._task: Task | None = None
        self._taken = False
        self._sending: set[int] = set()  # tasks whose outcome is on its way
        self._done = 0  # the last task reported

    def begin(self, number: int, task: Task) -> None:
        """The slot starts task ``number``."""
        with self._lock:
            self._number, self._task, self._taken = number, task, False

    def finish(self, number: int) -> bool:
        """Task ``number`` returned: the slot is free; whether it is to report the task.

        If so, the slot answers for it until :meth:`reported`.
        """
        with self._lock:
            taken = self._taken and self._number == number
            self._task = None
            if not taken:
                self._sending.add(number)
            self._cells.set(self._at, FINISHED, number)
            return not taken

    def reported(self, number: int) -> None:
        """The slot answers for task ``number`` no more: reported, or nothing to report.

        Outcomes may land out of order (a slot has two on their way at most): what the
        worker reads is the last task before the first still on its way, so that it never
        takes an outcome on its way for sent.
        """
        with self._lock:
            self._sending.discard(number)
            self._done = max(self._done, number)
            last = min(self._sending) - 1 if self._sending else self._done
            if last > self._cells.get(self._at, REPORTED):
                self._cells.set(self._at, REPORTED, last)

    def take(self, token: str | None = None) -> tuple[int, Task] | None:
        """Take the running task from the slot: the caller answers for it (the grace ended).

        With ``token``, only if the running task is that one (not one it took after).
        """
        with self._lock:
            if self._task is None or self._taken:
                return None
            if token is not None and self._task.token != token:
                return None
            self._taken = True
            self._sending.add(self._number)
            return self._number, self._task

    def running(self) -> Task | None:
        """The task the slot runs now, unless taken."""
        with self._lock:
            return None if self._taken else self._task
