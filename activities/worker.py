"""The worker: a supervised pool of slots that polls activities and runs their tasks.

::

    Worker([Echo, Resize], processes=4).run()   # blocks; SIGTERM/SIGINT drain it

Pieces, all in the parent process:

- **pollers** (threads): each takes a free slot, then long-polls one activity for a task
  to run in it, so a task is only ever received when it can start at once;
- **slots** (:mod:`activities._slot`): pre-started processes (or threads) that run one task
  at a time and report heartbeats and outcomes;
- **delivery** (:mod:`activities._delivery`): sends outcomes and heartbeats, retrying
  until Step Functions takes them or says the task is gone;
- **ticker** (a thread): automatic heartbeats, stopping cancelled work that does not yield,
  and the shutdown deadline.
"""

from __future__ import annotations

import itertools
import logging
import math
import os
import queue
import signal
import threading
import time
from typing import TYPE_CHECKING, Any

from activities import registry
from activities._delivery import Delivery, backoff
from activities._slot import Job, ProcessSlot, Slot, ThreadSlot, spawn_context
from activities.client import ActivityClient, make_client
from activities.errors import (
    ActivityDoesNotExist,
    ConfigurationError,
    ServiceError,
    Throttled,
    WorkerCrashed,
    WorkerShutdown,
)
from activities.outcome import Cancelled, Failure, Success, failure_from_exception

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping, Sequence
    from types import FrameType

    from mypy_boto3_stepfunctions import SFNClient

    from activities.activity import Activity
    from activities.outcome import Outcome
    from activities.task import Task

__all__ = ["Worker"]

logger = logging.getLogger(__name__)

#: Seconds running tasks may take to finish after a graceful stop begins.
SHUTDOWN_GRACE = 30.0

#: Seconds a cancelled task that does not heartbeat may keep running before its
#: process is stopped and replaced.
CANCEL_GRACE = 5.0

#: Seconds between two looks of the ticker at running tasks.
TICK = 0.25

#: Longest pause, in seconds, of a poller after repeated errors.
POLL_BACKOFF_CAP = 30.0

#: Seconds an immediate stop waits for the failures of running tasks to be delivered.
TERMINATE_DELIVERY_TIMEOUT = 5.0

#: Seconds a graceful stop waits for outcomes still being delivered after the drain.
DRAIN_DELIVERY_TIMEOUT = 60.0

#: Seconds to wait before replacing a process that died before it was ready.
RESTART_BACKOFF_CAP = 30.0


