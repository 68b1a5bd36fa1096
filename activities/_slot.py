"""Slots: each polls for a task, runs it and reports it, one at a time, in a process or a thread.

A slot is a loop of its own (:class:`~activities._loop.SlotLoop`): long-poll a task list,
run the task with heartbeats, deliver its outcome, poll again; the Step Functions calls of
all slots run side by side, in as many processes.

A process slot is a long-lived child process with its own Step Functions client: a crash
or a leak stays inside it, and it is replaced when it dies, its task failed with
``activities.WorkerCrashed``. The child ignores SIGINT and SIGTERM: a Ctrl-C or a systemd
stop reaches the whole process group, and the parent alone decides how to drain. The
child's log records go to the parent, which handles them as its own. A thread slot runs
the same loop in a thread of the worker's own process, for I/O-bound work.

What the worker sees of a slot is its :class:`~activities._slotstate.SlotState` and whether
it is alive; it hears from it when it is ready and when it ended (:class:`SlotOwner`).
"""

from __future__ import annotations

import contextlib
import gc
import itertools
import logging
import multiprocessing
import multiprocessing.connection
import os
import signal
import sys
import threading
import time
from typing import TYPE_CHECKING, Protocol

from activities._childlog import start_logging
from activities._forkserver import STOP_SIGNALS, StartState
from activities._heartbeats import Heartbeats
from activities._loop import SlotLoop
from activities._slotstate import SlotState
from activities.client import READ_TIMEOUT, ActivityClient, make_client

if TYPE_CHECKING:
    from multiprocessing.connection import Connection
    from multiprocessing.context import BaseContext, ForkServerContext, ForkServerProcess

    from activities._control import Control
    from activities._heartbeats import Job
    from activities._loop import SlotSettings
    from activities.task import Task

__all__ = [
    "ProcessSlot",
    "Slot",
    "SlotOwner",
    "ThreadSlot",
    "thread_heartbeats",
]

logger = logging.getLogger(__name__)

#: HTTP connections of a process slot's client: its poll or outcome, and heartbeats.
PROCESS_CONNECTIONS = 4

#: Exit code of a process that stopped itself because its task was gone and would not stop.
EXIT_STUCK = 75

#: Seconds such a process waits for the outcome it is still sending before it exits.
STUCK_DELIVERY_TIMEOUT = 10.0

#: Threads sending the heartbeats of thread slots, at most.
HEARTBEAT_THREADS = 16

_ids = itertools.count(1)


class SlotOwner(Protocol):
    """What a slot tells the worker. Called from a thread of the slot's own."""

    def on_ready(self, slot: Slot) -> None:
        """The slot polls."""

    def on_exit(self, slot: Slot, reason: str, *, was_ready: bool) -> None:
        """The slot ended; ``reason`` says how."""

    def on_overflow(self, task: Task) -> None:
        """The slot's own poll brought ``task`` while the slot ran another: keep it."""

    def on_free(self) -> None:
        """The slot is free, and tasks wait for one."""


class Slot(Protocol):
    """A place that polls for and runs one task at a time."""

    name: str
    kind: str
    position: int
    state: SlotState
    ready: bool

    def offer(self, task: Task, index: int) -> bool:
        """Hand ``task`` (of task list ``index``) to the slot; ``False`` if it is not free."""

    def start(self) -> None:
        """Start the process or thread; ``on_ready`` follows."""

    def terminate(self) -> bool:
        """Stop the slot at once; ``False`` if this kind of slot cannot be stopped."""

    def is_alive(self) -> bool:
        """Whether the slot's process or thread still runs."""


