"""What every place that runs a task does around it: log, count, and settle who reports it.

A slot (:mod:`activities._loop`) and an async position (:mod:`activities._asyncslots`)
run tasks differently, in a thread or as a coroutine on the process's loop, but begin
and end each the same way: an INFO line and a count as it starts, heartbeats while it
runs, an INFO line with its outcome and duration as it ends, then the slot's
:class:`~activities._slotstate.SlotState` decides whether the slot still answers for the
task (and sends its outcome) or the worker took it meanwhile.
"""

from __future__ import annotations

import concurrent.futures
import logging
import time
from typing import TYPE_CHECKING

from activities._delivery import deliver
from activities._eventloop import event_loop
from activities._metrics import outcome_name
from activities.errors import WorkerShutdown
from activities.outcome import Cancelled, Failure, Success, failure_from_exception

if TYPE_CHECKING:
    from collections.abc import Coroutine, Mapping

    from activities._activity import Activity
    from activities._control import Control
    from activities._heartbeats import Heartbeats, Job
    from activities._metrics import Metrics
    from activities._slotstate import SlotState
    from activities.client import ActivityClient
    from activities.outcome import Outcome
    from activities.task import Task

__all__ = [
    "arrived_late",
    "begin",
    "conclude",
    "outcome_of",
    "past_grace",
    "report",
    "settle",
    "start_on_loop",
]

logger = logging.getLogger("activities._loop")  # one logger for the lines of every task


def fields_of(task: Task) -> dict[str, object]:
    """The structured fields of a task's log lines."""
    return {"activity": task.activity_name, "token_prefix": task.token_prefix}


def arrived_late(task: Task, activity: type[Activity], control: Control) -> Failure | None:
    """The failure of a task that reached its slot after the shutdown grace, or ``None``."""
    if not control.past_deadline.is_set():
        return None
    error = WorkerShutdown("the task arrived after the worker's shutdown grace")
    logger.warning(
        "task %s: %s: %s", task.token_prefix, activity.name, error, extra=fields_of(task)
    )
    return failure_from_exception(error)


def begin(
    task: Task,
    activity: type[Activity],
    *,
    interval: float | None,
    heartbeats: Heartbeats,
    metrics: Metrics,
) -> Job:
    """Say the task starts, count it, and start its heartbeats; its job."""
    logger.info("task %s started: %s", task.token_prefix, activity.name, extra=fields_of(task))
    job = heartbeats.begin(task, activity, interval)
    metrics.task_started(task)
    return job


def start_on_loop(
    coroutine: Coroutine[object, object, Outcome], job: Job, control: Control
) -> concurrent.futures.Future[object]:
    """Start an async task's coroutine on this process's loop; its outcome's future.

    It is cancelled at the ``await`` it is in as soon as a heartbeat finds the task gone,
    and once the shutdown grace is over (see :func:`past_grace`).
    """
    running = event_loop().start(
        coroutine,
        f"task {job.task.token_prefix} of {job.activity.name}",
        cancel_when=control.past_deadline,
    )
    job.on_gone = running.cancel
    if job.gone_at is not None:  # found gone before the hook was set
        running.cancel()
    assert running.future is not None  # noqa: S101 - started
    return running.future


def outcome_of(future: concurrent.futures.Future[object]) -> Outcome:
    """The outcome of a coroutine started by :func:`start_on_loop`, once it is done."""
    try:
        outcome = future.result()
    except concurrent.futures.CancelledError:
        return Cancelled("the task's coroutine was cancelled before it started")
    except BaseException as exc:  # noqa: BLE001 - execute_async returns its failures
        return failure_from_exception(exc)
    assert isinstance(outcome, Success | Failure | Cancelled)  # noqa: S101
    return outcome


def past_grace(outcome: Outcome, job: Job, control: Control) -> Outcome:
    """What an async task cancelled by the end of the shutdown grace reports: a failure.

    Any other outcome, or the cancellation of a task found gone, stays as it is.
    """
    if isinstance(outcome, Cancelled) and job.gone_at is None and control.past_deadline.is_set():
        error = WorkerShutdown("the task was still running when the shutdown grace expired")
        return failure_from_exception(error)
    return outcome


def conclude(job: Job, outcome: Outcome, *, heartbeats: Heartbeats, metrics: Metrics) -> Outcome:
    """Stop the job's heartbeats, count it and say how it ended; the outcome to report.

    A task found gone meanwhile is :class:`Cancelled`, whatever ``run()`` returned.
    """
    heartbeats.end(job)
    if job.gone_at is not None and not isinstance(outcome, Cancelled):
        outcome = Cancelled("the task was gone before it ended")
    seconds = time.monotonic() - job.started
    metrics.task_ran(job.task, seconds)
    _log_end(job, outcome, seconds, fields_of(job.task))
    return outcome


def settle(
    state: SlotState, task: Task, outcome: Outcome, *, retire: bool, metrics: Metrics
) -> bool:
    """Free the slot of ``task``; whether the slot is to send ``outcome`` now.

    Nothing is sent for a cancelled task, nor for one the worker took (it failed it at
    the shutdown grace). With ``retire`` the slot ends instead of being free. The slot's
    previous outcome must be sent already (a state has one place for it).
    """
    if isinstance(outcome, Cancelled):
        metrics.task_ended(task, outcome)
        state.release(retire=retire)
        return False
    if not state.start_delivering(retire=retire):
        logger.info(
            "task %s: the worker failed it at shutdown; its outcome is dropped",
            task.token_prefix,
        )
        return False
    return True


def report(
    client: ActivityClient,
    state: SlotState,
    task: Task,
    outcome: Outcome,
    *,
    control: Control,
    metrics: Metrics,
) -> None:
    """Send the outcome the slot took on to send (see :func:`settle`); then it is sent."""
    try:
        deliver(client, task, outcome, give_up=control.give_up, metrics=metrics)
    finally:
        state.done_delivering()


def _log_end(job: Job, outcome: Outcome, seconds: float, fields: Mapping[str, object]) -> None:
    name = outcome_name(outcome)
    extra = {**fields, "outcome": name, "duration": round(seconds, 6)}
    result = name
    if isinstance(outcome, Failure):
        result = f"failed with {outcome.error}"
        extra["error"] = outcome.error
    logger.info(
        "task %s %s: %s in %.3f s",
        job.task.token_prefix,
        result,
        job.activity.name,
        seconds,
        extra=extra,
    )
