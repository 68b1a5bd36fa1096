"""A slot's life: poll for tasks, run them with heartbeats, deliver their outcomes.

:class:`SlotLoop` is the same in a task process and in a thread of the worker's process
(:mod:`activities._slot` starts it in either). It has two threads: the *poller*
long-polls a busy task list whenever the slot is free (see
:meth:`~activities._control.Control.choose`) and runs the task its poll brings at once,
in its own thread; the *runner* runs the tasks the worker hands over from its buffer
(:mod:`activities._handoff`), which a poll elsewhere brought. The slot runs one task at a
time either way, and never in a process's main thread. A task the slot's own poll brings
while the slot was handed one meanwhile goes to that buffer. A slot in a process of its
own sends an outcome from a thread while it already polls for its next task: at a real
network round trip that doubles what one process serves.
"""

from __future__ import annotations

import concurrent.futures
import logging
import queue
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING

import attrs

from activities import _runner
from activities._childlog import LogPlan
from activities._poll import poll_once
from activities._processmetrics import metrics_of
from activities._retry import RetryPolicy
from activities._serving import (
    arrived_late,
    begin,
    conclude,
    outcome_of,
    past_grace,
    report,
    settle,
    start_on_loop,
)
from activities._sfnclient import CALL_TIMEOUT
from activities.outcome import failure_from_exception

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence

    from mypy_boto3_stepfunctions import SFNClient

    from activities._activity import Activity
    from activities._control import Control
    from activities._heartbeats import Heartbeats, Job
    from activities._recycling import ProcessLife
    from activities._slotstate import SlotState
    from activities.client import ActivityClient
    from activities.outcome import Outcome
    from activities.task import Task

__all__ = ["SlotLoop", "SlotSettings"]

logger = logging.getLogger(__name__)

#: Seconds a free slot waits before it looks again for a task list that needs a poll.
IDLE_WAIT = 0.05

#: Seconds a free slot waits for a task the worker is handing over before it polls.
HANDOFF_WAIT = 0.005


