"""The tasks one slot answers for, in memory the worker's process shares with the slot.

Whoever *takes* a task from a :class:`SlotState` sends that task's outcome: the slot, or
the worker when the slot died or a stop ran out of time. Every change is made under the
state's lock, so exactly one of them reports each task.
"""

from __future__ import annotations

import ctypes
from typing import TYPE_CHECKING

from activities.task import TOKEN_PREFIX_LENGTH, Task

if TYPE_CHECKING:
    from multiprocessing.context import BaseContext

    from activities._control import Control

__all__ = ["Held", "SlotState"]

#: Bytes a slot's state holds: a phase, an activity ARN (up to 256 characters) and a task
#: token (up to 2,048).
STATE_CAPACITY = 4096

RUNNING, DELIVERING, TAKEN, RETIRED = b"R", b"D", b"T", b"X"


class Held:
    """A task a slot answered for, as taken from its :class:`SlotState`."""

    def __init__(self, activity_arn: str, token: str) -> None:
        self.activity_arn = activity_arn
        self.token = token

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

    def __init__(self, context: BaseContext, control: Control, position: int) -> None:
        self._lock = context.Lock()
        self._control = control
        self._position = position
        self._running = context.RawArray(ctypes.c_char, STATE_CAPACITY)
        self._delivering = context.RawArray(ctypes.c_char, STATE_CAPACITY)

    def free(self) -> bool:
        """Whether the slot runs nothing now (read without the lock)."""
        return self._running[0] == b"\x00"  # without copying the task's token

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

    def take(self, *, delivering: bool, token: str | None = None) -> list[Held]:
        """Take the task the slot runs (and, with ``delivering``, the one it reports).

        The slot keeps running it, but no longer answers for it. With ``token``, only if
        the task it runs is that one (not one it took after that one ended).
        """
        taken: list[bytes] = []
        with self._lock:
            running = self._running.value
            if running.startswith(RUNNING) and (
                token is None or running.rpartition(b"\n")[2] == token.encode()
            ):
                taken.append(running)
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
