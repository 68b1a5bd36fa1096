"""Inside a task process: its signals, logging and client, and the slots it serves.

:func:`child_main` is what the worker's forkserver runs in a new task process
(:class:`~activities.worker._process.TaskProcess` is the worker's side of it): it ignores SIGINT
and SIGTERM (the worker alone decides how to drain), sends its log records to the
worker, makes its client, then runs a :class:`~activities.worker._loop.SlotLoop` per slot and
its async positions (:class:`~activities.worker._asyncslots.AsyncSlots`), and passes them the
tasks the worker hands over. It polls nothing. It ends when they have: the worker
closed its slots (a stop, or a recycling it asked for), or the worker's process is gone
(the process then finishes and reports its tasks first).
"""

from __future__ import annotations

import datetime as dt
import functools
import gc
import logging
import multiprocessing
import multiprocessing.connection
import os
import signal
import sys
import threading
import time
from typing import TYPE_CHECKING

from activities._aws.outage import Hearing
from activities._aws.sfnclient import make_client
from activities._ops import tracing
from activities._ops.processmetrics import metrics_of
from activities.client import ActivityClient
from activities.task import Task
from activities.worker._asyncslots import AsyncSlots, async_threads
from activities.worker._childlog import say_to_stderr, start_logging
from activities.worker._forkserver import STOP_SIGNALS, rename, take
from activities.worker._heartbeats import HEARTBEAT_THREADS, Heartbeats, heartbeat_threads
from activities.worker._loop import SlotLoop, outcome_sender
from activities.worker._recycling import ProcessLife
from activities.worker._serving import GraceWatch
from activities.worker._slotstate import Answer

if TYPE_CHECKING:
    from collections.abc import Callable
    from multiprocessing.connection import Connection

    from activities.worker._childlog import LogPlan
    from activities.worker._control import Control
    from activities.worker._forkserver import StartState
    from activities.worker._heartbeats import Job
    from activities.worker._loop import SlotSettings
    from activities.worker._slotstate import Cells

__all__ = [
    "CONNECTIONS_PER_SLOT",
    "EXIT_STUCK",
    "TASK_PROCESS_NAME",
    "async_connections",
    "child_main",
    "closing",
    "handing",
    "task_process_connections",
]

logger = logging.getLogger(__name__)

#: HTTP connections of a task process's client per slot: its outcomes (two on their way at
#: most) and heartbeats.
CONNECTIONS_PER_SLOT = 4

#: The name a task process goes by (``ps -o comm``, ``top``).
TASK_PROCESS_NAME = "sfn-task"

#: Exit code of a process that stopped itself because a task was gone and would not stop.
EXIT_STUCK = 75

#: Seconds a task process whose inbox ended waits for the worker's process to be gone.
ORPHAN_WAIT = 1.0

#: Seconds such a process waits for outcomes it is still sending before it exits.
STUCK_DELIVERY_TIMEOUT = 10.0


class _Orphan:
    """Says, once, that the worker's process is gone.

    Nobody would drain the process or replace it: its inbox ends (no task comes any
    more), the tasks in hand are finished and reported, and it exits. Each task process
    says so itself, where the line cannot be lost with the worker: the first to notice
    sets ``control.orphaned``, and a process that ended before it noticed on its own
    says so as it ends.
    """

    def __init__(self, control: Control, plan: LogPlan) -> None:
        self._control = control
        self._plan = plan
        self._lock = threading.Lock()
        self._said = False

    def watch(self) -> _Orphan:
        """Wait, in a thread of its own, until the worker's process is gone; then stop."""
        threading.Thread(target=self._wait, name="sfn-activities-orphan", daemon=True).start()
        return self

    def _wait(self) -> None:
        parent = multiprocessing.parent_process()
        if parent is None:
            return
        multiprocessing.connection.wait([parent.sentinel])
        self._control.orphaned.set()
        self.say()

    def say(self, *, inbox_ended: bool = False) -> None:
        """Log, once, that the worker's process is gone, if it is.

        ``inbox_ended``: the worker's messages ended without a word: its process is
        dying, though its sentinel may not say so yet; it is given a moment to.
        """
        if not self._control.orphaned.is_set():
            parent = multiprocessing.parent_process()
            if not inbox_ended or parent is None:
                return
            if not multiprocessing.connection.wait([parent.sentinel], timeout=ORPHAN_WAIT):
                return
            self._control.orphaned.set()
        # Written under the lock: the main thread, about to end the process, waits for
        # the watch's line rather than take it for written.
        with self._lock:
            if self._said:
                return
            self._said = True
            message = "the worker's process is gone: ending this task process after its tasks"
            say_to_stderr(self._plan, logger, logging.ERROR, message)


