"""Heartbeats of the tasks one process holds, and what a task found gone means.

Each task has a *cadence* (:func:`cadence`): the seconds between two of its heartbeats, a
third of its activity's ``heartbeat_seconds`` when it declares them, its
``heartbeat_interval`` when that is shorter (or alone), else :data:`DEFAULT_CADENCE`. Its
first heartbeat falls due at most a cadence after a poll received it (when Step Functions
starts its ``HeartbeatSeconds`` clock) and at least half a cadence (:data:`SPREAD`), at a
point its token decides; the next ones a cadence apart. Those are the same times whether
it waits in the worker's buffer or runs in a slot of another process, so the hand-over
neither skips one nor adds one; and tasks received together do not all heartbeat at once.

A heartbeat due is sent by the ticker for a task heartbeated automatically (waiting in the
buffer, or of an activity with ``heartbeat_seconds`` or ``heartbeat_interval``), and at
``run()``'s next ``yield`` or ``heartbeat()`` otherwise; a yield when none is due sends
nothing (an activity yielding a thousand times a second costs one heartbeat a cadence).
Once Step Functions said the task is gone none is sent; ``run()``'s next heartbeat raises,
and work that never yields is stopped after :data:`CANCEL_GRACE` where it can be.
"""

from __future__ import annotations

import logging
import math
import threading
import time
import zlib
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

from activities._activity import DEFAULT_CADENCE, cadence
from activities._ops.metrics import NO_METRICS
from activities.errors import ServiceError, TaskGone

if TYPE_CHECKING:
    from collections.abc import Callable

    from activities._activity import Activity
    from activities._ops.metrics import Metrics
    from activities.client import ActivityClient
    from activities.task import Task

__all__ = [
    "DEFAULT_CADENCE",
    "HEARTBEAT_THREADS",
    "Heartbeats",
    "Job",
    "cadence",
    "heartbeat_threads",
]

logger = logging.getLogger(__name__)

#: The share of its cadence a task's first heartbeat may come early, by its token: tasks
#: received together heartbeat over half a cadence, not all at once (the account's quota is
#: a bucket of 3,000 calls at best), and a task shorter than half its cadence costs none.
SPREAD = 0.5

#: Seconds a task found gone that does not yield may keep running before its process is
#: stopped and replaced.
CANCEL_GRACE = 5.0

#: Seconds between two looks at the tasks held: a heartbeat due is sent this late at most.
TICK = 0.25

#: Seconds ahead of its due time a heartbeat is sent as its task leaves the buffer (half a
#: cadence at most): the slot may begin the task only after that time, and would then
#: wait a whole cadence for its first.
HAND_OVER_AHEAD = 2 * TICK

#: Threads sending the heartbeats of the slots of one process, at most.
HEARTBEAT_THREADS = 16


def heartbeat_threads(slots: int) -> int:
    """How many heartbeats the tasks of ``slots`` slots of one process send at once."""
    return max(2, min(slots, HEARTBEAT_THREADS))


class Job:
    """A task this process holds (running in a slot, or waiting in the buffer), and its heartbeats.

    Args:
        task: the task.
        activity: the class that runs it.
        interval: seconds between its automatic heartbeats (``heartbeat_interval``, or the
            worker's override); ``None`` for none.
        waiting: it waits in the worker's buffer: heartbeated automatically, every cadence.
        now: the time now on the heartbeats' clock; ``time.monotonic()`` by default.
    """

    def __init__(
        self,
        task: Task,
        activity: type[Activity],
        interval: float | None,
        *,
        waiting: bool = False,
        now: float | None = None,
    ) -> None:
        now = time.monotonic() if now is None else now
        self.task = task
        self.activity = activity
        self.interval = interval
        #: Seconds between two heartbeats (see :func:`cadence`).
        self.cadence = cadence(activity, interval)
        #: Whether the ticker sends a heartbeat due, whatever ``run()`` does.
        self.automatic = waiting or interval is not None or activity.heartbeat_seconds is not None
        self.started = now
        #: When a poll received the task, on the heartbeats' clock; never after ``now``.
        self.received = now - max(0.0, time.time() - task.started_at.timestamp())
        #: How much earlier than a whole number of cadences after its receipt its heartbeats
        #: fall due: the same in every process, from its token.
        self.phase = SPREAD * self.cadence * zlib.crc32(task.token.encode()) / 2**32
        #: When the next heartbeat is due.
        self.due = self.next_due(now)
        self.in_flight = False
        #: When a heartbeat found the task gone; its outcome is not sent.
        self.gone_at: float | None = None
        #: Called (from a heartbeat's thread) when a heartbeat finds the task gone: an
        #: async task's coroutine is cancelled by it.
        self.on_gone: Callable[[], None] | None = None
        self.stuck = False

    def next_due(self, now: float) -> float:
        """The first due time after ``now``: whole cadences after the receipt, less the phase."""
        start = self.received - self.phase
        return start + (math.floor((now - start) / self.cadence) + 1) * self.cadence


