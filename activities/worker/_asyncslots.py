"""Async positions: many tasks of ``async def run()`` activities at once in one task process.

A task process of a worker that serves an async activity has, besides its slots, N *async
positions*: 100 by default (:data:`~activities.worker._settings.ASYNC_TASKS`), or ``async_tasks=N``
(``--async-tasks N``). A position holds one async task at a time, as a slot does, and the
worker keeps its record (:class:`~activities.worker._slotstate.SlotState`) as for a slot: it hands
it tasks, and fails with ``WorkerCrashed`` what it held if the process dies. What a
position has not is threads: :class:`AsyncSlots` serves all of a process's positions with

- the thread that receives the tasks the worker hands over, which starts each coroutine
  on the process's event loop (:mod:`activities.worker._eventloop`) at once;
- a small pool of *outcome* threads, which send what each coroutine returns.

Nothing of the framework blocks the loop: outcomes and heartbeats are calls of the
process's :class:`~activities.ActivityClient` in those threads. A coroutine is cancelled
at the ``await`` it is in when a heartbeat finds its task gone, and past the shutdown
grace (its task then fails with ``activities.WorkerShutdown``).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

from activities import _runner
from activities._ops.processmetrics import metrics_of
from activities.outcome import Failure, failure_from_exception
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
    import concurrent.futures
    from collections.abc import Callable, Coroutine, Sequence

    from activities._activity import Activity
    from activities.client import ActivityClient
    from activities.outcome import Outcome
    from activities.task import Task
    from activities.worker._control import Control
    from activities.worker._heartbeats import Heartbeats, Job
    from activities.worker._loop import SlotSettings
    from activities.worker._recycling import ProcessLife
    from activities.worker._slotstate import Answer

__all__ = ["ASYNC_THREADS", "AsyncSlots", "async_threads"]

logger = logging.getLogger(__name__)

#: Outcome threads of one process's async positions, at most: at a 20 ms round trip, 16
#: of them send 800 outcomes a second.
ASYNC_THREADS = 16

#: Seconds between two looks at whether every position is closed and done.
ENDED_LOOK = 0.05


def async_threads(positions: int) -> int:
    """How many outcome threads serve ``positions``."""
    return max(1, min(positions, ASYNC_THREADS))


class AsyncSlots:
    """The async positions of one task process: run their coroutines, report them.

    Args:
        name: the positions' name, for logs and thread names.
        client: the client to heartbeat and report with.
        settings: the worker's settings.
        control: the worker's shared flags.
        positions: each position's name, its place in ``control``, and who reports its task.
        heartbeats: the heartbeats of this process.
        freed: tells the worker a position is free while tasks wait for one.
        life: the process may be recycled (see :class:`~activities.worker._recycling.ProcessLife`).
    """

    def __init__(
        self,
        name: str,
        client: ActivityClient,
        *,
        settings: SlotSettings,
        control: Control,
        positions: Sequence[tuple[str, int, Answer]],
        heartbeats: Heartbeats,
        freed: Callable[[], None] = lambda: None,
        life: ProcessLife | None = None,
    ) -> None:
        self.name = name
        self._client = client
        self._settings = settings
        self._control = control
        self._answers = {position: answer for _, position, answer in positions}
        self._heartbeats = heartbeats
        self._freed = freed
        self._life = life
        self._metrics = metrics_of(settings.metrics_dir)
        self._changed = threading.Condition()
        self._closed: set[int] = set()
        self._jobs: dict[int, Job] = {}
        self._stuck: set[int] = set()
        self._reporting = {position: threading.Lock() for position in self._answers}
        self._instances: dict[tuple[int, type[Activity]], Activity] = {}
        self._sender = ThreadPoolExecutor(
            async_threads(len(self._answers)), thread_name_prefix="sfn-activities-outcome"
        )

    @property
    def positions(self) -> Sequence[int]:
        """The positions served, in ``control``."""
        return tuple(self._answers)

    @property
    def stuck(self) -> bool:
        """Whether a task found gone went on running past its cancellation (see :meth:`give_up`)."""
        return bool(self._stuck)

    def run(self) -> str:
        """Serve the positions until every one is closed; why it ended.

        Returns once every coroutine has ended and its outcome been sent (a stuck one,
        or one failed at the end of the grace, excepted).
        """
        with self._changed:
            while not self._ended():
                self._changed.wait(ENDED_LOOK)
        self._sender.shutdown(wait=True)
        return "stopped"

    def close(self, position: int) -> None:
        """No task comes to ``position`` after those handed to it."""
        with self._changed:
            self._closed.add(position)
            self._changed.notify_all()

    def give_up(self, job: Job) -> bool:
        """``job``'s task was found gone and runs on: let it, but answer for it no more.

        ``False`` if it is not a task of these positions. The process is to be replaced
        once the other tasks are done.
        """
        with self._changed:
            position = next((at for at, each in self._jobs.items() if each is job), None)
            if position is None:
                return False
            self._stuck.add(position)
            taken = self._answers[position].take()
            if taken is not None:
                self._answers[position].reported(taken[0])  # nobody is to report it
            self._changed.notify_all()
        return True

    def at_grace(self) -> None:
        """The shutdown grace ended: fail the tasks still running, from here."""
        for position, answer in self._answers.items():
            taken = answer.take()
            if taken is not None:
                self._submit(self._fail_at_grace, position, *taken)

    def _fail_at_grace(self, position: int, number: int, task: Task) -> None:
        failure = shutdown_failure(task, task.activity_name)
        with self._reporting[position]:
            self._deliver(position, number, task, failure)

    def _ended(self) -> bool:
        """Whether every position is closed and done (called under ``_changed``).

        Done: it runs nothing, or a task it answers for no more (given up, or failed at
        the end of the shutdown grace: its coroutine may ignore its cancellation), and
        no outcome is being sent.
        """
        if len(self._closed) < len(self._answers):
            return False
        return not any(
            answer.running() is not None or self._reporting[position].locked()
            for position, answer in self._answers.items()
        )

    # -- running a task -------------------------------------------------------------------

    def hand(self, position: int, number: int, task: Task) -> None:
        """Start ``task``, the worker's ``number``-th for ``position``, on the loop now."""
        activity = self._settings.by_arn[task.activity_arn]
        answer = self._answers[position]
        answer.begin(number, task)
        late = arrived_late(task, activity, self._control)
        if late is not None:
            self._submit(self._report_late, position, number, task, late)
            return
        job = begin(
            task,
            activity,
            interval=self._settings.heartbeat_intervals[activity.name],
            heartbeats=self._heartbeats,
            metrics=self._metrics,
        )
        with self._changed:
            self._jobs[position] = job
        try:
            coroutine = self._coroutine(position, job)
        except BaseException as exc:  # noqa: BLE001 - a failing __init__ fails the task
            self._submit(self._finish, position, number, job, failure_from_exception(exc))
            return
        future = start_on_loop(coroutine, job, self._control)
        future.add_done_callback(functools.partial(self._ended_task, position, number, job))

    def _coroutine(self, position: int, job: Job) -> Coroutine[object, object, Outcome]:
        key = (position, job.activity)
        instance = self._instances.get(key)
        if instance is None:
            instance = self._instances[key] = job.activity()
        heartbeat = functools.partial(self._heartbeats.ask, job)
        if instance._is_async():
            return _runner.execute_async(instance, job.task, heartbeat)
        # Not handed here by the worker (it keeps sync tasks to slots); run it all the same.
        return asyncio.to_thread(_runner.execute, instance, job.task, heartbeat)

    def _ended_task(
        self, position: int, number: int, job: Job, future: concurrent.futures.Future[object]
    ) -> None:
        """The coroutine ended (called in the loop's thread): report it from an outcome thread."""
        result = outcome_of(future)
        try:
            self._submit(self._finish, position, number, job, result)
        except RuntimeError:  # a task given up that ended after the positions did
            logger.debug("task %s ended after its process's positions", job.task.token_prefix)

    def _submit(self, function: Callable[..., None], *args: object) -> None:
        """Run ``function`` in an outcome thread; an error it raises is logged."""
        self._sender.submit(function, *args).add_done_callback(_log_failure)

    def _finish(self, position: int, number: int, job: Job, outcome: Outcome) -> None:
        answer = self._answers[position]
        settled = False
        try:
            # Cancelled by the grace's end: failed as the worker would, unless it did first.
            outcome = past_grace(outcome, job, self._control)
            outcome = conclude(job, outcome, heartbeats=self._heartbeats, metrics=self._metrics)
            if self._life is not None:
                self._life.task_done()
            with self._changed:
                self._jobs.pop(position, None)
                self._stuck.discard(position)
            # One outcome in flight per position: a task handed over as this one's outcome
            # goes may end before it is sent.
            with self._reporting[position]:
                settled = True
                if settle(answer, number, job.task, outcome, metrics=self._metrics):
                    self._deliver(position, number, job.task, outcome)
        finally:
            if not settled:
                # The framework failed before its report: the position is not lost with it;
                # the task is left to its timeout in Step Functions.
                logger.error(
                    "task %s was not reported; its position is freed", job.task.token_prefix
                )
                with self._changed:
                    self._jobs.pop(position, None)
                answer.finish(number)
                answer.reported(number)
            self._freed_position()

    def _report_late(self, position: int, number: int, task: Task, failure: Failure) -> None:
        answer = self._answers[position]
        try:
            with self._reporting[position]:
                if answer.finish(number):
                    self._deliver(position, number, task, failure)
        finally:
            self._freed_position()

    def _deliver(self, position: int, number: int, task: Task, outcome: Outcome) -> None:
        report(
            self._client,
            self._answers[position],
            number,
            task,
            outcome,
            control=self._control,
            metrics=self._metrics,
        )

    def _freed_position(self) -> None:
        with self._changed:
            self._changed.notify_all()
        if self._control.tasks_waiting():
            self._freed()

    def __repr__(self) -> str:
        return f"<AsyncSlots {self.name} x {len(self._answers)}>"


def _log_failure(future: concurrent.futures.Future[None]) -> None:
    """Log what an outcome thread's work raised (the framework's error, not a task's)."""
    error = future.exception()
    if error is not None:
        logger.error("reporting an async task failed", exc_info=error)