@attrs.frozen
class SlotSettings:
    """What every slot of a worker needs to know; sent to each process slot at its start.

    Attributes:
        by_arn: the activity class served on each activity ARN.
        heartbeat_intervals: seconds between automatic heartbeats, by activity name.
        worker_name: the ``workerName`` of polls.
        client_factory: makes a process slot's client; :func:`make_client` if ``None``.
        max_tasks: a task process is recycled (see :class:`~activities._recycling.ProcessLife`)
            after this many tasks of its slots.
        max_memory: a task process is recycled above this many bytes after a task.
        log_plan: how a process slot logs (see :mod:`activities._childlog`).
        metrics_dir: where the processes of a worker with ``metrics_port`` write their
            metrics (see :mod:`activities._prometheus`); ``None`` for none.
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
    """One slot's life: poll, run, deliver, until the worker stops (or its process recycles).

    Args:
        name: the slot's name, for logs.
        client: the client to poll and report with.
        settings: the worker's settings.
        control: the worker's shared flags.
        state: where the slot shows the task it answers for.
        heartbeats: the heartbeats of this process.
        overflow: takes a task the slot's own poll brought while the slot was busy (it
            goes to the worker's hand-off buffer).
        freed: tells the worker the slot is free while tasks wait for one.
        position: the slot's place in the worker (0 to slots - 1); a replacement takes
            the place of the slot it replaces.
        life: the slot is in a task process, which may be recycled: then the slot takes
            no new task and ends.
        send_in_background: send an outcome from a thread while polling for the next
            task (a slot alone in its process: its two round trips overlap).
        among: the task lists (indices in ``control``) the slot polls, ``None`` for all:
            beside async positions, those of sync activities only.
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
        overflow: Callable[[Task, int], None],
        freed: Callable[[], None] = lambda: None,
        position: int = 0,
        life: ProcessLife | None = None,
        send_in_background: bool = False,
        among: Sequence[int] | None = None,
    ) -> None:
        self.name = name
        self.position = position
        self.state = state
        #: The task running now, if any.
        self.job: Job | None = None
        self._client = client
        self._settings = settings
        self._control = control
        self._state = state
        self._heartbeats = heartbeats
        self._overflow = overflow
        self._freed = freed
        self._position = position
        self._index = {arn: index for index, arn in enumerate(control.arns)}
        self._turn = position  # where choosing a task list starts: slots spread out
        self._among = among
        self._life = life
        self._metrics = metrics_of(settings.metrics_dir)
        self._instances: dict[type[Activity], Activity] = {}
        self._inbox: queue.SimpleQueue[Task | None] = queue.SimpleQueue()
        self._changed = threading.Condition()
        self._poller: threading.Thread | None = None
        self._expected = False  # waited once for a task being handed over
        self._reason = "stopped"
        # A slot alone in its process sends an outcome from a thread while it polls for the
        # next task: the two round trips overlap. Slots with others around them need not.
        self._sender = (
            ThreadPoolExecutor(1, thread_name_prefix="sfn-activities-outcome")
            if send_in_background
            else None
        )
        self._pending: Future[None] | None = None

    def run(self) -> str:
        """Run the slot's tasks (in this thread) until it ends; why it ended.

        The poller runs in a thread of its own; it ends when the worker stops or the
        slot is worn out, and the runner ends once no task can reach the slot any more.
        """
        self._poller = threading.Thread(
            target=self._poll_loop, name=f"sfn-activities-{self.name}-poll", daemon=True
        )
        self._poller.start()
        ended = False
        while True:
            task = self._inbox.get()
            if task is None:
                ended = True
            else:
                self._run_here(task)
            # After the poller's end, a task the worker handed over may still be on its way.
            if ended and (self._state.free() or self._state.retired()):
                break
        self.finish_delivery()
        return self._reason

    def _run_here(self, task: Task) -> None:
        """Run a task the slot holds in this thread; then the slot is free."""
        self._serve(task)
        self._notify()
        if self._control.tasks_waiting():
            self._freed()

    def hand(self, task: Task) -> None:
        """Run ``task`` next; the slot holds it already (see ``SlotState.try_hold``)."""
        self._inbox.put(task)
        self._notify()

    def finish_delivery(self, timeout: float | None = None) -> None:
        """Wait (up to ``timeout``) until the outcome sent in the background is sent."""
        if self._pending is not None:
            concurrent.futures.wait([self._pending], timeout)

    # -- the poller -----------------------------------------------------------------------

    def _poll_loop(self) -> None:
        try:
            while not self._control.stopping.is_set():
                if self._life is not None and self._life.recycling.is_set():
                    self._state.retire()  # unless it runs a task: then once it is free
                if self._state.retired():
                    self._reason = "worn out"  # see _serve
                    return
                if not self._state.free():
                    self._idle()
                    continue
                if self._control.tasks_waiting() and not self._expected:
                    # A waiting task is about to be handed to a free slot, maybe this one:
                    # a poll now could bring a second task with nowhere to go.
                    self._expected = True
                    self._idle(HANDOFF_WAIT)
                    continue
                self._expected = False
                index = self._control.choose(self._turn, self._among)
                self._turn += 1
                if index < 0:
                    self._idle()
                elif (task := self._poll(index)) is not None:
                    self._run_here(task)
            # Stopping: tasks in the worker's buffer may still come here, until it is empty.
            while not (self._control.drained.is_set() or self._control.past_deadline.is_set()):
                self._control.drained.wait(IDLE_WAIT)
        except Exception:
            logger.exception("%s: the poller failed; the slot ends", self.name)
            self._reason = "poller failed"
            self._state.retire()
            if self._life is not None:
                # Its process is replaced as a whole, once its other slots are done.
                self._life.recycle(f"{self.name} ended: replacing its process")
        finally:
            self._inbox.put(None)

    def _idle(self, timeout: float = IDLE_WAIT) -> None:
        with self._changed:
            self._changed.wait(timeout)

    def _notify(self) -> None:
        with self._changed:
            self._changed.notify_all()

    def _poll(self, index: int) -> Task | None:
        """Long-poll task list ``index`` once, if the slot is still free to.

        The task it brings is held by the slot; returned if it is to run in this thread.
        """
        return poll_once(
            self._client,
            self._control,
            self._state,
            self._position,
            index,
            metrics=self._metrics,
            overflow=self._overflow,
        )

    # -- the runner -----------------------------------------------------------------------

    def _serve(self, task: Task) -> None:
        activity = self._settings.by_arn[task.activity_arn]
        late = arrived_late(task, activity, self._control)
        if late is not None:
            self.finish_delivery()
            if self._state.start_delivering():
                self._deliver(task, late)
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
        # A slot of a process being recycled is retired as it frees, so that no task is
        # handed to it after.
        retire = self._life is not None and self._life.task_done()
        self.finish_delivery()  # one outcome in flight at most
        if not settle(self._state, task, outcome, retire=retire, metrics=self._metrics):
            return
        if self._sender is None:
            self._deliver(task, outcome)
        else:
            self._pending = self._sender.submit(self._deliver, task, outcome)

    def _deliver(self, task: Task, outcome: Outcome) -> None:
        report(
            self._client, self._state, task, outcome, control=self._control, metrics=self._metrics
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
