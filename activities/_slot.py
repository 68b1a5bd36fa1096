"""Slots: where the worker runs tasks, one at a time each, in a process or a thread.

A process slot is a long-lived child process, started once and fed tasks over a pipe: a
crash or a leak stays inside it, and it can be stopped and replaced when its task is gone.
The child ignores SIGINT and SIGTERM: a Ctrl-C or a systemd stop reaches the whole process
group, and the parent alone decides how to drain. A thread slot runs tasks in a thread of
the worker's own process, for I/O-bound work.

Both report to their owner (the worker) through :class:`SlotOwner`; the owner does all the
talking to Step Functions.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import multiprocessing
import os
import queue
import signal
import threading
import time
from typing import TYPE_CHECKING, Any, Protocol

from activities import _runner
from activities.errors import TaskGone
from activities.outcome import failure_from_exception

if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping
    from multiprocessing.connection import Connection
    from multiprocessing.context import SpawnContext, SpawnProcess

    from activities.activity import Activity
    from activities.outcome import Outcome
    from activities.task import Task

__all__ = ["Job", "ProcessSlot", "Slot", "SlotOwner", "ThreadSlot"]

logger = logging.getLogger(__name__)

#: Seconds between two heartbeats a running task asks for; more frequent yields are
#: coalesced, so an activity yielding a thousand times a second costs one heartbeat.
HEARTBEAT_MIN_INTERVAL = 1.0

_STOP_SIGNALS = frozenset({signal.SIGINT, signal.SIGTERM})
_ids = itertools.count(1)


class Job:
    """A task given to a slot, and what the worker tracks about it while it runs."""

    def __init__(self, task: Task, activity: type[Activity]) -> None:
        self.task = task
        self.activity = activity
        self.started = time.monotonic()
        self.last_heartbeat = self.started
        self.heartbeat_in_flight = False
        #: When the task was found gone: its outcome is not sent.
        self.cancelled_at: float | None = None
        #: Set when the worker failed the task itself (at shutdown): its outcome is not sent.
        self.failed = False


class SlotOwner(Protocol):
    """What a slot tells the worker. Called from the slot's own thread."""

    def on_ready(self, slot: Slot) -> None:
        """The slot can take a task."""

    def on_heartbeat(self, slot: Slot, job: Job) -> None:
        """The running task asks for a heartbeat."""

    def on_done(self, slot: Slot, job: Job, outcome: Outcome) -> None:
        """The task ended with ``outcome``; the slot is free again once this returns."""

    def on_exit(self, slot: Slot, job: Job | None, reason: str) -> None:
        """The slot ended (``reason`` says how) with ``job`` unfinished, if any."""


class Slot(Protocol):
    """A place that runs one task at a time."""

    name: str
    job: Job | None
    tasks_done: int

    def start(self) -> None:
        """Start the process or thread; ``on_ready`` follows."""

    def run(self, job: Job) -> None:
        """Start ``job``; ``on_done`` follows."""

    def cancel(self) -> None:
        """Ask the running task to stop at its next heartbeat."""

    def terminate(self) -> bool:
        """Stop the running task at once; ``False`` if this kind of slot cannot."""

    def close(self) -> None:
        """End the slot once it is idle; ``on_exit`` follows."""

    def memory(self) -> int | None:
        """Resident memory of the slot's process in bytes, where it can be told."""


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
    """A child process that runs the tasks it is sent, one at a time."""

    def __init__(
        self,
        activities: Mapping[str, type[Activity]],
        owner: SlotOwner,
        context: SpawnContext,
    ) -> None:
        self.name = f"process-{next(_ids)}"
        self.job: Job | None = None
        self.tasks_done = 0
        self._owner = owner
        self._conn, child_conn = context.Pipe()
        self._child_conn: Connection | None = child_conn
        self._send_lock = threading.Lock()
        self.process: SpawnProcess = context.Process(
            target=_child_main,
            args=(child_conn, {(a.__module__, a.__qualname__): a for a in activities.values()}),
            name=f"sfn-activities-{self.name}",
            daemon=True,
        )

    def __repr__(self) -> str:
        return f"<ProcessSlot {self.name} pid={self.process.pid}>"

    def start(self) -> None:
        """Start the child and the thread that reads what it says."""
        with _stop_signals_blocked():
            self.process.start()
        if self._child_conn is not None:
            self._child_conn.close()
            self._child_conn = None
        threading.Thread(target=self._read, name=f"sfn-activities-{self.name}", daemon=True).start()

    def run(self, job: Job) -> None:
        """Send ``job`` to the child."""
        self.job = job
        self._send(("run", job.activity.__module__, job.activity.__qualname__, job.task))

    def cancel(self) -> None:
        """Tell the child that its task is gone; it raises TaskCancelled at its next heartbeat."""
        job = self.job
        if job is not None:
            self._send(("cancel", job.task.token))

    def terminate(self) -> bool:
        """Kill the child; a replacement is the owner's business."""
        with contextlib.suppress(OSError):
            self.process.kill()
        return True

    def close(self) -> None:
        """Ask the idle child to exit."""
        self._send(("stop",))

    def memory(self) -> int | None:
        """The child's resident set size, read from /proc (Linux)."""
        try:
            with open(f"/proc/{self.process.pid}/statm") as statm:
                return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        except (OSError, ValueError, IndexError):
            return None

    def _send(self, message: tuple[Any, ...]) -> None:
        with self._send_lock, contextlib.suppress(OSError, ValueError):
            self._conn.send(message)

    def _handle(self, message: tuple[Any, ...]) -> None:
        kind = message[0]
        if kind == "ready":
            self._owner.on_ready(self)
        elif kind == "heartbeat" and self.job is not None:
            self._owner.on_heartbeat(self, self.job)
        elif kind == "done" and self.job is not None:
            job, self.job = self.job, None
            self.tasks_done += 1
            self._owner.on_done(self, job, message[1])

    def _read(self) -> None:
        while True:
            try:
                message = self._conn.recv()
            except (EOFError, OSError):
                break
            try:
                self._handle(message)
            except Exception:
                logger.exception("%s: handling %r failed; the slot goes on", self.name, message[0])
        self.process.join()
        self._conn.close()
        code = self.process.exitcode
        reason = (
            f"killed by signal {-code}" if code is not None and code < 0 else f"exit code {code}"
        )
        unfinished, self.job = self.job, None
        self._owner.on_exit(self, unfinished, reason)