class ProcessSlot:
    """A child process that polls for and runs tasks with a client of its own."""

    kind = "process"

    def __init__(
        self,
        settings: SlotSettings,
        control: Control,
        owner: SlotOwner,
        context: ForkServerContext,
        *,
        position: int = 0,
    ) -> None:
        self.name = f"process-{next(_ids)}"
        self.position = position
        self._owner = owner
        self.ready = False
        self.state = SlotState(context, control, position)
        self._conn, child_conn = context.Pipe(duplex=False)
        inbox, self._inbox = context.Pipe(duplex=False)
        self._child_conns: list[Connection] = [child_conn, inbox]
        self._inbox_lock = threading.Lock()
        self.process: ForkServerProcess = context.Process(
            target=_child_main,
            args=(child_conn, inbox, self.name, StartState.now()),
            kwargs={
                "settings": settings,
                "control": control,
                "state": self.state,
                "position": position,
            },
            name=f"sfn-activities-{self.name}",
            daemon=True,
        )

    def __repr__(self) -> str:
        return f"<ProcessSlot {self.name} pid={self.process.pid}>"

    def start(self) -> None:
        """Start the child and the thread that hears from it."""
        self.process.start()
        for conn in self._child_conns:
            conn.close()
        self._child_conns = []
        threading.Thread(target=self._read, name=f"sfn-activities-{self.name}", daemon=True).start()

    def terminate(self) -> bool:
        """Kill the child; a replacement is the owner's business."""
        if self.process.pid is None:
            return True  # not started yet: it will see the stop flags and end at once
        with contextlib.suppress(OSError):
            self.process.kill()
        return True

    def is_alive(self) -> bool:
        """Whether the child still runs."""
        return self.process.is_alive()

    def offer(self, task: Task, index: int) -> bool:
        """Hold ``task`` in the slot's state and send it to the child; ``False`` if busy.

        Once held, the task is the slot's: if the child dies before it is done, the worker
        fails it with ``activities.WorkerCrashed``.
        """
        if not self.state.try_hold(task.activity_arn, task.token, index):
            return False
        try:
            with self._inbox_lock:
                self._inbox.send(task)
        except (OSError, ValueError):
            logger.warning("%s is gone: task %s goes with it", self.name, task.token_prefix)
        return True

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
                elif message[0] == "overflow":
                    self._owner.on_overflow(message[1])
                elif message[0] == "ready":
                    self.ready = True
                    self._owner.on_ready(self)
            except Exception:
                logger.exception("%s: handling %r failed; the slot goes on", self.name, message[0])
        self.process.join()
        self._conn.close()
        self._inbox.close()
        self.state.retire()  # no task is handed to a dead process from now on
        code = self.process.exitcode
        reason = (
            f"killed by signal {-code}" if code is not None and code < 0 else f"exit code {code}"
        )
        self._owner.on_exit(self, reason, was_ready=self.ready)


def _stop_when_orphaned(control: Control) -> None:
    """Stop polling once the worker's process is gone: nobody would drain or replace us.

    The task in hand is finished and reported first; every slot sees the flag.
    """
    parent = multiprocessing.parent_process()
    if parent is None:
        return
    multiprocessing.connection.wait([parent.sentinel])
    if not control.stopping.is_set():
        logger.error("the worker's process is gone: ending this task process after its task")
        control.stopping.set()
    control.drained.set()  # nobody will hand over a task any more