class Worker:
    """Serve activities: poll Step Functions for their tasks and run them in a pool.

    Args:
        activities: the Activity subclasses to serve; their names must be distinct.
        processes: how many processes run tasks (CPU-bound work); the number of CPUs by
            default.
        threads: run tasks in this many threads instead (I/O-bound work); exclusive
            with ``processes``.
        pollers: how many long polls may be open at once; as many as there are slots by
            default. A poll is only started when a slot is free.
        client: the Step Functions client; :func:`~activities.make_client` by default.
        worker_name: the ``workerName`` of polls; ``<host>-<pid>`` by default.
        prefix: put before every activity's name, e.g. ``"dev-"`` to serve ``dev-Echo``:
            one code base, a task list per environment.
        task_lists: the activity names or ARNs to serve a class on, by the class's
            ``name``, instead of its ``task_lists`` or ``name``: e.g.
            ``{"Resize": ["resize-gpu"]}``.
        heartbeat_intervals: seconds between automatic heartbeats, by the class's
            ``name``, instead of its ``heartbeat_interval`` (``None`` turns them off).
        shutdown_grace: seconds running tasks may take to finish after a graceful stop
            begins; those still running then fail with ``activities.WorkerShutdown``.
        max_tasks_per_process: replace a process after it ran this many tasks.
        max_memory_per_process: replace a process whose resident memory exceeds this
            many bytes after a task.
    """

    def __init__(
        self,
        activities: Iterable[type[Activity]],
        *,
        processes: int | None = None,
        threads: int | None = None,
        pollers: int | None = None,
        client: SFNClient | None = None,
        worker_name: str | None = None,
        prefix: str = "",
        task_lists: Mapping[str, Sequence[str]] | None = None,
        heartbeat_intervals: Mapping[str, float | None] | None = None,
        shutdown_grace: float = SHUTDOWN_GRACE,
        max_tasks_per_process: int | None = None,
        max_memory_per_process: int | None = None,
    ) -> None:
        self.served = registry.task_lists(activities, prefix=prefix, overrides=task_lists)
        self.activities = _by_name(self.served.values())
        self.heartbeat_intervals = {
            name: activity.heartbeat_interval for name, activity in self.activities.items()
        }
        for name, interval in (heartbeat_intervals or {}).items():
            if name not in self.activities:
                msg = f"heartbeat_intervals: {name!r} is not an activity being served"
                raise ConfigurationError(msg)
            if interval is not None:
                _check_positive(f"heartbeat_intervals[{name!r}]", interval)
            self.heartbeat_intervals[name] = interval
        if processes is not None and threads is not None:
            msg = "give either processes or threads, not both"
            raise ConfigurationError(msg)
        for option, value in (("processes", processes), ("threads", threads), ("pollers", pollers)):
            if value is not None:
                _check_positive(option, value)
        self.use_threads = threads is not None
        self.concurrency = threads or processes or os.cpu_count() or 1
        self.pollers = pollers if pollers is not None else self.concurrency
        _check_positive("shutdown_grace", shutdown_grace, allow_zero=True)
        if max_tasks_per_process is not None:
            _check_positive("max_tasks_per_process", max_tasks_per_process)
        if max_memory_per_process is not None:
            _check_positive("max_memory_per_process", max_memory_per_process)
        self.shutdown_grace = shutdown_grace
        self.max_tasks_per_process = max_tasks_per_process
        self.max_memory_per_process = max_memory_per_process
        sfn = (
            client
            if client is not None
            else make_client(max_pool_connections=self.pollers + self.concurrency + 2)
        )
        self.client = ActivityClient(sfn, worker_name=worker_name)
        self._delivery = Delivery(self.client, threads=max(2, min(self.concurrency, 16)))
        self._idle: queue.SimpleQueue[Slot] = queue.SimpleQueue()
        self._slots: set[Slot] = set()
        self._lock = threading.Lock()
        self._by_arn: dict[str, type[Activity]] = {}
        self._open_polls: dict[str, int] = {}
        self._turn = itertools.count()
        self._threads: list[threading.Thread] = []
        self._running = False
        self._stopping = threading.Event()
        self._terminating = threading.Event()
        self._stopped = threading.Event()
        self._deadline: float | None = None
        self._restart_failures = 0
        self._started_slots = 0
        self.clean = True

    # -- lifecycle ----------------------------------------------------------------------

    def start(self) -> None:
        """Create (or find) the activities, start the slots and the pollers; returns at once."""
        if self._running:
            return
        arns = registry.register(self.client, self.served)
        self._by_arn = {arns[task_list]: activity for task_list, activity in self.served.items()}
        self._open_polls = dict.fromkeys(self._by_arn, 0)
        self._running = True
        for _ in range(self.concurrency):
            self._start_slot()
        for index in range(self.pollers):
            self._spawn_thread(self._poll_loop, f"poller-{index + 1}")
        self._spawn_thread(self._tick_loop, "ticker")
        if min(self.concurrency, self.pollers) < len(self.served):
            logger.warning(
                "%d task lists but only %d %s: at times some task list has no poll open, "
                "and its tasks wait (up to 60 s) for one; give the worker at least as many "
                "slots and pollers as task lists",
                len(self.served),
                min(self.concurrency, self.pollers),
                "pollers" if self.pollers < self.concurrency else "slots",
            )
        logger.info(
            "worker %s serving %s with %d %s and %d pollers",
            self.client.worker_name,
            ", ".join(self.served),
            self.concurrency,
            "threads" if self.use_threads else "processes",
            self.pollers,
        )

    def stop(self, timeout: float | None = None) -> bool:
        """Stop gracefully and wait (up to ``timeout``) until stopped; ``True`` if stopped.

        No new poll is started; polls in flight return and what they bring runs; running
        tasks get ``shutdown_grace`` seconds, then fail with ``activities.WorkerShutdown``.
        """
        self.request_stop()
        return self.join(timeout)

    def request_stop(self) -> None:
        """Begin a graceful stop without waiting for it."""
        if not self._stopping.is_set():
            self._deadline = time.monotonic() + self.shutdown_grace
            self._stopping.set()
            logger.info(
                "stopping: no new polls; running tasks have %.0f s to finish", self.shutdown_grace
            )
            if self._running:
                self._spawn_thread(self._drain, "drain")
            else:
                self._stopped.set()

    def terminate(self) -> None:
        """Stop at once: fail running tasks with WorkerShutdown, stop the processes.

        Polls in flight are abandoned: a task they bring is failed at once. Does nothing
        once the worker has stopped.
        """
        if self._stopped.is_set():
            return
        self._terminating.set()
        self._stopping.set()
        self.clean = False
        with self._lock:
            slots = list(self._slots)
        for slot in slots:
            job = slot.job
            if job is not None:
                self._fail(job, WorkerShutdown("the worker was stopped at once while the task ran"))
                slot.terminate()
        self._delivery.drain(TERMINATE_DELIVERY_TIMEOUT)
        self._delivery.abandon()
        for slot in slots:
            slot.close()
        self._delivery.close(wait=False)
        self._stopped.set()

    def join(self, timeout: float | None = None) -> bool:
        """Wait until the worker has stopped; ``True`` if it has."""
        return self._stopped.wait(timeout)

    def run(self) -> int:
        """Serve until SIGINT or SIGTERM; the exit code: 0 after a clean drain.

        The first signal stops gracefully (see :meth:`stop`), a second one at once
        (see :meth:`terminate`). Call from the main thread.
        """
        received = 0

        def on_signal(signum: int, _: FrameType | None) -> None:
            # Counted first: a second signal can arrive while the first is being handled.
            nonlocal received
            received += 1
            if received > 1:
                logger.warning("%s again: stopping at once", signal.Signals(signum).name)
                threading.Thread(target=self.terminate, daemon=True).start()
            else:
                self.request_stop()
                logger.info("%s: stopping gracefully", signal.Signals(signum).name)

        previous = {
            signum: signal.signal(signum, on_signal) for signum in (signal.SIGINT, signal.SIGTERM)
        }
        try:
            self.start()
            while not self._stopped.wait(0.5):
                pass
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)
        return 0 if self.clean else 1

    # -- polling ------------------------------------------------------------------------

    def _poll_loop(self) -> None:
        """Poll while the worker runs; an error is logged and followed by a backoff."""
        failures = 0
        while not self._stopping.is_set():
            try:
                slot = self._idle.get(timeout=TICK)
            except queue.Empty:
                continue
            if self._stopping.is_set():
                self._idle.put(slot)
                return
            try:
                self._poll_once(slot)
            except Exception as exc:  # noqa: BLE001 - a poller never dies
                failures += 1
                pause = backoff(failures, base=1.0, cap=POLL_BACKOFF_CAP)
                _log_poll_error(exc, pause)
                self._stopping.wait(pause)
            else:
                failures = 0

    def _poll_once(self, slot: Slot) -> None:
        """Poll one activity for ``slot``; run what comes, or give the slot back."""
        arn = self._choose_activity()
        try:
            task = self.client.poll(arn)
        except BaseException:
            self._idle.put(slot)
            raise
        finally:
            self._done_polling(arn)
        if task is None:
            self._idle.put(slot)
        else:
            self._dispatch(slot, task)

    def _choose_activity(self) -> str:
        """The activity with the fewest polls open, ties taken in turn.

        So every activity has a poll open whenever there are as many free slots as
        activities.
        """
        with self._lock:
            arns = list(self._open_polls)
            offset = next(self._turn) % len(arns)
            rotated = arns[offset:] + arns[:offset]
            arn = min(rotated, key=self._open_polls.__getitem__)
            self._open_polls[arn] += 1
            return arn

    def _done_polling(self, arn: str) -> None:
        with self._lock:
            self._open_polls[arn] -= 1

    def _dispatch(self, slot: Slot, task: Task) -> None:
        activity = self._by_arn[task.activity_arn]
        job = Job(task, activity)
        if self._past_deadline():
            self._fail(job, WorkerShutdown("the task arrived after the worker's shutdown grace"))
            self._idle.put(slot)
            return
        if self._terminating.is_set():
            self._fail(job, WorkerShutdown("the task arrived while the worker stopped at once"))
            return
        logger.info("task %s started: %s", task.token_prefix, activity.name)
        slot.run(job)

    # -- what slots report ----------------------------------------------------------------

    def on_ready(self, slot: Slot) -> None:
        """A slot started: make it available to the pollers."""
        self._restart_failures = 0
        with self._lock:
            self._started_slots += 1
            first_time_all = self._started_slots == self.concurrency
        self._idle.put(slot)
        if first_time_all:
            logger.info("ready: all %d slots are polling", self.concurrency)

    def on_heartbeat(self, slot: Slot, job: Job) -> None:
        """A task asked for a heartbeat: send one unless one is on its way."""
        self._heartbeat(slot, job)

    def on_done(self, slot: Slot, job: Job, outcome: Outcome) -> None:
        """A task ended: deliver its outcome, then free (or recycle) its slot."""
        duration = time.monotonic() - job.started
        if job.failed:
            outcome = Cancelled("the worker already failed the task at shutdown")
        elif job.cancelled_at is not None and not isinstance(outcome, Cancelled):
            outcome = Cancelled("the task was gone before it ended")
        _log_end(job, outcome, duration)
        self._delivery.send_outcome(job.task, outcome)
        if self._should_recycle(slot):
            slot.close()
        else:
            self._idle.put(slot)

    def on_exit(self, slot: Slot, job: Job | None, reason: str) -> None:
        """A slot ended: fail its task if it had one, and replace it unless stopping."""
        with self._lock:
            self._slots.discard(slot)
        if job is not None and job.cancelled_at is None and not job.failed:
            error = WorkerCrashed(f"the process running the task died ({reason})")
            logger.error("task %s: %s: %s", job.task.token_prefix, job.activity.name, error)
            self._fail(job, error)
        elif job is None and slot.tasks_done == 0 and not self._stopping.is_set():
            self._restart_failures += 1
            logger.error("%s ended before it was ready (%s)", slot.name, reason)
        if not self._stopping.is_set():
            pause = min(RESTART_BACKOFF_CAP, 2**self._restart_failures - 1)
            if pause:
                self._stopping.wait(pause)
            if not self._stopping.is_set():
                self._start_slot()

    # -- machinery ----------------------------------------------------------------------

    def _start_slot(self) -> None:
        slot: Slot
        if self.use_threads:
            slot = ThreadSlot(self.activities, self)
        else:
            slot = ProcessSlot(self.activities, self, spawn_context())
        with self._lock:
            self._slots.add(slot)
        slot.start()

    def _heartbeat(self, slot: Slot, job: Job) -> None:
        if job.heartbeat_in_flight or job.cancelled_at is not None:
            return
        job.heartbeat_in_flight = True
        job.last_heartbeat = time.monotonic()

        def gone(exc: Exception) -> None:
            if slot.job is job and job.cancelled_at is None:
                job.cancelled_at = time.monotonic()
                logger.warning(
                    "task %s is gone (%s): cancelling %s",
                    job.task.token_prefix,
                    exc,
                    job.activity.name,
                )
                slot.cancel()

        future = self._delivery.send_heartbeat(job.task, gone)
        future.add_done_callback(lambda _: setattr(job, "heartbeat_in_flight", False))

    def _tick_loop(self) -> None:
        while not self._stopped.is_set():
            try:
                self._tick()
            except Exception:
                logger.exception("the ticker failed; it goes on")
            time.sleep(TICK)

    def _tick(self) -> None:
        now = time.monotonic()
        with self._lock:
            slots = list(self._slots)
        deadline_passed = self._past_deadline()
        for slot in slots:
            job = slot.job
            if job is None:
                continue
            interval = self.heartbeat_intervals[job.activity.name]
            if job.cancelled_at is not None:
                if now - job.cancelled_at >= CANCEL_GRACE and slot.terminate():
                    logger.warning(
                        "task %s did not stop when cancelled: replacing %s",
                        job.task.token_prefix,
                        slot.name,
                    )
            elif deadline_passed and not job.failed:
                self._fail(
                    job,
                    WorkerShutdown(
                        f"the task was still running when the shutdown grace of "
                        f"{self.shutdown_grace:.0f} s expired"
                    ),
                )
                slot.terminate()
            elif interval is not None and now - job.last_heartbeat >= interval:
                self._heartbeat(slot, job)

    def _drain(self) -> None:
        for thread in self._threads:
            if thread.name.startswith("sfn-activities-poller"):
                thread.join()
        while not self._terminating.is_set():
            with self._lock:
                # A task the worker failed itself (a thread past the deadline) is not waited for.
                busy = [slot for slot in self._slots if slot.job and not slot.job.failed]
            if not busy:
                break
            time.sleep(TICK)
        if self._terminating.is_set():
            return
        with self._lock:
            slots = list(self._slots)
        for slot in slots:
            slot.close()
        if not self._delivery.drain(DRAIN_DELIVERY_TIMEOUT):
            self.clean = False
            logger.error("some outcomes were still undelivered when the worker stopped")
        self._delivery.abandon()
        self._delivery.close(wait=False)
        logger.info("stopped")
        self._stopped.set()

    def _fail(self, job: Job, error: Exception) -> None:
        """Fail ``job`` on the worker's behalf; whatever its slot reports later is dropped."""
        if job.failed:
            return
        job.failed = True
        if isinstance(error, WorkerShutdown):
            self.clean = False
        self._delivery.send_outcome(job.task, failure_from_exception(error))

    def _should_recycle(self, slot: Slot) -> bool:
        if self._stopping.is_set():
            return False
        limit = self.max_tasks_per_process
        if limit is not None and slot.tasks_done >= limit:
            logger.info("%s ran %d tasks: replacing it", slot.name, slot.tasks_done)
            return True
        ceiling = self.max_memory_per_process
        memory = slot.memory() if ceiling is not None else None
        if ceiling is not None and memory is not None and memory > ceiling:
            logger.info("%s uses %d MiB: replacing it", slot.name, memory // 2**20)
            return True
        return False

    def _past_deadline(self) -> bool:
        return self._deadline is not None and time.monotonic() >= self._deadline

    def _spawn_thread(self, target: Any, name: str) -> None:
        thread = threading.Thread(target=target, name=f"sfn-activities-{name}", daemon=True)
        self._threads.append(thread)
        thread.start()


def _by_name(activities: Iterable[type[Activity]]) -> dict[str, type[Activity]]:
    """The distinct classes served, by their own ``name``."""
    return {activity.name: activity for activity in activities}


def _check_positive(name: str, value: float, *, allow_zero: bool = False) -> None:
    """Refuse a setting that is not a finite number above 0 (or at least 0)."""
    if not (value >= 0 if allow_zero else value > 0) or not math.isfinite(value):
        msg = f"{name} must be {'>= 0' if allow_zero else '> 0'}, got {value!r}"
        raise ConfigurationError(msg)


def _log_poll_error(exc: BaseException, pause: float) -> None:
    if isinstance(exc, Throttled):
        logger.warning("polling throttled (%s); next poll in %.1f s", exc, pause)
    elif isinstance(exc, ActivityDoesNotExist):
        logger.error("polling failed: %s; next poll in %.1f s", exc, pause)
    elif isinstance(exc, ServiceError):
        logger.warning("polling failed: %s; next poll in %.1f s", exc, pause)
    else:
        logger.error("poller failed; next poll in %.1f s", pause, exc_info=exc)


def _log_end(job: Job, outcome: Outcome, duration: float) -> None:
    if isinstance(outcome, Success):
        result = "succeeded"
    elif isinstance(outcome, Failure):
        result = f"failed with {outcome.error}"
    else:
        result = "cancelled"
    logger.info(
        "task %s %s: %s in %.3f s", job.task.token_prefix, result, job.activity.name, duration
    )
