"""The worker's hand-off: every task list has a poll open, and what no slot can take waits.

Each activity ARN is a queue of its own, and a task on one that nobody polls waits,
however idle the worker, until a poll is opened there. Slots poll the task lists that are
busy (:mod:`activities._loop`); the worker's own process keeps one *coverage* poll open on
every task list that has none, whatever the ratio of task lists to slots, and puts what
those polls bring in a bounded buffer. A slot's own poll that brings a task while the slot
already runs one (it was handed a task meanwhile) puts it there too.

A waiting task is heartbeated (its ``HeartbeatSeconds`` run from the moment it was
received) and handed to the first slot that frees, in whichever process; it is failed
with ``activities.WorkerShutdown`` if the shutdown grace ends first. The buffer's room
bounds the polls: tasks held (running or waiting) and polls open together never exceed
the slots plus :attr:`HandOff.capacity`, so at most that many tasks wait when every
slot is busy, and no new poll starts while the buffer is full.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from typing import TYPE_CHECKING

from activities._heartbeats import HEARTBEAT_MIN_INTERVAL
from activities._metrics import NO_METRICS
from activities._poll import poll_failed
from activities.errors import WorkerShutdown

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence

    from activities._activity import Activity
    from activities._control import Control
    from activities._heartbeats import Heartbeats, Job
    from activities._metrics import Metrics
    from activities._slot import Slot
    from activities.client import ActivityClient
    from activities.task import Task

__all__ = ["HandOff"]

logger = logging.getLogger(__name__)

#: Seconds between two looks at the task lists and the free slots (sooner when a task
#: arrives or a coverage poll returns).
DISPATCH_TICK = 0.01

#: Seconds a waiting task is kept from a free slot whose own poll of a busy task list is
#: open (that poll is likely to bring a task of its own); then it is handed there anyway.
PATIENCE = 0.002

#: Seconds a busy task list may go without a poll before the worker opens one: the
#: slots that serve it poll it again as soon as they are free.
BUSY_GRACE = 0.02

#: Seconds between heartbeats of a task waiting in the buffer: as often as those of a
#: task that yields.
WAITING_HEARTBEAT_INTERVAL = HEARTBEAT_MIN_INTERVAL


class HandOff:
    """The bounded buffer of received tasks, and the polls that keep every task list covered.

    Args:
        client: the worker's client, for the coverage polls.
        control: the worker's shared state.
        by_arn: the activity class served on each activity ARN.
        capacity: how many tasks may wait, coverage polls included.
        heartbeats: sends the heartbeats of waiting tasks.
        slots: the worker's slots now.
        fail: fails a task on the worker's behalf.
        metrics: what the coverage polls are counted in.
        sync_positions: the slots that take sync tasks, when some do not (async
            positions); ``None``: all of them.
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
    ) -> None:
        self.capacity = capacity
        #: When (``time.monotonic()``) the hand-off last looked at the waiting tasks; it
        #: looks every few milliseconds while it runs (the worker's liveness).
        self.looked_at = time.monotonic()
        self._metrics = metrics
        self._client = client
        self._control = control
        self._by_arn = by_arn
        self._index = {arn: index for index, arn in enumerate(control.arns)}
        self._is_async = [by_arn[arn]._is_async() for arn in control.arns]
        self._sync_positions = sync_positions
        self._heartbeats = heartbeats
        self._slots = slots
        self._fail = fail
        self._waiting: collections.deque[Job] = collections.deque()
        self._covering: set[int] = set()
        self._wake = threading.Condition()
        self._woken = False  # something happened while the loop was busy: look again at once
        self._next_look = DISPATCH_TICK
        self._handing = threading.Lock()
        self._closed = threading.Event()
        self._turn = 0
        self._uncovered: dict[int, float] = {}  # busy task lists found without a poll, since
        self._thread = threading.Thread(
            target=self._loop, name="sfn-activities-handoff", daemon=True
        )

    def start(self) -> None:
        """Start handing tasks over and covering task lists."""
        self._thread.start()

    def put(self, task: Task) -> None:
        """Keep ``task`` until a slot is free; it is heartbeated meanwhile.

        After :meth:`close` (the worker stopped at once), the task is failed instead.
        """
        index = self._index[task.activity_arn]
        activity = self._by_arn[task.activity_arn]
        with self._wake:
            closed = self._closed.is_set()
            if not closed:
                job = self._heartbeats.begin(task, activity, WAITING_HEARTBEAT_INTERVAL)
                self._waiting.append(job)
                self._control.buffered(index, 1)
                self._woken = True
                self._wake.notify()
        if closed:
            self._fail(task, WorkerShutdown("the worker was stopped at once"))

    def nudge(self) -> None:
        """Look at the waiting tasks now: a slot is free."""
        with self._wake:
            self._woken = True
            self._wake.notify()

    def waiting(self) -> int:
        """How many tasks wait for a slot."""
        with self._wake:
            return len(self._waiting)

    def idle(self) -> bool:
        """Whether no task waits and no coverage poll is open."""
        with self._wake:
            return not self._waiting and not self._covering

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

    def close(self) -> None:
        """Stop the hand-off thread; tasks put later are failed (see :meth:`put`).

        Coverage polls in flight are not waited for.
        """
        with self._wake:
            self._closed.set()
            self._wake.notify()

    # -- machinery ------------------------------------------------------------------------

    def _loop(self) -> None:
        while not self._closed.is_set():
            self.looked_at = time.monotonic()
            with self._wake:
                if not self._woken:
                    self._wake.wait(self._next_look)
                self._woken = False
            try:
                self._next_look = DISPATCH_TICK
                self._dispatch()
                if not self._control.stopping.is_set():
                    self._cover()
            except Exception:
                logger.exception("the hand-off failed; it goes on")
                time.sleep(DISPATCH_TICK)

    def _remove(self, job: Job) -> bool:
        with self._wake:
            try:
                self._waiting.remove(job)
            except ValueError:
                return False
            self._control.buffered(self._index[job.task.activity_arn], -1)
        self._heartbeats.end(job)
        return True

    def _dispatch(self) -> None:
        """Hand waiting tasks, oldest first, to free slots."""
        with self._wake:
            jobs = list(self._waiting)
        if not jobs:
            return
        free = [slot for slot in self._slots() if slot.ready and slot.state.free()]
        now = time.monotonic()
        for job in jobs:
            task = job.task
            if job.gone_at is not None:
                if self._remove(job):
                    logger.warning("task %s was gone before a slot was free", task.token_prefix)
                continue
            if self._control.past_deadline.is_set():
                return  # the worker fails what waits (see fail_waiting)
            index = self._index[task.activity_arn]
            if not self._control.may_run(index):
                continue  # its activity runs its max_concurrency: the next one may go
            asynchronous = job.activity._is_async()
            slot = self._pick(free, now - job.started, asynchronous=asynchronous)
            if slot is None:
                if not any(asynchronous or each.takes_sync for each in free):
                    continue  # no free slot takes its kind: one behind it may go
                # Passed over for now: look again when the patience is over.
                self._next_look = min(self._next_look, PATIENCE)
                break
            with self._handing:  # not failed at the deadline meanwhile
                if job not in self._waiting:
                    continue
                if not slot.offer(task, index):
                    if not slot.state.free():
                        free.remove(slot)
                    continue
                free.remove(slot)
                self._remove(job)
            logger.debug(
                "task %s waited %.1f ms for %s",
                task.token_prefix,
                (time.monotonic() - job.started) * 1000,
                slot.name,
            )

    def _pick(self, free: list[Slot], waited: float, *, asynchronous: bool) -> Slot | None:
        """The free slot to hand a task to: one that does not poll, if there is one.

        A slot polling a busy task list is likely to get a task of its own at once: it
        is passed over for :data:`PATIENCE`, so that tasks do not go round through the
        buffer while every slot is busy. An async task goes to an async position before
        a slot (a slot would give it a thread); a sync one never goes to a position.
        """
        if asynchronous:
            positions = [slot for slot in free if not slot.takes_sync]
            first = self._pick_among(positions, waited)
            if first is not None:
                return first
            if positions and waited < PATIENCE:
                return None  # a position polls: it may be free for it in a moment
        return self._pick_among([slot for slot in free if slot.takes_sync], waited)

    def _pick_among(self, free: list[Slot], waited: float) -> Slot | None:
        fallback = None
        for slot in free:
            polling = self._control.polling(slot.position)
            if polling < 0:
                return slot
            if not self._control.is_busy(polling):
                fallback = fallback or slot
            elif waited >= PATIENCE and fallback is None:
                fallback = slot
        return fallback

    def _room(self, *, sync: bool = False) -> int:
        """How many more polls may be opened without risking more waiting tasks than fit.

        Every poll open may bring a task: tasks held (running or waiting) and polls open
        together stay within the slots and the buffer's capacity. A task of a sync
        activity (``sync``) counts only the slots that take one: async positions cannot.
        """
        control = self._control
        with self._wake:
            used = len(self._waiting) + len(self._covering)
            used_sync = sum(not job.activity._is_async() for job in self._waiting) + sum(
                not self._is_async[index] for index in self._covering
            )
        room = self.capacity + control.slots - used - control.slots_in_use()
        positions = self._sync_positions
        if sync and positions is not None:
            # Sync tasks held (waiting, or by the slots that take them) and sync polls open.
            in_use = control.slots_in_use(positions)
            room = min(room, self.capacity + len(positions) - used_sync - in_use)
        return room

    def _cover(self) -> None:
        """Open a poll on every task list that has none, as far as there is room.

        Not before a slot is up: a task received is already ageing.
        """
        if not any(slot.ready for slot in self._slots()):
            return
        control = self._control
        counts = control.polls_open()
        size = len(counts)
        room = {False: self._room(), True: self._room(sync=True)}  # by: sync task list?
        now = time.monotonic()
        self._turn += 1
        for step in range(size):
            if room[False] <= 0:
                return
            index = (self._turn + step) % size
            sync = not self._is_async[index]
            if room[sync] <= 0:
                continue
            if counts[index]:
                self._uncovered.pop(index, None)
                continue
            if control.is_busy(index) and now - self._uncovered.setdefault(index, now) < BUSY_GRACE:
                continue  # the slots poll a busy task list: give them a moment first
            with self._wake:
                if index in self._covering:
                    continue
                if not self._may_poll(index):
                    continue
                self._covering.add(index)
            room[False] -= 1
            if sync:
                room[True] -= 1
            self._uncovered.pop(index, None)
            # A daemon thread: a poll in flight at an immediate stop must not hold up the exit.
            threading.Thread(
                target=self._cover_poll,
                args=(index,),
                name=f"sfn-activities-cover-{index}",
                daemon=True,
            ).start()

    def _may_poll(self, index: int) -> bool:
        control = self._control
        return (
            not control.stopping.is_set()
            and control.paused_until(index) <= time.monotonic()
            and control.claim_poll(control.slots + index, index)
        )

    def _cover_poll(self, index: int) -> None:
        """Poll task list ``index`` until another poll covers it, or room runs out."""
        control = self._control
        position = control.slots + index
        arn = control.arns[index]
        try:
            while True:
                with control.poll_permit(block=False) as permitted:
                    if not permitted:
                        return
                    try:
                        task = self._client.poll(arn, keep_trying=control.stopping.is_unset)
                    except Exception as exc:  # noqa: BLE001 - polling never ends on an error
                        self._metrics.polled(arn, "error")
                        # Not logged when abandoned by a stop at once.
                        poll_failed(
                            control,
                            index,
                            exc,
                            self._client.retry,
                            log=not control.give_up.is_set(),
                        )
                        return
                self._metrics.polled(arn, "empty" if task is None else "task")
                if task is None:
                    control.poll_succeeded(index)
                else:
                    control.mark_busy(index)
                    self.put(task)  # counted as waiting before the poll stops counting
                control.done_polling(position)
                # Poll again at once, unless another poll covers the task list now.
                if control.polls_open()[index] or self._room(sync=not self._is_async[index]) < 0:
                    return
                if not self._may_poll(index):
                    return
        except Exception:
            # A bug, not a poll's error (those are handled above): never an unlogged thread
            # death, and never a task list polled again at once.
            pause = self._client.retry.cap
            logger.exception(
                "covering task list %s failed; its next poll in %.1f s",
                arn.rpartition(":")[2],
                pause,
            )
            control.pause(index, pause)
        finally:
            control.done_polling(position)
            with self._wake:
                self._covering.discard(index)
                self._woken = True
                self._wake.notify()
