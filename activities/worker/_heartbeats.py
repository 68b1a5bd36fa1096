"""Heartbeats of the tasks running in one process, and what a task found gone means.

Three kinds of heartbeat: automatic ones every ``heartbeat_interval`` of the activity
(for work that never yields), those ``run()`` asks for (coalesced: an activity yielding a
thousand times a second costs one heartbeat a second), and none once Step Functions said
the task is gone; then ``run()``'s next heartbeat raises, and work that never yields is
stopped after :data:`CANCEL_GRACE` where it can be.
"""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

from activities._ops.metrics import NO_METRICS
from activities.errors import ServiceError, TaskGone

if TYPE_CHECKING:
    from collections.abc import Callable

    from activities._activity import Activity
    from activities._ops.metrics import Metrics
    from activities.client import ActivityClient
    from activities.task import Task

__all__ = ["HEARTBEAT_THREADS", "Heartbeats", "Job", "heartbeat_threads"]

logger = logging.getLogger(__name__)

#: Seconds between two heartbeats a running task asks for; more frequent yields are
#: coalesced.
HEARTBEAT_MIN_INTERVAL = 1.0

#: Seconds a task found gone that does not yield may keep running before its process is
#: stopped and replaced.
CANCEL_GRACE = 5.0

#: Seconds between two looks at the running tasks.
TICK = 0.25

#: Threads sending the heartbeats of the slots of one process, at most.
HEARTBEAT_THREADS = 16


def heartbeat_threads(slots: int) -> int:
    """How many heartbeats the tasks of ``slots`` slots of one process send at once."""
    return max(2, min(slots, HEARTBEAT_THREADS))


class Job:
    """A task running in a slot, and what its heartbeats keep track of."""

    def __init__(self, task: Task, activity: type[Activity], interval: float | None) -> None:
        self.task = task
        self.activity = activity
        #: Seconds between automatic heartbeats, ``None`` for none.
        self.interval = interval
        self.started = time.monotonic()
        self.last_sent = self.started
        self.last_asked: float | None = None
        self.in_flight = False
        #: When a heartbeat found the task gone; its outcome is not sent.
        self.gone_at: float | None = None
        #: Called (from a heartbeat's thread) when a heartbeat finds the task gone: an
        #: async task's coroutine is cancelled by it.
        self.on_gone: Callable[[], None] | None = None
        self.stuck = False


class Heartbeats:
    """Sends the heartbeats of the tasks running in this process, from a few threads.

    Args:
        client: the client to send with.
        on_stuck: called once for a task found gone that still runs ``CANCEL_GRACE``
            seconds later; stops it if the slot can.
        threads: how many heartbeats may be in flight at once.
        metrics: what heartbeats are counted in.
    """

    def __init__(
        self,
        client: ActivityClient,
        *,
        on_stuck: Callable[[Job], None],
        threads: int = 2,
        metrics: Metrics = NO_METRICS,
    ) -> None:
        self._client = client
        self._metrics = metrics
        self._on_stuck = on_stuck
        self._jobs: set[Job] = set()
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self._executor = ThreadPoolExecutor(threads, thread_name_prefix="sfn-activities-heartbeat")
        self._ticker: threading.Thread | None = None

    def begin(self, task: Task, activity: type[Activity], interval: float | None) -> Job:
        """A task starts running."""
        job = Job(task, activity, interval)
        with self._lock:
            self._jobs.add(job)
            if self._ticker is None:
                self._ticker = threading.Thread(
                    target=self._tick_loop, name="sfn-activities-ticker", daemon=True
                )
                self._ticker.start()
        return job

    def end(self, job: Job) -> None:
        """The task ended: no more heartbeats for it."""
        with self._lock:
            self._jobs.discard(job)

    def ask(self, job: Job) -> None:
        """``run()`` asks for a heartbeat: send one unless one was sent within a second.

        Raises:
            TaskGone: a heartbeat found the task gone.
        """
        if job.gone_at is not None:
            msg = "SendTaskHeartbeat: the task is gone"
            raise TaskGone(msg, code="TaskTimedOut", operation="SendTaskHeartbeat")
        now = time.monotonic()
        if job.last_asked is None or now - job.last_asked >= HEARTBEAT_MIN_INTERVAL:
            job.last_asked = now
            self._send(job)

    def close(self) -> None:
        """Stop the ticker and the send threads (a heartbeat in flight is not waited for)."""
        self._closed.set()
        self._executor.shutdown(wait=False, cancel_futures=True)

    def _send(self, job: Job) -> None:
        if job.in_flight or job.gone_at is not None or self._closed.is_set():
            return
        job.in_flight = True
        job.last_sent = time.monotonic()
        try:
            self._executor.submit(self._beat, job)
        except RuntimeError:  # closed meanwhile
            job.in_flight = False

    def _beat(self, job: Job) -> None:
        try:
            self._client.send_heartbeat(job.task.token)
            self._metrics.heartbeat(job.task, "sent")
        except TaskGone as exc:
            self._metrics.heartbeat(job.task, "gone")
            if job.gone_at is None:
                job.gone_at = time.monotonic()
                logger.warning(
                    "task %s is gone (%s): cancelling %s",
                    job.task.token_prefix,
                    exc,
                    job.activity.name,
                )
                if job.on_gone is not None:
                    job.on_gone()
        except ServiceError as exc:
            self._metrics.heartbeat(job.task, "error")
            logger.warning("heartbeat for task %s failed: %s", job.task.token_prefix, exc)
        finally:
            job.in_flight = False

    def _tick_loop(self) -> None:
        while not self._closed.wait(TICK):
            try:
                self._tick()
            except Exception:
                logger.exception("the heartbeat ticker failed; it goes on")

    def _tick(self) -> None:
        now = time.monotonic()
        with self._lock:
            jobs = list(self._jobs)
        for job in jobs:
            if job.gone_at is not None:
                if not job.stuck and now - job.gone_at >= CANCEL_GRACE:
                    job.stuck = True
                    self._on_stuck(job)
            elif job.interval is not None and now - job.last_sent >= job.interval:
                self._send(job)
