"""Task processes: children of the worker that run the tasks it hands them, in slots.

A task process is forked from the worker's forkserver (:mod:`activities.worker._forkserver`)
and lives long: it makes its own Step Functions client and runs one
:class:`~activities.worker._loop.SlotLoop` per slot, each in threads of its own (one slot by
default; ``threads`` of them with ``Worker(processes=N, threads=M)``, gunicorn's gthread
worker), and its async positions (:mod:`activities.worker._asyncslots`) if it has any.
This module is the worker's side of it; what runs inside is
:mod:`activities.worker._taskprocess`. A crash or a leak stays inside it: when it dies the
worker fails the tasks its slots held with ``activities.WorkerCrashed`` and starts another
in its place. It ignores SIGINT and SIGTERM: a Ctrl-C or a systemd stop reaches the whole
process group, and the worker alone decides how to drain.

A task process is *recycled* (:mod:`activities.worker._recycling`) after
``max_tasks_per_process`` tasks, above ``max_memory_per_process``, or when a task found
gone does not stop: its slots take no new task, those running finish and are reported,
then it exits and the worker replaces it. The worker hears from it through a pipe
(ready, log records, a slot freed, recycle me) and hands it tasks through another; the
record of which task is where is the worker's (:mod:`activities.worker._slotstate`).
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import threading
from typing import TYPE_CHECKING

from activities.worker._forkserver import StartState
from activities.worker._slotstate import Cells, SlotState
from activities.worker._taskprocess import EXIT_STUCK, child_main, closing, handing

if TYPE_CHECKING:
    from collections.abc import Sequence
    from multiprocessing.connection import Connection
    from multiprocessing.context import ForkServerContext, ForkServerProcess

    from activities.task import Task
    from activities.worker._control import Control
    from activities.worker._loop import SlotSettings
    from activities.worker._slot import Slot, SlotOwner

__all__ = ["ProcessSlot", "TaskProcess", "exit_reason", "restart_reason"]

logger = logging.getLogger(__name__)

_ids = itertools.count(1)


class TaskProcess:
    """A task process, as the worker sees it: its slots, and whether it runs.

    Args:
        settings: what every slot needs to know.
        control: the worker's shared state.
        owner: told when the process is ready and when it ended.
        context: the forkserver context the process starts in.
        positions: the positions of its slots in ``control``, one per slot.
        async_positions: the positions of its async positions (``async_tasks``; see
            :mod:`activities.worker._asyncslots`), which run async tasks only.
    """

    kind = "process"

    def __init__(
        self,
        settings: SlotSettings,
        control: Control,
        owner: SlotOwner,
        context: ForkServerContext,
        *,
        positions: Sequence[int],
        async_positions: Sequence[int] = (),
    ) -> None:
        self.name = f"process-{next(_ids)}"
        self.ready = False
        self._owner = owner
        cells = Cells(context, len(positions) + len(async_positions))
        self._slots = [
            ProcessSlot(
                self,
                position,
                SlotState(cells, at),
                name=self.name if len(positions) == 1 else f"{self.name}.{number}",
            )
            for at, (number, position) in enumerate(enumerate(positions, 1))
        ]
        self._async = [
            ProcessSlot(
                self,
                position,
                SlotState(cells, at),
                name=f"{self.name}.async-{number}",
                takes_sync=False,
            )
            for at, (number, position) in enumerate(enumerate(async_positions, 1), len(positions))
        ]
        self._conn, child_conn = context.Pipe(duplex=False)
        inbox, self._inbox = context.Pipe(duplex=False)
        self._child_conns: list[Connection] = [child_conn, inbox]
        self._inbox_lock = threading.Lock()
        self.process: ForkServerProcess = context.Process(
            target=child_main,
            args=(child_conn, inbox, self.name, StartState.now()),
            kwargs={
                "settings": settings,
                "control": control,
                "cells": cells,
                "slots": [(slot.name, slot.position, slot.state.at) for slot in self._slots],
                "async_slots": [(slot.name, slot.position, slot.state.at) for slot in self._async],
            },
            name=f"sfn-activities-{self.name}",
            daemon=True,
        )

    def __repr__(self) -> str:
        return f"<TaskProcess {self.name} pid={self.process.pid}>"

    @property
    def slots(self) -> Sequence[Slot]:
        """The process's slots, and its async positions after them."""
        return [*self._slots, *self._async]

    def start(self) -> None:
        """Start the process and the thread that hears from it."""
        self.process.start()
        for conn in self._child_conns:
            conn.close()
        self._child_conns = []
        threading.Thread(target=self._read, name=f"sfn-activities-{self.name}", daemon=True).start()

    def terminate(self) -> bool:
        """Kill the process; a replacement is the owner's business."""
        if self.process.pid is None:
            return True  # not started yet: it will see the stop flags and end at once
        with contextlib.suppress(OSError):
            self.process.kill()
        return True

    def is_alive(self) -> bool:
        """Whether the process still runs."""
        return self.process.is_alive()

    def send(self, position: int, number: int, task: Task) -> None:
        """Send ``task``, recorded as the slot's ``number``-th already, to the process.

        If the process is gone, the worker fails the task as it fails the process's
        others (see ``SlotOwner.on_exit``).
        """
        try:
            with self._inbox_lock:
                self._inbox.send_bytes(handing(position, number, task))
        except (OSError, ValueError):
            logger.debug("%s is gone: task %s goes with it", self.name, task.token_prefix)

    def close_slot(self, position: int) -> None:
        """Tell the process that no task comes to ``position`` after those sent."""
        with contextlib.suppress(OSError, ValueError), self._inbox_lock:
            self._inbox.send_bytes(closing(position))

    def _read(self) -> None:
        while True:
            try:
                message = self._conn.recv()
            except (EOFError, OSError):
                break
            try:
                if message[0] == "log":
                    record: logging.LogRecord = message[1]
                    logging.getLogger(record.name).handle(record)
                elif message[0] == "free":
                    self._owner.on_free()
                elif message[0] == "recycle":
                    self._owner.on_recycle(self)
                elif message[0] == "ready":
                    self.ready = True
                    self._owner.on_ready(self)
            except Exception:
                logger.exception(
                    "%s: handling %r failed; the process goes on", self.name, message[0]
                )
        self.process.join()
        self._conn.close()
        self._inbox.close()
        for slot in self.slots:
            slot.state.close()  # no task is handed to a dead process from now on
        self._owner.on_exit(self, exit_reason(self.process.exitcode), was_ready=self.ready)