def child_main(
    conn: Connection,
    inbox: Connection,
    name: str,
    start: StartState,
    *,
    settings: SlotSettings,
    control: Control,
    cells: Cells,
    slots: list[tuple[str, int, int]],
    async_slots: list[tuple[str, int, int]] | None = None,
) -> None:
    """A task process: set signals and logging up, make a client, serve the slots."""
    start.apply()
    rename(TASK_PROCESS_NAME)
    for signum in STOP_SIGNALS:
        signal.signal(signum, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
    lock = threading.Lock()
    start_logging(settings.log_plan, conn, lock)
    orphan = _Orphan(control, settings.log_plan).watch()
    async_slots = async_slots or []
    try:
        client = _make_client(
            name,
            start,
            settings,
            connections=task_process_connections(len(slots), len(async_slots)),
        )
    except Exception:
        logger.exception("%s could not make its Step Functions client", name)
        sys.exit(1)
    client.hearing = Hearing(control.answered, control.overdue, (slots or async_slots)[0][1])
    serving = _Serving(name, client, conn, lock, settings=settings, control=control)
    serving.run(
        inbox,
        [(slot, position, Answer(cells, at)) for slot, position, at in slots],
        [(slot, position, Answer(cells, at)) for slot, position, at in async_slots],
    )
    orphan.say(inbox_ended=serving.inbox_ended.is_set())  # if not said yet: say it too
    # multiprocessing ends the process with os._exit: no atexit handler exports the spans.
    tracing.flush()
    if serving.stuck_async():
        logging.shutdown()
        os._exit(EXIT_STUCK)


def task_process_connections(slots: int, async_positions: int) -> int:
    """HTTP connections of a task process's client: for its slots and async positions."""
    return CONNECTIONS_PER_SLOT * slots + async_connections(async_positions)


def async_connections(positions: int) -> int:
    """HTTP connections the calls of ``positions`` async positions need at once, at most."""
    if not positions:
        return 0
    # Their outcome threads, the heartbeats.
    return async_threads(positions) + HEARTBEAT_THREADS


def _make_client(
    name: str, start: StartState, settings: SlotSettings, *, connections: int
) -> ActivityClient:
    """The task process's client: made before the fork if it can be, else here."""
    factory = settings.client_factory
    sfn = take(factory, start, connections=connections)
    if sfn is not None:
        logger.debug("%s uses the Step Functions client made before the fork", name)
    else:
        sfn = factory() if factory is not None else make_client(max_pool_connections=connections)
    return ActivityClient(
        sfn,
        worker_name=settings.worker_name,
        retry=settings.retry,
        call_timeout=settings.call_timeout,
    )


class _Serving:
    """What a task process runs: its slots' loops and its async positions, until they end.

    It also says what the slots say to the worker (a slot freed, recycle this process),
    fails the running tasks at the end of the shutdown grace, and handles a task found
    gone that does not stop (the process is replaced).
    """

    def __init__(
        self,
        name: str,
        client: ActivityClient,
        conn: Connection,
        lock: threading.Lock,
        *,
        settings: SlotSettings,
        control: Control,
    ) -> None:
        self._name = name
        self._client = client
        self._conn = conn
        self._lock = lock
        self._settings = settings
        self._control = control
        self._life = ProcessLife(
            name, settings.max_tasks, settings.max_memory, on_recycle=self._recycle
        )
        self._loops: list[SlotLoop] = []
        self._async: AsyncSlots | None = None
        self._runners: dict[object, threading.Thread] = {}
        #: Set when the worker's messages ended without a word (its process died).
        self.inbox_ended = threading.Event()
        self._stuck_loops: set[SlotLoop] = set()

    def run(
        self,
        inbox: Connection,
        slots: list[tuple[str, int, Answer]],
        async_slots: list[tuple[str, int, Answer]],
    ) -> None:
        """Start the slots' loops and the async positions; return once they all ended."""
        settings = self._settings
        heartbeats = Heartbeats(
            self._client,
            on_stuck=self._stuck,
            threads=heartbeat_threads(len(slots) + len(async_slots)),
            metrics=metrics_of(settings.metrics_dir),
        )
        grace = GraceWatch(self._control)
        sender = outcome_sender(len(slots))
        self._loops = [
            SlotLoop(
                slot_name,
                self._client,
                settings=settings,
                control=self._control,
                answer=answer,
                heartbeats=heartbeats,
                freed=self._freed,
                position=position,
                life=self._life,
                sender=sender,
            )
            for slot_name, position, answer in slots
        ]
        for loop in self._loops:
            grace.add(loop)
        takers: dict[int, Callable[[int, Task], None]] = {
            loop.position: loop.hand for loop in self._loops
        }
        closers: dict[int, Callable[[], None]] = {loop.position: loop.close for loop in self._loops}
        if async_slots:
            positions = self._async = AsyncSlots(
                f"{self._name}.async",
                self._client,
                settings=settings,
                control=self._control,
                positions=async_slots,
                heartbeats=heartbeats,
                freed=self._freed,
                life=self._life,
            )
            grace.add(positions)
            for position in positions.positions:
                takers[position] = functools.partial(positions.hand, position)
                closers[position] = functools.partial(positions.close, position)
        threading.Thread(
            target=_receive_tasks,
            args=(inbox, takers, closers, self.inbox_ended, settings.worker_name),
            name="sfn-activities-inbox",
            daemon=True,
        ).start()
        # What the imports made lives as long as the process: keep the collector off it.
        gc.freeze()
        self._tell(("ready",))
        # Tasks run in threads, as in a thread slot: the main thread only waits.
        servers: list[SlotLoop | AsyncSlots] = [*self._loops]
        if self._async is not None:
            servers.append(self._async)
        self._runners = {
            server: threading.Thread(target=server.run, name=f"sfn-activities-{server.name}-run")
            for server in servers
        }
        for runner in self._runners.values():
            runner.start()
        for runner in self._runners.values():
            runner.join()

    def stuck_async(self) -> bool:
        """Whether an async task found gone ran on past its cancellation."""
        return self._async is not None and self._async.stuck

    def _recycle(self) -> None:
        """Ask the worker for no more tasks: it closes the slots, which end when done."""
        self._tell(("recycle",))

    def _freed(self) -> None:
        self._tell(("free",))

    def _tell(self, message: tuple[object, ...]) -> bool:
        """Send ``message`` to the worker's process; ``False`` if it is gone.

        A pipe that breaks because the worker's process died is expected (the orphan
        watch says so, once): no traceback. One that breaks otherwise is an error.
        """
        try:
            with self._lock:
                self._conn.send(message)
        except (OSError, ValueError):
            parent = multiprocessing.parent_process()
            if self._control.orphaned.is_set() or (parent is not None and not parent.is_alive()):
                self._control.orphaned.set()
                return False
            raise
        return True

    def _stuck(self, job: Job) -> None:
        loop = next((loop for loop in self._loops if loop.job is job), None)
        if loop is not None:
            # The task is gone: nobody is to report it. (Unless it ended meanwhile and the
            # slot runs another: that one it answers for.)
            taken = loop.answer.take(token=job.task.token)
            if taken is None:
                return
            loop.answer.reported(taken[0])
        elif self._async is None or not self._async.give_up(job):
            return  # the task ended meanwhile
        # The process is replaced once the tasks of its other slots, and the outcomes in
        # flight, are done.
        logger.warning(
            "task %s of %s did not stop when cancelled: replacing %s once its other tasks are done",
            job.task.token_prefix,
            job.task.activity_name,
            self._name,
            extra={"activity": job.task.activity_name, "token_prefix": job.task.token_prefix},
        )
        self._life.recycle()
        if loop is None:
            return  # an async task's coroutine: the process ends when the others are done
        first = not self._stuck_loops
        self._stuck_loops.add(loop)
        if first:
            threading.Thread(
                target=_exit_stuck,
                args=(self._stuck_loops, self._runners),
                name="sfn-activities-stuck",
            ).start()


def _exit_stuck(stuck: set[SlotLoop], runners: dict[object, threading.Thread]) -> None:
    """End the process once its other slots ended; the stuck tasks' threads die with it.

    ``stuck`` may grow meanwhile: another task of the process found gone that does not
    stop is not waited for either.
    """
    while any(runner.is_alive() for loop, runner in runners.items() if loop not in stuck):
        time.sleep(0.05)
    for loop in list(stuck):
        loop.finish_delivery(STUCK_DELIVERY_TIMEOUT)
    tracing.flush()
    logging.shutdown()
    os._exit(EXIT_STUCK)


def handing(position: int, number: int, task: Task) -> bytes:
    """The worker's message handing ``task``, its ``number``-th, to the slot at ``position``.

    Plain bytes rather than a pickle: it is sent for every task. The input comes last,
    the only field that may hold a newline.
    """
    head = f"{position}\n{number}\n{task.started_at.timestamp()!r}\n{task.activity_arn}\n"
    return b"".join([head.encode(), task.token.encode(), b"\n", task.input.encode()])


def closing(position: int) -> bytes:
    """The worker's message saying that no task comes to the slot at ``position`` any more."""
    return f"{position}".encode()


def _read(message: bytes, worker_name: str) -> tuple[int, int, Task] | int:
    """What a message of the worker's says: a task handed over, or a slot closed."""
    fields = message.split(b"\n", 5)
    if len(fields) == 1:
        return int(fields[0])
    position, number, started, arn, token, data = fields
    task = Task(
        token=token.decode(),
        activity_arn=arn.decode(),
        worker_name=worker_name,
        input=data.decode(),
        started_at=dt.datetime.fromtimestamp(float(started), dt.UTC),
    )
    return int(position), int(number), task


def _receive_tasks(
    inbox: Connection,
    takers: dict[int, Callable[[int, Task], None]],
    closers: dict[int, Callable[[], None]],
    ended: threading.Event,
    worker_name: str,
) -> None:
    """Pass the tasks the worker hands over to the slots (or async positions) they are for.

    A message of a position alone closes it: no task comes there any more. When the
    worker's process is gone the inbox ends (``ended`` is set), and every slot is closed.
    """
    while True:
        try:
            message = inbox.recv_bytes()
        except (EOFError, OSError):
            ended.set()
            break
        try:
            said = _read(message, worker_name)
            if isinstance(said, int):
                closers[said]()
            else:
                position, number, task = said
                takers[position](number, task)
        except Exception:
            # The worker's record holds it: it fails it with WorkerCrashed if the process ends.
            logger.exception("a message of the worker's could not be handled")
    for close in closers.values():
        close()
