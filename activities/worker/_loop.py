"""A slot's life: run the tasks the worker hands it, with heartbeats, and deliver their outcomes.

:class:`SlotLoop` is the same in a task process (:mod:`activities.worker._taskprocess` starts
it there) and in a thread of the worker's process (:mod:`activities.worker._threadslots`).
The worker's own process polls
(:mod:`activities.worker._poll`) and hands each task to a free slot
(:mod:`activities.worker._handoff`); the slot runs one task at a time, in a thread of its
own (never a process's main thread), and reports it. It sends each outcome from a thread of
its process's *sender* while it already runs its next task, two outcomes on their way at
most: at a real network round trip the slot is free again as soon as ``run()`` returns, and
its outcome and the poll of its next task overlap. It ends when the worker says no more
tasks will come (:meth:`close`).
"""

from __future__ import annotations

import collections
import concurrent.futures
import logging
import queue
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from typing import TYPE_CHECKING

import attrs

from activities import _runner
from activities._aws.retry import RetryPolicy
from activities._aws.sfnclient import CALL_TIMEOUT
from activities._ops.processmetrics import metrics_of
from activities.outcome import failure_from_exception
from activities.worker._childlog import LogPlan
from activities.worker._serving import (
    arrived_late,
    begin,
    conclude,
    outcome_of,
    past_grace,
    report,
    settle,
    shutdown_failure,
    start_on_loop,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from mypy_boto3_stepfunctions import SFNClient

    from activities._activity import Activity
    from activities.client import ActivityClient
    from activities.outcome import Outcome
    from activities.task import Task
    from activities.worker._control import Control
    from activities.worker._heartbeats import Heartbeats, Job
    from activities.worker._recycling import ProcessLife
    from activities.worker._slotstate import Answer

__all__ = ["OUTCOMES_ON_THEIR_WAY", "SlotLoop", "SlotSettings", "outcome_sender"]

logger = logging.getLogger(__name__)

#: Outcomes of one slot on their way at once, at most: the slot takes its next task while
#: the last one's is sent, and waits for the older one when Step Functions is slow.
OUTCOMES_ON_THEIR_WAY = 2


def outcome_sender(slots: int) -> ThreadPoolExecutor:
    """The threads that send the outcomes of ``slots`` slots of one process."""
    return ThreadPoolExecutor(slots + 1, thread_name_prefix="sfn-activities-outcome")


@attrs.frozen
class SlotSettings:
    """What every slot of a worker needs to know; sent to each process slot at its start.

    Attributes:
        by_arn: the activity class served on each activity ARN.
        heartbeat_intervals: seconds between automatic heartbeats, by activity name.
        worker_name: the ``workerName`` of polls.
        client_factory: makes a process slot's client; :func:`make_client` if ``None``.
        max_tasks: a task process is recycled (see
            :class:`~activities.worker._recycling.ProcessLife`) after this many tasks of its
            slots.
        max_memory: a task process is recycled above this many bytes after a task.
        log_plan: how a process slot logs (see :mod:`activities.worker._childlog`).
        metrics_dir: where the processes of a worker with ``metrics_port`` write their
            metrics (see :mod:`activities._ops.prometheus`); ``None`` for none.
        retry: how a process slot's client retries its calls.
        call_timeout: seconds a process slot's client waits for a call that is not a poll.
    """

    by_arn: Mapping[str, type[Activity]]
    heartbeat_intervals: Mapping[str, float | None]
    worker_name: str
    client_factory: Callable[[], SFNClient] | None = None
    max_tasks: int | None = None
    max_memory: int | None = None
    log_plan: LogPlan = attrs.field(factory=LogPlan)
    metrics_dir: str | None = None
    retry: RetryPolicy = attrs.field(factory=RetryPolicy)
    call_timeout: float = CALL_TIMEOUT


class SlotLoop:
    """One slot's life: run the tasks handed to it and deliver their outcomes, until closed.

    Args:
        name: the slot's name, for logs.
        client: the client to heartbeat and report with.
        settings: the worker's settings.
        control: the worker's shared flags.
        answer: who reports the slot's running task (see
            :class:`~activities.worker._slotstate.Answer`).
        heartbeats: the heartbeats of this process.
        freed: tells the worker the slot is free while tasks wait for one.
        position: the slot's place in the worker (0 to slots - 1); a replacement takes
            the place of the slot it replaces.
        life: the slot is in a task process, which may be recycled (see
            :class:`~activities.worker._recycling.ProcessLife`).
        sender: the threads that send the outcomes of the process's slots (see
            :func:`outcome_sender`).
    """

    def __init__(
        self,
        name: str,
        client: ActivityClient,
        *,
        settings: SlotSettings,
        control: Control,
        answer: Answer,
        heartbeats: Heartbeats,
        freed: Callable[[], None] = lambda: None,
        position: int = 0,
        life: ProcessLife | None = None,
        sender: Executor,
    ) -> None:
        self.name = name
        self.position = position
        #: The task running now, if any.
        self.job: Job | None = None
        self._client = client
        self._settings = settings
        self._control = control
        self._answer = answer
        self._heartbeats = heartbeats
        self._freed = freed
        self._life = life
        self._metrics = metrics_of(settings.metrics_dir)
        self._instances: dict[type[Activity], Activity] = {}
        self._inbox: queue.SimpleQueue[tuple[int, Task] | None] = queue.SimpleQueue()
        self._sender = sender
        self._pending: collections.deque[Future[None]] = collections.deque()

    @property
    def answer(self) -> Answer:
        """Who reports the slot's running task."""
        return self._answer

    def run(self) -> str:
        """Run the tasks handed to the slot (in this thread) until it is closed; why it ended."""
        while (handed := self._inbox.get()) is not None:
            self._serve(*handed)
            if self._control.tasks_waiting():
                self._freed()
        self.finish_delivery()
        return "stopped"

    def hand(self, number: int, task: Task) -> None:
        """Run ``task``, the worker's ``number``-th for this slot, next."""
        self._inbox.put((number, task))

    def close(self) -> None:
        """No task comes after those handed: the slot ends once they are done."""
        self._inbox.put(None)

    def finish_delivery(self, timeout: float | None = None) -> None:
        """Wait (up to ``timeout``) until the outcomes on their way are sent."""
        concurrent.futures.wait(list(self._pending), timeout)

    def at_grace(self) -> None:
        """The shutdown grace ended: fail the running task, if any, from here."""
        taken = self._answer.take()
        if taken is None:
            return
        number, task = taken
        failure = shutdown_failure(task, task.activity_name)
        report(
            self._client,
            self._answer,
            number,
            task,
            failure,
            control=self._control,
            metrics=self._metrics,
        )

    # -- the runner -----------------------------------------------------------------------

    def _serve(self, number: int, task: Task) -> None:
        activity = self._settings.by_arn[task.activity_arn]
        self._answer.begin(number, task)
        late = arrived_late(task, activity, self._control)
        if late is not None:
            if self._answer.finish(number):
                self._deliver(number, task, late)
            return
        job = self.job = begin(
            task,
            activity,
            interval=self._settings.heartbeat_intervals[activity.name],
            heartbeats=self._heartbeats,
            metrics=self._metrics,
        )
        try:
            outcome = self._run(job)
        finally:
            self.job = None
        outcome = conclude(job, outcome, heartbeats=self._heartbeats, metrics=self._metrics)
        if self._life is not None:
            self._life.task_done()  # a process to recycle asks the worker for no more tasks
        while self._pending and self._pending[0].done():
            self._pending.popleft()
        if len(self._pending) >= OUTCOMES_ON_THEIR_WAY:
            concurrent.futures.wait([self._pending.popleft()])  # Step Functions is slow
        if not settle(self._answer, number, task, outcome, metrics=self._metrics):
            return
        self._pending.append(self._sender.submit(self._deliver, number, task, outcome))

    def _deliver(self, number: int, task: Task, outcome: Outcome) -> None:
        report(
            self._client,
            self._answer,
            number,
            task,
            outcome,
            control=self._control,
            metrics=self._metrics,
        )

    def _run(self, job: Job) -> Outcome:
        """Run the job's task on the instance of its activity kept for this slot."""
        instance = self._instances.get(job.activity)
        try:
            if instance is None:
                instance = self._instances[job.activity] = job.activity()
            if instance._is_async():
                return self._await(instance, job)
            return _runner.execute(instance, job.task, lambda: self._heartbeats.ask(job))
        except BaseException as exc:  # noqa: BLE001 - a failing __init__, or SystemExit from run()
            return failure_from_exception(exc)

    def _await(self, instance: Activity, job: Job) -> Outcome:
        """Run an async task on this process's event loop; wait here for its outcome.

        It is cancelled at the ``await`` it is in as soon as a heartbeat finds the task
        gone, and once the shutdown grace is over (the worker fails the task then).
        """
        coroutine = _runner.execute_async(instance, job.task, lambda: self._heartbeats.ask(job))
        future = start_on_loop(coroutine, job, self._control)
        concurrent.futures.wait([future])
        outcome = outcome_of(future)
        # Cancelled by the grace's end: failed as the worker would, unless it did first.
        return past_grace(outcome, job, self._control)