def _child_main(conn: Connection, activities: dict[tuple[str, str], type[Activity]]) -> None:
    """The child's loop: run each task it is sent and report its outcome."""
    for signum in _STOP_SIGNALS:
        signal.signal(signum, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, _STOP_SIGNALS)
    instances: dict[type[Activity], Activity] = {}
    conn.send(("ready",))
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):
            return  # the parent is gone
        if message[0] == "stop":
            return
        if message[0] != "run":
            continue  # a cancel for a task that already ended
        _, module, qualname, task = message
        outcome = _run_in_child(conn, instances, activities[module, qualname], task)
        conn.send(("done", outcome))


def _run_in_child(
    conn: Connection,
    instances: dict[type[Activity], Activity],
    activity: type[Activity],
    task: Task,
) -> Outcome:
    heartbeat = _CoalescedHeartbeat(lambda: conn.send(("heartbeat",)), task.token)

    def send_heartbeat() -> None:
        while conn.poll():
            message = conn.recv()
            if message[0] == "cancel" and message[1] == task.token:
                heartbeat.cancelled = True
        heartbeat()

    return _run_task(instances, activity, task, send_heartbeat)


def _run_task(
    instances: dict[type[Activity], Activity],
    activity: type[Activity],
    task: Task,
    send_heartbeat: Any,
) -> Outcome:
    """Run ``task`` on the instance of ``activity`` kept for this slot."""
    instance = instances.get(activity)
    if instance is None:
        try:
            instance = instances[activity] = activity()
        except Exception as exc:  # noqa: BLE001 - a failing __init__ fails the task
            return failure_from_exception(exc)
    return _runner.execute(instance, task, send_heartbeat)


class _CoalescedHeartbeat:
    """Asks for a heartbeat at most every HEARTBEAT_MIN_INTERVAL; raises once cancelled."""

    def __init__(self, ask: Any, token: str) -> None:
        self._ask = ask
        self._token = token
        self._last: float | None = None
        self.cancelled = False

    def __call__(self) -> None:
        if self.cancelled:
            msg = "SendTaskHeartbeat: the task is gone"
            raise TaskGone(msg, code="TaskTimedOut", operation="SendTaskHeartbeat")
        now = time.monotonic()
        if self._last is None or now - self._last >= HEARTBEAT_MIN_INTERVAL:
            self._last = now
            self._ask()


class ThreadSlot:
    """A thread of the worker's process that runs the tasks it is given, one at a time.

    For I/O-bound work. A thread cannot be stopped from outside: a task whose heartbeat
    finds it gone is cancelled at its next heartbeat, and its outcome is dropped.
    """

    def __init__(self, activities: Mapping[str, type[Activity]], owner: SlotOwner) -> None:
        self.name = f"thread-{next(_ids)}"
        self.job: Job | None = None
        self.tasks_done = 0
        self._activities = dict(activities)
        self._owner = owner
        self._inbox: queue.SimpleQueue[Job | None] = queue.SimpleQueue()
        self._heartbeat: _CoalescedHeartbeat | None = None
        self._thread = threading.Thread(
            target=self._loop, name=f"sfn-activities-{self.name}", daemon=True
        )

    def __repr__(self) -> str:
        return f"<ThreadSlot {self.name}>"

    def start(self) -> None:
        """Start the thread."""
        self._thread.start()

    def run(self, job: Job) -> None:
        """Hand ``job`` to the thread."""
        self.job = job
        self._inbox.put(job)

    def cancel(self) -> None:
        """Make the running task's next heartbeat raise TaskCancelled."""
        heartbeat = self._heartbeat
        if heartbeat is not None:
            heartbeat.cancelled = True

    def terminate(self) -> bool:
        """Threads cannot be stopped from outside."""
        return False

    def close(self) -> None:
        """End the thread once it is idle."""
        self._inbox.put(None)

    def memory(self) -> int | None:
        """A thread has no memory of its own to tell."""
        return None

    def _loop(self) -> None:
        instances: dict[type[Activity], Activity] = {}
        self._owner.on_ready(self)
        while (job := self._inbox.get()) is not None:
            heartbeat = self._heartbeat = _CoalescedHeartbeat(
                lambda job=job: self._owner.on_heartbeat(self, job), job.task.token
            )
            try:
                outcome = _run_task(instances, job.activity, job.task, heartbeat)
            except BaseException as exc:  # noqa: BLE001 - e.g. SystemExit from run()
                outcome = failure_from_exception(exc)
            self._heartbeat = None
            self.job = None
            self.tasks_done += 1
            try:
                self._owner.on_done(self, job, outcome)
            except Exception:
                logger.exception(
                    "%s: handling the end of a task failed; the slot goes on", self.name
                )
        self._owner.on_exit(self, None, "closed")


def spawn_context() -> SpawnContext:
    """The multiprocessing context of process slots: spawn, a clean interpreter per child.

    Forking a process that runs threads (pollers, senders) can copy a lock held by one of
    them into the child, and hang it; spawn starts from nothing.
    """
    return multiprocessing.get_context("spawn")