class Heartbeats:
    """Sends the heartbeats of the tasks this process holds, from a few threads.

    Args:
        client: the client to send with.
        on_stuck: called once for a task found gone that still runs ``CANCEL_GRACE``
            seconds later; stops it if the slot can.
        threads: how many heartbeats may be in flight at once.
        metrics: what heartbeats are counted in.
        clock: the time, in seconds (``time.monotonic``; a test's own).
    """

    def __init__(
        self,
        client: ActivityClient,
        *,
        on_stuck: Callable[[Job], None],
        threads: int = 2,
        metrics: Metrics = NO_METRICS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._client = client
        self._metrics = metrics
        self._on_stuck = on_stuck
        self._clock = clock
        self._jobs: set[Job] = set()
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self._executor = ThreadPoolExecutor(threads, thread_name_prefix="sfn-activities-heartbeat")
        self._ticker: threading.Thread | None = None

    def begin(
        self, task: Task, activity: type[Activity], interval: float | None, *, waiting: bool = False
    ) -> Job:
        """A task starts running (or, ``waiting``, waits in the buffer for a slot)."""
        job = Job(task, activity, interval, waiting=waiting, now=self._clock())
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

    def hand_over(self, job: Job) -> None:
        """A waiting task goes to a slot: no more heartbeats from here, but the one due now.

        The slot heartbeats it from its next due time on, unaware of this one: sent here,
        a heartbeat due as the task leaves, or within :data:`HAND_OVER_AHEAD`, is not
        skipped (the slot may send that one too: two close together, rarely).
        """
        self.end(job)
        self._send(job, ahead=min(HAND_OVER_AHEAD, job.cadence / 2))

    def ask(self, job: Job) -> None:
        """``run()`` asks for a heartbeat: send one if one is due (see :func:`cadence`).

        Raises:
            TaskGone: a heartbeat found the task gone.
        """
        if job.gone_at is not None:
            msg = "SendTaskHeartbeat: the task is gone"
            raise TaskGone(msg, code="TaskTimedOut", operation="SendTaskHeartbeat")
        if self._clock() >= job.due:  # without the lock: most yields find none due
            self._send(job)

    def close(self) -> None:
        """Stop the ticker and the send threads (a heartbeat in flight is not waited for)."""
        self._closed.set()
        self._executor.shutdown(wait=False, cancel_futures=True)

    def _send(self, job: Job, *, ahead: float = 0.0) -> None:
        """Send the heartbeat due now, or within ``ahead`` seconds, unless another sends it.

        The ticker and ``run()``'s thread may both find it due: the lock decides.
        """
        now = self._clock()
        with self._lock:  # the ticker and run()'s thread may find it due at once: one is sent
            if job.gone_at is not None or self._closed.is_set() or now + ahead < job.due:
                return
            job.due = job.next_due(now)
            if job.in_flight:
                return  # the last one, retried or slow, stands for it: no pile-up when throttled
            job.in_flight = True
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
                job.gone_at = self._clock()
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
            # What passes is summed up by the pacer and the outage watch.
            level = logging.DEBUG if exc.transient else logging.WARNING
            logger.log(level, "heartbeat for task %s failed: %s", job.task.token_prefix, exc)
        finally:
            job.in_flight = False

    def _tick_loop(self) -> None:
        while not self._closed.wait(TICK):
            try:
                self._tick()
            except Exception:
                logger.exception("the heartbeat ticker failed; it goes on")

    def _tick(self) -> None:
        now = self._clock()
        with self._lock:
            jobs = list(self._jobs)
        for job in jobs:
            if job.gone_at is not None:
                if not job.stuck and now - job.gone_at >= CANCEL_GRACE:
                    job.stuck = True
                    self._on_stuck(job)
            elif job.automatic and now >= job.due:
                self._send(job)
