"""The worker's hand-off: every task its polls bring goes to a free slot, or waits for one.

The worker's own process makes every poll (:mod:`activities.worker._poll`) and owns everything
the slots share: which slot runs which task (:class:`~activities.worker._slotstate.SlotState`),
the activities' ``max_concurrency``, the bounded buffer, the polls' budget. A task a poll
brings goes at once to a free slot that takes its kind (an async task to an async
position first; a sync one never to a position); when none is free it waits in the
buffer, heartbeated at its activity's cadence (its ``HeartbeatSeconds`` run from the moment
it was received; see :mod:`activities.worker._heartbeats`), and is handed to the first slot
that frees, oldest first. It is failed with ``activities.WorkerShutdown`` if the shutdown
grace ends first.

The buffer's room bounds the polls: tasks held (running or waiting) and polls open
together never exceed the slots plus :attr:`HandOff.capacity`, so at most that many tasks
wait when every slot is busy, and no new poll starts while the buffer is full.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from typing import TYPE_CHECKING

from activities._ops.metrics import NO_METRICS
from activities.errors import WorkerShutdown
from activities.worker._poll import Polls, TaskLists

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence

    from activities._activity import Activity
    from activities._ops.metrics import Metrics
    from activities.client import ActivityClient
    from activities.task import Task
    from activities.worker._control import Control
    from activities.worker._heartbeats import Heartbeats, Job
    from activities.worker._slot import Slot

__all__ = ["HandOff"]

logger = logging.getLogger(__name__)

#: Seconds between two looks at the waiting tasks and the polls (sooner when a slot
#: frees or a task arrives).
DISPATCH_TICK = 0.01


class HandOff:
    """The worker's polls, its bounded buffer of received tasks, and who runs which task.

    Args:
        client: the worker's client, for the polls.
        control: the flags the worker shares with its slots.
        by_arn: the activity class served on each activity ARN.
        capacity: how many tasks may wait for a slot.
        heartbeats: sends the heartbeats of waiting tasks.
        intervals: seconds between automatic heartbeats by activity name, as the slots
            have them (the worker's ``heartbeat_intervals``); the classes' own
            ``heartbeat_interval`` when ``None``. With ``heartbeat_seconds``, they set a
            waiting task's cadence (see :func:`~activities.worker._heartbeats.cadence`).
        slots: the worker's slots now.
        fail: fails a task on the worker's behalf.
        metrics: what the polls are counted in.
        sync_positions: the slots that take sync tasks, when some do not (async
            positions); ``None``: all of them.
        most_polls: polls open at once, at most.
        groups: for each task list, the index of the activity class served on it.
        limits: for each activity class, the most of its tasks run at once
            (``max_concurrency``), ``None`` for no limit.
    """

    def __init__(
        self,
        client: ActivityClient,
        control: Control,
        *,
        by_arn: Mapping[str, type[Activity]],
        capacity: int,
        heartbeats: Heartbeats,
        slots: Callable[[], Sequence[Slot]],
        fail: Callable[[Task, Exception], None],
        metrics: Metrics = NO_METRICS,
        sync_positions: Sequence[int] | None = None,
        most_polls: int = 1,
        groups: Sequence[int] | None = None,
        limits: Sequence[int | None] = (),
        intervals: Mapping[str, float | None] | None = None,
    ) -> None:
        self.capacity = capacity
        #: When (``time.monotonic()``) the hand-off last looked at the waiting tasks; it
        #: looks every few milliseconds while it runs (the worker's liveness).
        self.looked_at = time.monotonic()
        arns = control.arns
        self._control = control
        self._by_arn = by_arn
        self._index = {arn: index for index, arn in enumerate(arns)}
        self._is_async = [by_arn[arn]._is_async() for arn in arns]
        self._sync_positions = None if sync_positions is None else frozenset(sync_positions)
        self._groups = tuple(groups) if groups is not None else tuple(range(len(arns)))
        self._limits = tuple(limits) or (None,) * (max(self._groups, default=-1) + 1)
        self._heartbeats = heartbeats
        self._intervals = (
            dict(intervals)
            if intervals is not None
            else {activity.name: activity.heartbeat_interval for activity in by_arn.values()}
        )
        self._slots = slots
        self._fail = fail
        self._waiting: collections.deque[Job] = collections.deque()
        self._buffered = [0] * len(arns)
        self._wake = threading.Condition()
        self._woken = False  # something happened while the loop was busy: look again at once
        self._handing = threading.Lock()  # one hand at a time: a slot gets one task
        self._closed = threading.Event()
        self.lists = TaskLists(arns, self._is_async)
        self.polls = Polls(
            client,
            self.lists,
            room=self.room,
            may_poll=self._may_poll,
            take=self.take,
            stopping=control.stopping,
            give_up=control.give_up,
            most=most_polls,
            metrics=metrics,
        )
        self._thread = threading.Thread(
            target=self._loop, name="sfn-activities-handoff", daemon=True
        )

    def start(self) -> None:
        """Start polling and handing tasks over."""
        self._thread.start()

    def take(self, task: Task) -> None:
        """Run ``task``, which a poll brought, on a free slot now, or keep it waiting for one."""
        index = self._index[task.activity_arn]
        with self._wake:
            queued = bool(self._waiting)  # first come, first served
        if not queued and self._hand(task, index):
            return
        self.put(task)

    def put(self, task: Task) -> None:
        """Keep ``task`` until a slot is free; it is heartbeated meanwhile, at its cadence.

        After :meth:`close` (the worker stopped at once), or past the shutdown grace, the
        task is failed instead.
        """
        index = self._index[task.activity_arn]
        activity = self._by_arn[task.activity_arn]
        with self._wake:
            at_once = self._closed.is_set()
            closed = at_once or self._control.past_deadline.is_set()
            if not closed:
                interval = self._intervals.get(activity.name, activity.heartbeat_interval)
                job = self._heartbeats.begin(task, activity, interval, waiting=True)
                self._waiting.append(job)
                self._buffered[index] += 1
                self._control.set_waiting(len(self._waiting))
                self._woken = True
                self._wake.notify()
        if at_once:
            self._fail(
                task, WorkerShutdown("the task arrived after the worker was stopped at once")
            )
        elif closed:
            self._fail(task, WorkerShutdown("the task arrived after the worker's shutdown grace"))

    def nudge(self) -> None:
        """Look at the waiting tasks now: a slot is free."""
        with self._wake:
            self._woken = True
            self._wake.notify()

    def waiting(self) -> int:
        """How many tasks wait for a slot."""
        with self._wake:
            return len(self._waiting)

    def polls_open(self) -> int:
        """How many polls are open now."""
        return self.polls.open_count()

    def idle(self) -> bool:
        """Whether no task waits and no poll is open: no task can arrive any more, once stopping."""
        with self._wake:
            return not self._waiting and not self.polls.open_count()

    def fail_waiting(self, error: Exception) -> int:
        """Fail every waiting task with ``error``; how many there were."""
        with self._handing:
            with self._wake:
                jobs = list(self._waiting)
            for job in jobs:
                self._remove(job)
        for job in jobs:
            self._fail(job.task, error)
        return len(jobs)

    def close_slots(self, slots: Sequence[Slot]) -> None:
        """Hand ``slots`` no task from now on, and tell them: they end once they are done."""
        with self._handing:  # after a task being handed to one of them
            for slot in slots:
                if not slot.state.closed:
                    slot.close()

    def close(self) -> None:
        """Stop the hand-off thread; tasks put later are failed (see :meth:`put`).

        Polls in flight are not waited for.
        """
        with self._wake:
            self._closed.set()
            self._wake.notify()

    # -- what the slots hold ----------------------------------------------------------------

    def room(self, sync: bool) -> int:
        """How many more tasks may be held (polls open not counted): in the buffer and slots.

        With ``sync``, of sync activities, counting only the slots that take them (async
        positions cannot).
        """
        slots = self._slots()
        with self._wake:
            waiting = len(self._waiting)
            if sync and self._sync_positions is not None:
                waiting = sum(not job.activity._is_async() for job in self._waiting)
        if sync and self._sync_positions is not None:
            positions = self._sync_positions
            busy = sum(slot.state.busy() for slot in slots if slot.position in positions)
            return self.capacity + len(positions) - waiting - busy
        busy = sum(slot.state.busy() for slot in slots)
        return self.capacity + self._control.slots - waiting - busy

    def running_cells(self) -> list[int]:
        """The task list of the task each slot runs now (-1: none), by position."""
        cells = [-1] * self._control.slots
        for slot in self._slots():
            cells[slot.position] = slot.state.running()
        return cells

    def all_failing(self) -> bool:
        """Whether the last poll of every task list failed (expired credentials, say)."""
        return self.lists.all_failing()

    def buffered_by_task_list(self) -> list[int]:
        """How many tasks of each task list wait in the buffer now."""
        with self._wake:
            return list(self._buffered)

    def _running_of(self, group: int) -> int:
        groups = self._groups
        return sum(
            1
            for slot in self._slots()
            if (index := slot.state.running()) >= 0 and groups[index] == group
        )

    def _may_run(self, index: int) -> bool:
        """Whether a task of task list ``index`` may start now (its ``max_concurrency``)."""
        group = self._groups[index]
        limit = self._limits[group]
        return limit is None or self._running_of(group) < limit

    def _may_poll(self, index: int) -> bool:
        """Whether task list ``index``'s activity holds (runs, or keeps waiting) less than its most.

        At its most, its task lists are not polled: its tasks stay in Step Functions. A
        poll open when the limit is reached may still bring one, which waits for its turn.
        """
        group = self._groups[index]
        limit = self._limits[group]
        if limit is None:
            return True
        waiting = sum(count for at, count in enumerate(self._buffered) if self._groups[at] == group)
        return self._running_of(group) + waiting < limit

    # -- machinery ------------------------------------------------------------------------

    def _loop(self) -> None:
        while not self._closed.is_set():
            self.looked_at = time.monotonic()
            with self._wake:
                if not self._woken:
                    self._wake.wait(DISPATCH_TICK)
                self._woken = False
            try:
                self._dispatch()
                if not self._control.stopping.is_set() and any(
                    slot.ready for slot in self._slots()
                ):
                    # Not before a slot is up: a task received is already ageing.
                    self.polls.fill()
            except Exception:
                logger.exception("the hand-off failed; it goes on")
                time.sleep(DISPATCH_TICK)

    def _remove(self, job: Job, *, handed: bool = False) -> bool:
        """Take ``job`` out of the buffer; ``handed``: to a slot, which heartbeats it from now."""
        with self._wake:
            try:
                self._waiting.remove(job)
            except ValueError:
                return False
            self._buffered[self._index[job.task.activity_arn]] -= 1
            self._control.set_waiting(len(self._waiting))
        if handed:
            self._heartbeats.hand_over(job)
        else:
            self._heartbeats.end(job)
        return True

    def _dispatch(self) -> None:
        """Hand waiting tasks, oldest first, to free slots."""
        with self._wake:
            jobs = list(self._waiting)
        for job in jobs:
            task = job.task
            if job.gone_at is not None:
                if self._remove(job):
                    logger.warning("task %s was gone before a slot was free", task.token_prefix)
                continue
            if self._control.past_deadline.is_set():
                return  # the worker fails what waits (see fail_waiting)
            if not self._hand(task, self._index[task.activity_arn], job=job):
                continue  # at its max_concurrency, or no free slot takes its kind: next

            logger.debug(
                "task %s waited %.1f ms for a slot",
                task.token_prefix,
                (time.monotonic() - job.started) * 1000,
            )

    def _hand(self, task: Task, index: int, *, job: Job | None = None) -> bool:
        """Hand ``task`` to a free slot that takes it; ``False`` if none is free, or at its limit.

        An async task goes to an async position before a slot (a slot would give it a
        thread of its own); a sync one never goes to a position. A waiting task (``job``)
        leaves the buffer as it is handed. Its activity's ``max_concurrency`` is read under
        the lock tasks are handed with: two polls bringing tasks at once never both pass it.
        """
        slots = self._slots()
        kinds = (False, True) if self._is_async[index] else (True,)
        with self._handing:
            if job is not None:
                with self._wake:
                    if job not in self._waiting:
                        return False  # failed at the deadline meanwhile
            if not self._may_run(index):
                return False
            for takes_sync in kinds:
                for slot in slots:
                    if slot.takes_sync is not takes_sync or not slot.ready:
                        continue
                    if slot.state.free() and slot.offer(task, index):
                        if job is not None:
                            self._remove(job, handed=True)
                        return True
        return False
