"""Task processes: children of the worker that poll for and run tasks, in one slot or several.

A task process is forked from the worker's forkserver (:mod:`activities._forkserver`) and
lives long: it makes its own Step Functions client and runs one
:class:`~activities._loop.SlotLoop` per slot, each in threads of its own (one slot by
default; ``threads`` of them with ``Worker(processes=N, threads=M)``, gunicorn's gthread
worker). A crash or a leak stays inside it: when it dies the worker fails the tasks its
slots held with ``activities.WorkerCrashed`` and starts another in its place. It ignores
SIGINT and SIGTERM: a Ctrl-C or a systemd stop reaches the whole process group, and the
worker alone decides how to drain.

A task process is *recycled* (:mod:`activities._recycling`) after
``max_tasks_per_process`` tasks, above ``max_memory_per_process``, or when a task found
gone does not stop: its slots take no new task, those running finish and are reported,
then it exits and the worker replaces it. The worker hears from it through a pipe (ready,
log records, a task its own poll brought while its slot was busy, a slot freed) and hands
it tasks through another.
"""

from __future__ import annotations

import contextlib
import functools
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
from typing import TYPE_CHECKING

from activities._asyncslots import AsyncSlots, async_threads
from activities._childlog import say_to_stderr, start_logging
from activities._forkserver import STOP_SIGNALS, StartState, rename
from activities._heartbeats import Heartbeats
from activities._loop import SlotLoop
from activities._metrics import metrics_of
from activities._outage import Hearing
from activities._premade import take
from activities._recycling import ProcessLife
from activities._sfnclient import READ_TIMEOUT, make_client
from activities._slot import HEARTBEAT_THREADS, heartbeat_threads
from activities._slotstate import SlotState
from activities.client import ActivityClient

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from multiprocessing.connection import Connection
    from multiprocessing.context import ForkServerContext, ForkServerProcess

    from activities._childlog import LogPlan
    from activities._control import Control
    from activities._heartbeats import Job
    from activities._loop import SlotSettings
    from activities._slot import Slot, SlotOwner
    from activities.task import Task

__all__ = ["ProcessSlot", "TaskProcess", "task_process_connections"]

logger = logging.getLogger(__name__)

#: HTTP connections of a task process's client per slot: its poll or outcome, heartbeats.
CONNECTIONS_PER_SLOT = 4

#: The name a task process goes by (``ps -o comm``, ``top``).
TASK_PROCESS_NAME = "sfn-task"

#: Exit code of a process that stopped itself because a task was gone and would not stop.
EXIT_STUCK = 75

#: Seconds such a process waits for outcomes it is still sending before it exits.
STUCK_DELIVERY_TIMEOUT = 10.0

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
            :mod:`activities._asyncslots`), which run async tasks only.
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
        self._slots = [
            ProcessSlot(
                self,
                position,
                SlotState(context, control, position),
                name=self.name if len(positions) == 1 else f"{self.name}.{number}",
            )
            for number, position in enumerate(positions, 1)
        ]
        self._async = [
            ProcessSlot(
                self,
                position,
                SlotState(context, control, position),
                name=f"{self.name}.async-{number}",
                takes_sync=False,
            )
            for number, position in enumerate(async_positions, 1)
        ]
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
                "slots": [(slot.name, slot.position, slot.state) for slot in self._slots],
                "async_slots": [(slot.name, slot.position, slot.state) for slot in self._async],
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

    def send(self, position: int, task: Task) -> None:
        """Send ``task``, held by the slot at ``position`` already, to the process."""
        try:
            with self._inbox_lock:
                self._inbox.send((position, task))
        except (OSError, ValueError):
            logger.warning("%s is gone: task %s goes with it", self.name, task.token_prefix)

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
                logger.exception(
                    "%s: handling %r failed; the process goes on", self.name, message[0]
                )
        self.process.join()
        self._conn.close()
        self._inbox.close()
        for slot in self.slots:
            slot.state.retire()  # no task is handed to a dead process from now on
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
        """Hold ``task`` in the slot's state and send it to the process; ``False`` if busy.

        Once held, the task is the slot's: if the process dies before it is done, the
        worker fails it with ``activities.WorkerCrashed``.
        """
        if not self.state.try_hold(task.activity_arn, task.token, index):
            return False
        self._process.send(self.position, task)
        return True


class _Orphan:
    """Stops the process's polls once the worker's process is gone, and says so, once.

    Nobody would drain the process or replace it. The tasks in hand are finished and
    reported first; every slot, in every task process, sees the shared flag. Each task
    process says so itself, where the line cannot be lost with the worker: the first to
    notice sets ``control.orphaned``, and a process stopped by it before it noticed on
    its own says so as it ends.
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
        self._control.stopping.set()  # shared: the other task processes stop too
        self._control.drained.set()  # nobody will hand over a task any more

    def say(self) -> None:
        """Log, once, that the worker's process is gone, if it is."""
        if not self._control.orphaned.is_set():
            return
        with self._lock:
            if self._said:
                return
            self._said = True
        message = "the worker's process is gone: ending this task process after its tasks"
        say_to_stderr(self._plan, logger, logging.ERROR, message)