def exit_reason(code: int | None) -> str:
    """Why a task process ended, for logs: its exit code or the signal that killed it."""
    return f"killed by signal {-code}" if code is not None and code < 0 else f"exit code {code}"


def restart_reason(reason: str) -> str:
    """Why a process that ended for ``reason`` (see :func:`exit_reason`) is replaced.

    ``recycled`` (it ended on its own: worn out or over its memory), ``stuck`` (a
    cancelled task would not stop), or ``crashed``.
    """
    if reason == exit_reason(0):
        return "recycled"
    if reason == exit_reason(EXIT_STUCK):
        return "stuck"
    return "crashed"


class ProcessSlot:
    """One slot of a task process (or an async position): where the worker hands it a task.

    An async position (``takes_sync=False``) takes only tasks of ``async def run()``
    activities.
    """

    kind = "process"

    def __init__(
        self,
        process: TaskProcess,
        position: int,
        state: SlotState,
        *,
        name: str,
        takes_sync: bool = True,
    ) -> None:
        self.name = name
        self.position = position
        self.state = state
        self.takes_sync = takes_sync
        self._process = process

    def __repr__(self) -> str:
        return f"<ProcessSlot {self.name}>"

    @property
    def ready(self) -> bool:
        """Whether the process has started."""
        return self._process.ready

    def offer(self, task: Task, index: int) -> bool:
        """Record ``task`` as the slot's and send it to the process; ``False`` if busy.

        Once recorded, the task is the slot's: if the process dies before it is reported,
        the worker fails it with ``activities.WorkerCrashed``.
        """
        number = self.state.hold(task, index)
        if number is None:
            return False
        self._process.send(self.position, number, task)
        return True

    def close(self) -> None:
        """Hand the slot no more tasks: it ends once those sent are done."""
        self.state.close()
        self._process.close_slot(self.position)
