"""The worker's polls: every ``GetActivityTask`` is made by the worker's own process.

Task processes only run what they are handed, so a process that dies takes with it the
tasks it was running and nothing else: no poll of its can bring a task after it is gone.

:class:`Polls` keeps poller threads, each with one long poll open at a time, and chooses
for each the task list to poll next: first one that has no poll open (every task list
keeps one while there is room, however many there are), then the busy ones (a poll
brought a task within :data:`BUSY_WINDOW`), the one with the fewest polls open first. The
room is the hand-off's (:mod:`activities.worker._handoff`): polls open and tasks held (running
or waiting for a slot) never exceed the slots plus the buffer, since every poll may bring
a task. ``pollers`` caps the polls open at once. :class:`TaskLists` is what the worker
knows of each task list; :func:`poll_failed` pauses one after an error.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import TYPE_CHECKING

from activities._ops.metrics import NO_METRICS
from activities.errors import ActivityDoesNotExist, ServiceError

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from activities._aws.retry import RetryPolicy
    from activities._ops.metrics import Metrics
    from activities.client import ActivityClient
    from activities.task import Task
    from activities.worker._control import Flag

__all__ = ["Polls", "TaskLists", "poll_failed"]

logger = logging.getLogger(__name__)

#: Seconds a task list counts as busy after a poll brought a task: the worker adds polls
#: to a busy task list, where one is enough for an idle one.
BUSY_WINDOW = 0.5


class TaskLists:
    """What the worker knows of the task lists it serves: polls open, busy, paused.

    In the worker's process only; read and changed under :class:`Polls`' lock, or
    without one where a stale read does no harm.

    Args:
        arns: the activities (task lists) served, in a fixed order.
        is_async: for each, whether its activity has an ``async def run()``.
    """

    def __init__(self, arns: Sequence[str], is_async: Sequence[bool]) -> None:
        self.arns = tuple(arns)
        self.is_async = tuple(is_async)
        size = len(self.arns)
        #: Polls open on each task list now.
        self.open = [0] * size
        self._busy_until = [0.0] * size
        self._paused_until = [0.0] * size
        self._errors = [0] * size

    def polls_open(self) -> list[int]:
        """How many polls are open on each task list now."""
        return list(self.open)

    def mark_busy(self, index: int) -> None:
        """A poll of task list ``index`` brought a task."""
        self._busy_until[index] = time.monotonic() + BUSY_WINDOW
        self._errors[index] = 0

    def is_busy(self, index: int, now: float) -> bool:
        """Whether a poll of task list ``index`` brought a task lately."""
        return self._busy_until[index] > now

    def paused(self, index: int, now: float) -> bool:
        """Whether task list ``index`` is not polled now, after errors."""
        return self._paused_until[index] > now

    def poll_failed(self, index: int) -> int:
        """A poll of task list ``index`` failed; how many did in a row (see :meth:`pause`)."""
        self._errors[index] += 1
        return self._errors[index]

    def pause(self, index: int, seconds: float) -> None:
        """Poll task list ``index`` again in ``seconds`` at the earliest."""
        self._paused_until[index] = time.monotonic() + seconds

    def poll_succeeded(self, index: int) -> None:
        """A poll of task list ``index`` returned without an error."""
        self._errors[index] = 0

    def all_failing(self) -> bool:
        """Whether the last poll of every task list failed (expired credentials, say)."""
        return all(errors > 0 for errors in self._errors)


class Polls:
    """The worker's poller threads, and the choice of what each polls next.

    Args:
        client: the worker's client.
        lists: the task lists served.
        room: how many more tasks may be held (running or waiting), polls not counted:
            all of them, or (``True``) those of sync activities.
        may_poll: whether a task list's activity is below its ``max_concurrency``.
        take: takes what a poll brought (runs it, or keeps it waiting).
        stopping: set when the worker stops: no new poll starts.
        give_up: set when it stops at once: a poll's error then goes unlogged.
        most: polls open at once, at most (see
            :meth:`~activities.worker._settings.WorkerSettings.polls_at_most`).
        metrics: what polls are counted in.
    """

    def __init__(
        self,
        client: ActivityClient,
        lists: TaskLists,
        *,
        room: Callable[[bool], int],
        may_poll: Callable[[int], bool],
        take: Callable[[Task], None],
        stopping: Flag,
        give_up: Flag,
        most: int,
        metrics: Metrics = NO_METRICS,
    ) -> None:
        self.lists = lists
        self._client = client
        self._room = room
        self._may_poll = may_poll
        self._take = take
        self._stopping = stopping
        self._give_up = give_up
        self._most = most
        self._metrics = metrics
        self._lock = threading.Lock()
        self._turn = 0
        self._threads = 0

    def open_count(self) -> int:
        """How many polls are open now."""
        return sum(self.lists.open)

    def fill(self) -> None:
        """Open the polls there is room for now, each in a poller thread of its own."""
        while (index := self._claim(-1)) >= 0:
            # A daemon thread: a poll in flight at an immediate stop must not hold up the exit.
            threading.Thread(
                target=self._poller, args=(index,), name="sfn-activities-poll", daemon=True
            ).start()

    def _claim(self, current: int) -> int:
        """Choose the task list to poll next, and count the poll open; -1 for none.

        ``current``: the task list the calling poller polled last (-1 for a new poller),
        preferred among the busy ones with as few polls open.
        """
        lists = self.lists
        with self._lock:
            if self._stopping.is_set() or sum(lists.open) >= self._most:
                return -1
            now = time.monotonic()
            size = len(lists.arns)
            room = {False: self._room(False) - sum(lists.open), True: -1}
            if room[False] <= 0:
                return -1
            best, fewest = -1, 1 << 30
            for step in range(size):
                index = (self._turn + step) % size
                count = lists.open[index]
                if count and not lists.is_busy(index, now):
                    continue  # an idle task list needs one poll
                if count > fewest or (count == fewest and (index != current or not count)):
                    continue
                if lists.paused(index, now) or not self._may_poll(index):
                    continue
                sync = not lists.is_async[index]
                if sync and room[True] < 0:
                    room[True] = self._room(True) - sum(
                        open_
                        for open_, async_ in zip(lists.open, lists.is_async, strict=True)
                        if not async_
                    )
                if sync and room[True] <= 0:
                    continue
                best, fewest = index, count
            if best >= 0:
                lists.open[best] += 1
                self._turn += 1
            return best

    def _poller(self, index: int) -> None:
        """Poll, and poll again what :meth:`_claim` chooses, until it chooses nothing."""
        try:
            while index >= 0:
                task = None
                try:
                    task = self._poll(index)
                finally:
                    if task is not None:
                        self._take_safely(task)  # held before the poll stops counting
                    with self._lock:
                        self.lists.open[index] -= 1
                index = self._claim(index)
        except Exception:
            # A bug, not a poll's error (those pause their task list): logged, never a silent
            # thread death; the hand-off opens the polls there is room for again.
            logger.exception("a poller of the worker failed; the others go on")

    def _poll(self, index: int) -> Task | None:
        lists = self.lists
        arn = lists.arns[index]
        try:
            task = self._client.poll(arn, keep_trying=self._stopping.is_unset)
        except Exception as exc:  # noqa: BLE001 - polling never ends on an error
            self._metrics.polled(arn, "error")
            # Not logged when abandoned by a stop at once.
            poll_failed(lists, index, exc, self._client.retry, log=not self._give_up.is_set())
            return None
        self._metrics.polled(arn, "empty" if task is None else "task")
        if task is None:
            lists.poll_succeeded(index)
        else:
            lists.mark_busy(index)
        return task

    def _take_safely(self, task: Task) -> None:
        try:
            self._take(task)
        except Exception:
            # A bug: logged, never a silent thread death. The task is left to its timeout.
            logger.exception("task %s could not be handed over", task.token_prefix)


def poll_failed(
    lists: TaskLists, index: int, exc: BaseException, retry: RetryPolicy, *, log: bool = True
) -> None:
    """Pause the polls of task list ``index`` after ``exc``, with ``retry``'s backoff; say so.

    What passes (throttling, a timeout, a lost connection, a 5xx) is logged at DEBUG: the
    client's pacer and the worker's outage watch warn of it as a whole. An error that
    stays at WARNING, a missing activity and the rest at ERROR. Never raises, and
    never leaves the task list unpaused: a loop that polled again at once would spend the
    account's ``GetActivityTask`` quota in a few seconds.
    """
    name = lists.arns[index].rpartition(":")[2]
    try:
        errors = lists.poll_failed(index)
        # An error that passes was retried in place already, and the pacer slows a throttled
        # operation: a short pause. One that stays (a missing activity, a denied permission)
        # starts where the in-place attempts would have ended, so as not to poll every few ms.
        transient = isinstance(exc, ServiceError) and exc.transient
        pause = retry.pause(errors if transient else errors + retry.attempts - 1)
    except Exception:
        pause = retry.cap
        logger.exception(
            "polling %s: no backoff for its error; its next poll in %.1f s", name, pause
        )
    lists.pause(index, pause)
    if not log:
        return
    if isinstance(exc, ServiceError) and exc.transient:
        # Summed up: throttling by the pacer, no answer by the outage watch.
        logger.debug("polling %s failed (%s); its next poll in %.2f s", name, exc, pause)
    elif isinstance(exc, ActivityDoesNotExist):
        logger.error("polling %s failed: %s; its next poll in %.1f s", name, exc, pause)
    elif isinstance(exc, ServiceError):
        logger.warning("polling %s failed: %s; its next poll in %.1f s", name, exc, pause)
    else:
        logger.error("polling %s failed; its next poll in %.1f s", name, pause, exc_info=exc)