def _child_main(
    conn: Connection,
    inbox: Connection,
    name: str,
    start: StartState,
    *,
    settings: SlotSettings,
    control: Control,
    state: SlotState,
    position: int,
) -> None:
    """A process slot: set signals and logging up, make a client, run the slot's loop."""
    start.apply()
    for signum in STOP_SIGNALS:
        signal.signal(signum, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
    lock = threading.Lock()
    start_logging(settings.log_plan, conn, lock)
    threading.Thread(
        target=_stop_when_orphaned, args=(control,), name="sfn-activities-orphan", daemon=True
    ).start()
    try:
        factory = settings.client_factory
        sfn = (
            factory()
            if factory is not None
            else make_client(max_pool_connections=PROCESS_CONNECTIONS)
        )
        client = ActivityClient(sfn, worker_name=settings.worker_name)
    except Exception:
        logger.exception("%s could not make its Step Functions client", name)
        sys.exit(1)

    def stuck(job: Job) -> None:
        # The task is gone: nobody is to report it; the worker replaces this process once
        # the outcome of the task before it is sent.
        state.take(delivering=False)
        logger.warning(
            "task %s did not stop when cancelled: replacing %s", job.task.token_prefix, name
        )
        loop.finish_delivery(STUCK_DELIVERY_TIMEOUT)
        # A poll of the slot's that is still open may bring a task: it must not be lost.
        state.retire()
        deadline = time.monotonic() + READ_TIMEOUT
        while control.polling(position) >= 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        logging.shutdown()
        os._exit(EXIT_STUCK)

    def overflow(task: Task) -> None:
        with lock:
            conn.send(("overflow", task))

    def freed() -> None:
        with lock:
            conn.send(("free",))

    heartbeats = Heartbeats(client, on_stuck=stuck)
    loop = SlotLoop(
        name,
        client,
        settings=settings,
        control=control,
        state=state,
        heartbeats=heartbeats,
        overflow=overflow,
        freed=freed,
        position=position,
        own_process=True,
    )
    threading.Thread(
        target=_receive_tasks, args=(inbox, loop), name="sfn-activities-inbox", daemon=True
    ).start()
    # What the imports made lives as long as the process: keep the collector off it.
    gc.freeze()
    with lock:
        conn.send(("ready",))
    # Tasks run in threads, as in a thread slot: the main thread only waits.
    runner = threading.Thread(target=loop.run, name="sfn-activities-run")
    runner.start()
    runner.join()


def _receive_tasks(inbox: Connection, loop: SlotLoop) -> None:
    """Pass the tasks the worker hands over to the slot's runner."""
    while True:
        try:
            task = inbox.recv()
        except (EOFError, OSError):
            return
        loop.hand(task)


class ThreadSlot:
    """A thread of the worker's process that polls for and runs tasks, for I/O-bound work.

    A thread cannot be stopped from outside: a task whose heartbeat finds it gone is
    cancelled at its next heartbeat, and its outcome is dropped.
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
        position: int = 0,
    ) -> None:
        self.name = f"thread-{next(_ids)}"
        self.position = position
        self.ready = False
        self.state = SlotState(context, control, position)
        self._owner = owner
        self._loop = SlotLoop(
            self.name,
            client,
            settings=settings,
            control=control,
            state=self.state,
            heartbeats=heartbeats,
            overflow=owner.on_overflow,
            freed=owner.on_free,
            position=position,
        )
        self._thread = threading.Thread(
            target=self._main, name=f"sfn-activities-{self.name}", daemon=True
        )

    def __repr__(self) -> str:
        return f"<ThreadSlot {self.name}>"

    def start(self) -> None:
        """Start the thread."""
        self._thread.start()

    def terminate(self) -> bool:
        """Threads cannot be stopped from outside."""
        return False

    def offer(self, task: Task, index: int) -> bool:
        """Hold ``task`` in the slot's state and queue it for the thread; ``False`` if busy."""
        if not self.state.try_hold(task.activity_arn, task.token, index):
            return False
        self._loop.hand(task)
        return True

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
        self.state.retire()  # no task is handed to an ended thread from now on
        self._owner.on_exit(self, reason, was_ready=True)


def thread_heartbeats(client: ActivityClient, threads: int) -> Heartbeats:
    """The heartbeats of ``threads`` thread slots, which share the worker's process."""
    return Heartbeats(
        client, on_stuck=_cannot_stop, threads=max(2, min(threads, HEARTBEAT_THREADS))
    )


def _cannot_stop(job: Job) -> None:
    logger.warning(
        "task %s is gone but %s does not yield; a thread cannot be stopped: it runs on",
        job.task.token_prefix,
        job.activity.name,
    )
