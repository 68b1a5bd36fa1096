"""Slots: each polls for a task, runs it and reports it, one at a time, in a process or a thread.

A slot is a loop of its own (:class:`SlotLoop`): long-poll a task list, run the task with
heartbeats, deliver its outcome, poll again. A task is only received when it can start at
once, and the Step Functions calls of all slots run side by side, in as many processes. A
process slot sends an outcome from a thread while it polls for its next task: at a real
network round trip that doubles what one process serves.

A process slot is a long-lived child process with its own Step Functions client: a crash
or a leak stays inside it, and it is replaced when it dies, its task failed with
``activities.WorkerCrashed``. The child ignores SIGINT and SIGTERM: a Ctrl-C or a systemd
stop reaches the whole process group, and the parent alone decides how to drain. The
child's log records go to the parent, which handles them as its own. A thread slot runs
the same loop in a thread of the worker's own process, for I/O-bound work.

What the worker sees of a slot is its :class:`~activities._control.SlotState` and whether
it is alive; it hears from it when it is ready and when it ended (:class:`SlotOwner`).
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import gc
import itertools
import logging
import logging.handlers
import multiprocessing
import os
import signal
import sys
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, Protocol

import attrs

from activities import _runner
from activities._control import SlotState
from activities._delivery import backoff, deliver
from activities._heartbeats import Heartbeats
from activities.client import ActivityClient, make_client
from activities.errors import ActivityDoesNotExist, ServiceError, Throttled, WorkerShutdown
from activities.outcome import Cancelled, Failure, Success, failure_from_exception

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Mapping
    from multiprocessing.connection import Connection
    from multiprocessing.context import SpawnContext, SpawnProcess

    from mypy_boto3_stepfunctions import SFNClient

    from activities._control import Control
    from activities._heartbeats import Job
    from activities.activity import Activity
    from activities.outcome import Outcome
    from activities.task import Task

__all__ = ["ProcessSlot", "Slot", "SlotLoop", "SlotOwner", "SlotSettings", "ThreadSlot"]

logger = logging.getLogger(__name__)

#: Longest pause, in seconds, of a slot's polling after repeated errors.
POLL_BACKOFF_CAP = 30.0

#: HTTP connections of a process slot's client: its poll or outcome, and heartbeats.
PROCESS_CONNECTIONS = 4

#: Exit code of a process that stopped itself because its task was gone and would not stop.
EXIT_STUCK = 75

#: Seconds such a process waits for the outcome it is still sending before it exits.
STUCK_DELIVERY_TIMEOUT = 10.0

_STOP_SIGNALS = frozenset({signal.SIGINT, signal.SIGTERM})
_ids = itertools.count(1)


@attrs.frozen
class SlotSettings:
    """What every slot of a worker needs to know; sent to each process slot at its start.

    Attributes:
        by_arn: the activity class served on each activity ARN.
        heartbeat_intervals: seconds between automatic heartbeats, by activity name.
        worker_name: the ``workerName`` of polls.
        client_factory: makes a process slot's client; :func:`make_client` if ``None``.
        max_tasks: a process slot exits (and is replaced) after this many tasks.
        max_memory: a process slot exits (and is replaced) above this many bytes.
        log_levels: the levels of the parent's loggers, by name (``""``: the root).
    """

    by_arn: Mapping[str, type[Activity]]
    heartbeat_intervals: Mapping[str, float | None]
    worker_name: str
    client_factory: Callable[[], SFNClient] | None = None
    max_tasks: int | None = None
    max_memory: int | None = None
    log_levels: Mapping[str, int] = attrs.field(factory=dict)


class SlotOwner(Protocol):
    """What a slot tells the worker. Called from a thread of the slot's own."""

    def on_ready(self, slot: Slot) -> None:
        """The slot polls."""

    def on_exit(self, slot: Slot, reason: str, *, was_ready: bool) -> None:
        """The slot ended; ``reason`` says how."""