def _child_main(
    conn: Connection,
    inbox: Connection,
    name: str,
    start: StartState,
    *,
    settings: SlotSettings,
    control: Control,
    slots: list[tuple[str, int, SlotState]],
    async_slots: list[tuple[str, int, SlotState]] | None = None,
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
    serving.run(inbox, slots, async_slots)
    orphan.say()  # stopped by another orphan's flag before noticing: say it too
    if serving.stuck_async():
        logging.shutdown()
        os._exit(EXIT_STUCK)


def task_process_connections(slots: int, async_positions: int) -> int:
    """HTTP connections of a task process's client: for its slots and async positions."""
    connections = CONNECTIONS_PER_SLOT * slots
    if async_positions:
        # Their pollers, their outcome threads, the heartbeats.
        connections += 2 * async_threads(async_positions) + HEARTBEAT_THREADS
    return connections


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

    It also says what the slots say to the worker (a task to keep, a slot freed), and
    handles a task found gone that does not stop (the process is replaced).
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
        self._life = ProcessLife(name, settings.max_tasks, settings.max_memory)
        self._loops: list[SlotLoop] = []
        self._async: AsyncSlots | None = None
        self._runners: dict[object, threading.Thread] = {}
        self._stuck_loops: set[SlotLoop] = set()

    def run(
        self,
        inbox: Connection,
        slots: list[tuple[str, int, SlotState]],
        async_slots: list[tuple[str, int, SlotState]],
    ) -> None:
        """Start the slots' loops and the async positions; return once they all ended."""
        settings = self._settings
        heartbeats = Heartbeats(
            self._client,
            on_stuck=self._stuck,
            threads=heartbeat_threads(len(slots) + len(async_slots)),
            metrics=metrics_of(settings.metrics_dir),
        )
        self._loops = [
            SlotLoop(
                slot_name,
                self._client,
                settings=settings,
                control=self._control,
                state=state,
                heartbeats=heartbeats,
                overflow=self._overflow,
                freed=self._freed,
                position=position,
                life=self._life,
                send_in_background=len(slots) == 1,
            )
            for slot_name, position, state in slots
        ]
        takers: dict[int, Callable[[Task], None]] = {
            loop.position: loop.hand for loop in self._loops
        }
        if async_slots:
            positions = self._async = AsyncSlots(
                f"{self._name}.async",
                self._client,
                settings=settings,
                control=self._control,
                positions=async_slots,
                heartbeats=heartbeats,
                overflow=self._overflow,
                freed=self._freed,
                life=self._life,
            )
            for position in positions.positions:
                takers[position] = functools.partial(positions.hand, position)
        threading.Thread(
            target=_receive_tasks, args=(inbox, takers), name="sfn-activities-inbox", daemon=True
        ).start()
        # What the imports made lives as long as the process: keep the collector off it.
        gc.freeze()
        with self._lock:
            self._conn.send(("ready",))
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

    def _overflow(self, task: Task) -> None:
        with self._lock:
            self._conn.send(("overflow", task))

    def _freed(self) -> None:
        with self._lock:
            self._conn.send(("free",))

    def _stuck(self, job: Job) -> None:
        loop = next((loop for loop in self._loops if loop.job is job), None)
        if loop is not None:
            # The task is gone: nobody is to report it.
            loop.state.take(delivering=False)
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
                args=(self._stuck_loops, self._runners, self._control),
                name="sfn-activities-stuck",
            ).start()


def _exit_stuck(
    stuck: set[SlotLoop], runners: dict[object, threading.Thread], control: Control
) -> None:
    """End the process once its other slots ended; the stuck tasks' threads die with it.

    ``stuck`` may grow meanwhile: another task of the process found gone that does not
    stop is not waited for either.
    """
    while any(runner.is_alive() for loop, runner in runners.items() if loop not in stuck):
        time.sleep(0.05)
    for loop in list(stuck):
        loop.finish_delivery(STUCK_DELIVERY_TIMEOUT)
    # A poll of a stuck slot's that is still open may bring a task: it must not be lost.
    deadline = time.monotonic() + READ_TIMEOUT
    while time.monotonic() < deadline and any(
        control.polling(loop.position) >= 0 for loop in list(stuck)
    ):
        time.sleep(0.05)
    logging.shutdown()
    os._exit(EXIT_STUCK)


def _receive_tasks(inbox: Connection, takers: dict[int, Callable[[Task], None]]) -> None:
    """Pass the tasks the worker hands over to the slots (or async positions) they are for."""
    while True:
        try:
            position, task = inbox.recv()
        except (EOFError, OSError):
            return
        takers[position](task)
