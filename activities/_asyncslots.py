"""Async positions: many tasks of ``async def run()`` activities at once in one task process.

A task process of a worker that serves an async activity has, besides its slots, N *async
positions*: 100 by default (:data:`~activities._settings.ASYNC_TASKS`), or ``async_tasks=N``
(``--async-tasks N``). A position holds one async task at a time, as a slot does, and has a
:class:`~activities._slotstate.SlotState` the worker sees, so that a crash, a stop or a
task handed over from the worker's buffer are handled as for a slot. What a position has
not is threads: :class:`AsyncSlots` serves all of a process's positions with

- a few *poller* threads, which long-poll the busy task lists of async activities for
  whichever position is free and start the coroutine a poll brings on the process's
  event loop (:mod:`activities._eventloop`) at once;
- the thread that receives the tasks the worker hands over, which starts them the same
  way (a position in a long poll takes a handed task at once: its poll's task, if it
  brings one, goes back to the worker's buffer);
- a small pool of *outcome* threads, which send what each coroutine returns.

Nothing of the framework blocks the loop: polls, outcomes and heartbeats are calls of the
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
from activities._loop import HANDOFF_WAIT, IDLE_WAIT
from activities._poll import poll_once, task_lists_of
from activities._processmetrics import metrics_of
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
from activities.outcome import Failure, failure_from_exception

if TYPE_CHECKING:
    import concurrent.futures
    from collections.abc import Callable, Coroutine, Sequence

    from activities._activity import Activity
    from activities._control import Control
    from activities._heartbeats import Heartbeats, Job
    from activities._loop import SlotSettings
    from activities._recycling import ProcessLife
    from activities._slotstate import SlotState
    from activities.client import ActivityClient
    from activities.outcome import Outcome
    from activities.task import Task

__all__ = ["ASYNC_POLLERS", "AsyncSlots", "async_threads"]

logger = logging.getLogger(__name__)

#: Poller threads (and outcome threads) of one process's async positions, at most: at a
#: 20 ms round trip, 16 of them keep up with 800 tasks a second.
ASYNC_POLLERS = 16


def async_threads(positions: int) -> int:
    """How many poller threads, and how many outcome threads, serve ``positions``."""
    return max(1, min(positions, ASYNC_POLLERS))


class AsyncSlots:
    """The async positions of one task process: poll for them, run their coroutines, report.

    Args:
        name: the positions' name, for logs and thread names.
        client: the client to poll and report with.
        settings: the worker's settings.
        control: the worker's shared flags.
        positions: each position's name, its place in ``control``, and its state.
        heartbeats: the heartbeats of this process.
        overflow: takes a task a poll brought for a position handed one meanwhile (it
            goes to the worker's hand-off buffer).
        freed: tells the worker a position is free while tasks wait for one.
        life: the process may be recycled: then positions take no new task, and
            :meth:`run` ends once none runs one.
    """

    def __init__(
        self,
        name: str,
        client: ActivityClient,
        *,
        settings: SlotSettings,
        control: Control,
        positions: Sequence[tuple[str, int, SlotState]],
        heartbeats: Heartbeats,
        overflow: Callable[[Task, int], None],
        freed: Callable[[], None] = lambda: None,
        life: ProcessLife | None = None,
    ) -> None:
        self.name = name
        self._client = client
        self._settings = settings
        self._control = control
        self._states = {position: state for _, position, state in positions}
        self._heartbeats = heartbeats
        self._overflow = overflow
        self._freed = freed
        self._life = life
        self._metrics = metrics_of(settings.metrics_dir)
        #: Task lists the pollers may poll: those of async activities.
        self._among = task_lists_of(control, settings.by_arn, asynchronous=True)
        self._changed = threading.Condition()
        # Positions free for a poll; the last freed is taken first (dict order), so that
        # the positions that poll are few and the others stay free for handed tasks.
        self._free: dict[int, None] = dict.fromkeys(reversed(self._states))
        self._polling: set[int] = set()  # positions a poller holds, not free to another
        self._jobs: dict[int, Job] = {}
        self._stuck: set[int] = set()
        self._reporting = {position: threading.Lock() for position in self._states}
        self._instances: dict[tuple[int, type[Activity]], Activity] = {}
        threads = async_threads(len(self._states))
        self._pollers = [
            threading.Thread(
                target=self._poll_loop, name=f"sfn-activities-{name}-poll-{number}", daemon=True
            )
            for number in range(1, threads + 1)
        ]
        self._sender = ThreadPoolExecutor(threads, thread_name_prefix="sfn-activities-outcome")
        self._reason = "stopped"

    @property
    def positions(self) -> Sequence[int]:
        """The positions served, in ``control``."""
        return tuple(self._states)

    @property
    def stuck(self) -> bool:
        """Whether a task found gone went on running past its cancellation (see :meth:`give_up`)."""
        return bool(self._stuck)

    def run(self) -> str:
        """Serve the positions until the worker stops or the process is recycled; why it ended.

        Returns once the pollers ended, no task can reach a position any more, and every
        coroutine has ended and its outcome been sent (a stuck one excepted).
        """
        for poller in self._pollers:
            poller.start()
        for poller in self._pollers:
            poller.join()
        # Stopping: tasks in the worker's buffer may still come here, until it is empty.
        while self._control.stopping.is_set() and not (
            self._control.drained.is_set() or self._control.past_deadline.is_set()
        ):
            self._control.drained.wait(IDLE_WAIT)
        # No position takes a task from now on: each retires once its task is done.
        with self._changed:
            while not self._retired_all():
                self._changed.wait(IDLE_WAIT)
        self._sender.shutdown(wait=True)
        return self._reason

    def give_up(self, job: Job) -> bool:
        """``job``'s task was found gone and runs on: let it, but answer for it no more.

        ``False`` if it is not a task of these positions. Its position is taken by
        nobody again; the process is to be replaced once the other tasks are done.
        """
        with self._changed:  # the job stays its position's while its task is taken
            position = next((at for at, each in self._jobs.items() if each is job), None)
            if position is None:
                return False
            self._stuck.add(position)
            self._states[position].take(delivering=False, token=job.task.token)
            self._changed.notify_all()
        return True

    # -- the pollers ----------------------------------------------------------------------

    def _retired_all(self) -> bool:
        """Retire every free position; whether all are done (called under ``_changed``).

        Done: retired, or running a task the worker answers for already (given up, or
        taken at the end of the shutdown grace: its coroutine may ignore its
        cancellation), and no outcome is being sent.
        """
        done = True
        for position, state in self._states.items():
            if position in self._polling:
                done = False  # its poll's task, if any, goes to the worker's buffer
            elif state.retire() or state.retired() or state.running_taken():
                self._free.pop(position, None)
            elif position not in self._stuck:
                done = False
        return done and not any(lock.locked() for lock in self._reporting.values())

    def _poll_loop(self) -> None:
        control = self._control
        turn = 0
        expected = False  # waited once for a task being handed over
        try:
            while not control.stopping.is_set():
                if self._life is not None and self._life.recycling.is_set():
                    with self._changed:
                        if self._retired_all():
                            self._reason = "worn out"
                            return
                if control.tasks_waiting() and not expected:
                    # A waiting task is about to be handed to a free position, maybe one
                    # this poller would poll for: a poll now could bring a second task
                    # with nowhere to go.
                    expected = True
                    self._idle(HANDOFF_WAIT)
                    continue
                expected = False
                index = control.choose(turn, self._among)
                turn += 1
                if index < 0:
                    self._idle()  # no busy task list: the worker's own polls cover them
                    continue
                position = self._take_free()
                if position is None:
                    self._idle()  # every position runs a task
                    continue
                try:
                    task = poll_once(
                        self._client,
                        control,
                        self._states[position],
                        position,
                        index,
                        metrics=self._metrics,
                        overflow=self._overflow,
                    )
                finally:
                    self._done_polling(position)
                if task is not None:
                    self.hand(position, task)
        except Exception:
            logger.exception("%s: a poller failed", self.name)
            self._reason = "poller failed"
            if self._life is not None:
                # Its positions take no new task; the process ends once their tasks are done.
                self._life.recycle(f"{self.name}: a poller failed: replacing its process")

    def _take_free(self) -> int | None:
        """A free position for a poll, held by this poller until :meth:`_done_polling`."""
        with self._changed:
            if self._life is not None and self._life.recycling.is_set():
                return None  # no new poll: the positions retire
            while self._free:
                position, _ = self._free.popitem()
                if self._states[position].free():
                    self._polling.add(position)
                    return position
                # Held meanwhile: by a task handed over, or retired. Back once it frees.
            return None

    def _done_polling(self, position: int) -> None:
        """The poll for ``position`` ended: it is free for the next, unless it holds a task.

        No poller is woken: a position put back after a poll that brought nothing is no
        news to the others.
        """
        with self._changed:
            self._polling.discard(position)
            if self._states[position].free():
                self._free[position] = None

    def _idle(self, timeout: float = IDLE_WAIT) -> None:
        with self._changed:
            self._changed.wait(timeout)

    # -- running a task -------------------------------------------------------------------

    def hand(self, position: int, task: Task) -> None:
        """Start ``task``'s coroutine on the loop now (or report it); ``position`` holds it."""
        activity = self._settings.by_arn[task.activity_arn]
        with self._changed:
            self._free.pop(position, None)
        late = arrived_late(task, activity, self._control)
        if late is not None:
            self._submit(self._report_late, position, task, late)
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
            self._submit(self._finish, position, job, failure_from_exception(exc))
            return
        future = start_on_loop(coroutine, job, self._control)
        future.add_done_callback(functools.partial(self._ended, position, job))

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

    def _ended(self, position: int, job: Job, future: concurrent.futures.Future[object]) -> None:
        """The coroutine ended (called in the loop's thread): report it from an outcome thread."""
        result = outcome_of(future)
        try:
            self._submit(self._finish, position, job, result)
        except RuntimeError:  # a task given up that ended after the positions did
            logger.debug("task %s ended after its process's positions", job.task.token_prefix)

    def _submit(self, function: Callable[..., None], *args: object) -> None:
        """Run ``function`` in an outcome thread; an error it raises is logged."""
        self._sender.submit(function, *args).add_done_callback(_log_failure)

    def _finish(self, position: int, job: Job, outcome: Outcome) -> None:
        state = self._states[position]
        settled = False
        try:
            # Cancelled by the grace's end: failed as the worker would, unless it did first.
            outcome = past_grace(outcome, job, self._control)
            outcome = conclude(job, outcome, heartbeats=self._heartbeats, metrics=self._metrics)
            retire = self._life is not None and self._life.task_done()
            with self._changed:
                self._jobs.pop(position, None)
                self._stuck.discard(position)
            # One outcome in flight per position: a task handed over as this one's outcome
            # goes may end before it is sent.
            with self._reporting[position]:
                settled = True
                if settle(state, job.task, outcome, retire=retire, metrics=self._metrics):
                    self._deliver(state, job.task, outcome)
        finally:
            if not settled:
                # The framework failed before its report: the position is not lost with it;
                # the task is left to its timeout in Step Functions.
                logger.error(
                    "task %s was not reported; its position is freed", job.task.token_prefix
                )
                with self._changed:
                    self._jobs.pop(position, None)
                state.release()
            self._freed_position(position)

    def _report_late(self, position: int, task: Task, failure: Failure) -> None:
        state = self._states[position]
        try:
            with self._reporting[position]:
                if state.start_delivering():
                    self._deliver(state, task, failure)
        finally:
            self._freed_position(position)

    def _deliver(self, state: SlotState, task: Task, outcome: Outcome) -> None:
        report(self._client, state, task, outcome, control=self._control, metrics=self._metrics)

    def _freed_position(self, position: int) -> None:
        with self._changed:
            # One whose poll is still open goes back when that poll returns.
            if position not in self._polling and self._states[position].free():
                self._free[position] = None
            self._changed.notify()  # one poller: the position is one poll's
        if self._control.tasks_waiting():
            self._freed()

    def __repr__(self) -> str:
        return f"<AsyncSlots {self.name} x {len(self._states)}>"


def _log_failure(future: concurrent.futures.Future[None]) -> None:
    """Log what an outcome thread's work raised (the framework's error, not a task's)."""
    error = future.exception()
    if error is not None:
        logger.error("reporting an async task failed", exc_info=error)