class Slot(Protocol):
    """A place that polls for and runs one task at a time."""

    name: str
    kind: str
    position: int
    state: SlotState

    def start(self) -> None:
        """Start the process or thread; ``on_ready`` follows."""

    def terminate(self) -> bool:
        """Stop the slot at once; ``False`` if this kind of slot cannot be stopped."""

    def is_alive(self) -> bool:
        """Whether the slot's process or thread still runs."""


class SlotLoop:
    """One slot's life: poll, run, deliver, until the worker stops (or the slot is worn out).

    Args:
        name: the slot's name, for logs.
        client: the client to poll and report with.
        settings: the worker's settings.
        control: the worker's shared flags.
        state: where the slot shows the task it answers for.
        heartbeats: the heartbeats of this process.
        position: the slot's place in the worker (0 to slots - 1); a replacement takes
            the place of the slot it replaces.
        own_process: the slot has a process to itself (it can be replaced when worn out).
    """

    def __init__(
        self,
        name: str,
        client: ActivityClient,
        *,
        settings: SlotSettings,
        control: Control,
        state: SlotState,
        heartbeats: Heartbeats,
        position: int = 0,
        own_process: bool = False,
    ) -> None:
        self.name = name
        self.tasks_done = 0
        self._client = client
        self._settings = settings
        self._control = control
        self._state = state
        self._heartbeats = heartbeats
        self._position = position
        self._turn = position  # where choosing an activity starts: slots spread out
        self._own_process = own_process
        self._instances: dict[type[Activity], Activity] = {}
        # A process slot sends an outcome from a thread while it polls for the next task:
        # the two round trips overlap. A thread slot has threads enough around it.
        self._sender = (
            ThreadPoolExecutor(1, thread_name_prefix="sfn-activities-outcome")
            if own_process
            else None
        )
        self._pending: Future[None] | None = None

    def run(self) -> str:
        """Poll and serve until the worker stops; why the loop ended."""
        failures = 0
        while not self._control.stopping.is_set():
            try:
                task = self._poll()
            except Exception as exc:  # noqa: BLE001 - polling never ends on an error
                failures += 1
                pause = backoff(failures, base=1.0, cap=POLL_BACKOFF_CAP)
                _log_poll_error(exc, pause)
                self._control.stopping.wait(pause)
                continue
            failures = 0
            if task is not None:
                self._serve(task)
                self.tasks_done += 1
                if self._worn_out():
                    self.finish_delivery()
                    return "worn out"
        self.finish_delivery()
        return "stopped"

    def _poll(self) -> Task | None:
        with self._control.poll_permit() as permitted:
            if not permitted:
                return None
            index = self._control.choose(self._position, self._turn)
            self._turn += 1
            try:
                return self._client.poll(self._control.arns[index])
            finally:
                self._control.done_polling(self._position)

    def _serve(self, task: Task) -> None:
        activity = self._settings.by_arn[task.activity_arn]
        if self._control.past_deadline.is_set():
            error = WorkerShutdown("the task arrived after the worker's shutdown grace")
            logger.warning("task %s: %s: %s", task.token_prefix, activity.name, error)
            deliver(
                self._client, task, failure_from_exception(error), give_up=self._control.give_up
            )
            return
        self._state.hold(task.activity_arn, task.token)
        logger.info("task %s started: %s", task.token_prefix, activity.name)
        interval = self._settings.heartbeat_intervals[activity.name]
        job = self._heartbeats.begin(task, activity, interval)
        try:
            outcome = self._run(job)
        finally:
            self._heartbeats.end(job)
        if job.gone_at is not None and not isinstance(outcome, Cancelled):
            outcome = Cancelled("the task was gone before it ended")
        _log_end(job, outcome)
        self.finish_delivery()  # one outcome in flight at most
        if isinstance(outcome, Cancelled):
            self._state.release()
        elif not self._state.start_delivering():
            logger.info(
                "task %s: the worker failed it at shutdown; its outcome is dropped",
                task.token_prefix,
            )
        elif self._sender is None:
            self._deliver(task, outcome)
        else:
            self._pending = self._sender.submit(self._deliver, task, outcome)

    def finish_delivery(self, timeout: float | None = None) -> None:
        """Wait (up to ``timeout``) until the outcome sent in the background is sent."""
        if self._pending is not None:
            concurrent.futures.wait([self._pending], timeout)

    def _deliver(self, task: Task, outcome: Outcome) -> None:
        try:
            deliver(self._client, task, outcome, give_up=self._control.give_up)
        finally:
            self._state.done_delivering()

    def _run(self, job: Job) -> Outcome:
        """Run the job's task on the instance of its activity kept for this slot."""
        instance = self._instances.get(job.activity)
        try:
            if instance is None:
                instance = self._instances[job.activity] = job.activity()
            return _runner.execute(instance, job.task, lambda: self._heartbeats.ask(job))
        except BaseException as exc:  # noqa: BLE001 - a failing __init__, or SystemExit from run()
            return failure_from_exception(exc)

    def _worn_out(self) -> bool:
        if not self._own_process or self._control.stopping.is_set():
            return False
        limit = self._settings.max_tasks
        if limit is not None and self.tasks_done >= limit:
            logger.info("%s ran %d tasks: replacing it", self.name, self.tasks_done)
            return True
        ceiling = self._settings.max_memory
        memory = _own_memory() if ceiling is not None else None
        if ceiling is not None and memory is not None and memory > ceiling:
            logger.info("%s uses %d MiB: replacing it", self.name, memory // 2**20)
            return True
        return False


@contextlib.contextmanager
def _stop_signals_blocked() -> Iterator[None]:
    """Block SIGINT/SIGTERM in this thread, so a child started now inherits them blocked.

    A blocked mask survives fork and exec: the child cannot die of a Ctrl-C in the moment
    before it sets its own dispositions.
    """
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, _STOP_SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


class ProcessSlot:
    """A child process that polls for and runs tasks with a client of its own."""

    kind = "process"

    def __init__(
        self,
        settings: SlotSettings,
        control: Control,
        owner: SlotOwner,
        context: SpawnContext,
        *,
        position: int = 0,
    ) -> None:
        self.name = f"process-{next(_ids)}"
        self.position = position
        self._owner = owner
        self._ready = False
        self.state = SlotState(context)
        self._conn, child_conn = context.Pipe(duplex=False)
        self._child_conn: Connection | None = child_conn
        self.process: SpawnProcess = context.Process(
            target=_child_main,
            args=(child_conn, self.name),
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
        with _stop_signals_blocked():
            self.process.start()
        if self._child_conn is not None:
            self._child_conn.close()
            self._child_conn = None
        threading.Thread(target=self._read, name=f"sfn-activities-{self.name}", daemon=True).start()

    def terminate(self) -> bool:
        """Kill the child; a replacement is the owner's business."""
        with contextlib.suppress(OSError):
            self.process.kill()
        return True

    def is_alive(self) -> bool:
        """Whether the child still runs."""
        return self.process.is_alive()

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
                elif message[0] == "ready":
                    self._ready = True
                    self._owner.on_ready(self)
            except Exception:
                logger.exception("%s: handling %r failed; the slot goes on", self.name, message[0])
        self.process.join()
        self._conn.close()
        code = self.process.exitcode
        reason = (
            f"killed by signal {-code}" if code is not None and code < 0 else f"exit code {code}"
        )
        self._owner.on_exit(self, reason, was_ready=self._ready)


class _PipeQueue:
    """Where a child's :class:`logging.handlers.QueueHandler` puts records: the parent's pipe."""

    def __init__(self, conn: Connection, lock: threading.Lock) -> None:
        self._conn = conn
        self._lock = lock

    def put_nowait(self, record: logging.LogRecord) -> None:
        with self._lock, contextlib.suppress(OSError, ValueError):
            self._conn.send(("log", record))


def _child_main(
    conn: Connection,
    name: str,
    *,
    settings: SlotSettings,
    control: Control,
    state: SlotState,
    position: int,
) -> None:
    """A process slot: set signals and logging up, make a client, run the slot's loop."""
    for signum in _STOP_SIGNALS:
        signal.signal(signum, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, _STOP_SIGNALS)
    lock = threading.Lock()
    _forward_logs(_PipeQueue(conn, lock), settings.log_levels)
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
        logging.shutdown()
        os._exit(EXIT_STUCK)

    heartbeats = Heartbeats(client, on_stuck=stuck)
    loop = SlotLoop(
        name,
        client,
        settings=settings,
        control=control,
        state=state,
        heartbeats=heartbeats,
        position=position,
        own_process=True,
    )
    # What the imports made lives as long as the process: keep the collector off it.
    gc.freeze()
    with lock:
        conn.send(("ready",))
    loop.run()


def _forward_logs(queue: _PipeQueue, levels: Mapping[str, int]) -> None:
    """Send this process's log records to the parent, at the parent's levels."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    root.addHandler(logging.handlers.QueueHandler(queue))  # type: ignore[arg-type]
    for logger_name, level in levels.items():
        logging.getLogger(logger_name or None).setLevel(level)


def log_levels() -> dict[str, int]:
    """The levels set on this process's loggers, by name (``""`` for the root)."""
    levels = {"": logging.getLogger().level}
    for logger_name, known in logging.root.manager.loggerDict.items():
        if isinstance(known, logging.Logger) and known.level != logging.NOTSET:
            levels[logger_name] = known.level
    return levels


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
        context: SpawnContext,
        *,
        client: ActivityClient,
        heartbeats: Heartbeats,
        position: int = 0,
    ) -> None:
        self.name = f"thread-{next(_ids)}"
        self.position = position
        self.state = SlotState(context)
        self._owner = owner
        self._loop = SlotLoop(
            self.name,
            client,
            settings=settings,
            control=control,
            state=self.state,
            heartbeats=heartbeats,
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

    def is_alive(self) -> bool:
        """Whether the thread still runs."""
        return self._thread.is_alive()

    def _main(self) -> None:
        self._owner.on_ready(self)
        try:
            reason = self._loop.run()
        except Exception as exc:
            logger.exception("%s failed", self.name)
            reason = f"{type(exc).__name__}: {exc}"
        self._owner.on_exit(self, reason, was_ready=True)


def _own_memory() -> int | None:
    """This process's resident set size, read from /proc (Linux)."""
    try:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


def _log_poll_error(exc: BaseException, pause: float) -> None:
    if isinstance(exc, Throttled):
        logger.warning("polling throttled (%s); next poll in %.1f s", exc, pause)
    elif isinstance(exc, ActivityDoesNotExist):
        logger.error("polling failed: %s; next poll in %.1f s", exc, pause)
    elif isinstance(exc, ServiceError):
        logger.warning("polling failed: %s; next poll in %.1f s", exc, pause)
    else:
        logger.error("polling failed; next poll in %.1f s", pause, exc_info=exc)


def _log_end(job: Job, outcome: Outcome) -> None:
    if isinstance(outcome, Success):
        result = "succeeded"
    elif isinstance(outcome, Failure):
        result = f"failed with {outcome.error}"
    else:
        result = "cancelled"
    logger.info(
        "task %s %s: %s in %.3f s",
        job.task.token_prefix,
        result,
        job.activity.name,
        time.monotonic() - job.started,
    )


def spawn_context() -> SpawnContext:
    """The multiprocessing context of process slots: spawn, a clean interpreter per child.

    Forking a process that runs threads (pollers, senders) can copy a lock held by one of
    them into the child, and hang it; spawn starts from nothing.
    """
    return multiprocessing.get_context("spawn")
