"""What every place that runs a task does around it: log, count, and settle who reports it.

A slot (:mod:`activities.worker._loop`) and an async position (:mod:`activities.worker._asyncslots`)
run tasks differently, in a thread or as a coroutine on the process's loop, but begin
and end each the same way: an INFO line and a count as it starts, heartbeats while it
runs, an INFO line with its outcome and duration as it ends, then the slot's
:class:`~activities.worker._slotstate.Answer` decides whether the slot still answers for the
task (and sends its outcome) or the end of the shutdown grace took it meanwhile
(:class:`GraceWatch`).
"""

from __future__ import annotations

import concurrent.futures
import logging
import threading
import time
from typing import TYPE_CHECKING, Protocol

from activities._ops.metrics import outcome_name
from activities.errors import WorkerShutdown
from activities.outcome import Cancelled, Failure, Success, failure_from_exception
from activities.worker._delivery import deliver
from activities.worker._eventloop import event_loop

if TYPE_CHECKING:
    from collections.abc import Coroutine, Mapping

    from activities._activity import Activity
    from activities._ops.metrics import Metrics
    from activities.client import ActivityClient
    from activities.outcome import Outcome
    from activities.task import Task
    from activities.worker._control import Control
    from activities.worker._heartbeats import Heartbeats, Job
    from activities.worker._slotstate import Answer

__all__ = [
    "AtGrace",
    "GraceWatch",
    "arrived_late",
    "begin",
    "conclude",
    "outcome_of",
    "past_grace",
    "report",
    "settle",
    "shutdown_failure",
    "start_on_loop",
]

logger = logging.getLogger("activities.task")  # one logger, of a short name, for every task line

#: Seconds between two looks at whether the shutdown grace has ended.
GRACE_LOOK = 0.05


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


def settle(answer: Answer, number: int, task: Task, outcome: Outcome, *, metrics: Metrics) -> bool:
    """Task ``number`` returned: the slot is free; whether the slot is to send ``outcome``.

    Nothing is sent for a cancelled task, nor for one its process failed at the end of
    the shutdown grace meanwhile (see :class:`GraceWatch`). The slot's previous outcome
    must be sent already: what the slot reported is one number.
    """
    if not answer.finish(number):
        logger.info(
            "task %s: failed at the end of the shutdown grace; its outcome is dropped",
            task.token_prefix,
        )
        return False
    if isinstance(outcome, Cancelled):
        metrics.task_ended(task, outcome)
        answer.reported(number)
        return False
    return True


def report(
    client: ActivityClient,
    answer: Answer,
    number: int,
    task: Task,
    outcome: Outcome,
    *,
    control: Control,
    metrics: Metrics,
) -> None:
    """Send the outcome the slot took on to send (see :func:`settle`); then it is reported."""
    try:
        deliver(client, task, outcome, give_up=control.give_up, metrics=metrics)
    finally:
        answer.reported(number)


class AtGrace(Protocol):
    """What runs tasks in a process: it fails those still running when the grace ends."""

    def at_grace(self) -> None:
        """Fail the tasks still running with ``WorkerShutdown``; drop what they return."""


class GraceWatch:
    """Waits, in a thread of its own, for the end of the shutdown grace; then fails what runs.

    One per process that runs tasks: past the grace, the worker fails the tasks waiting
    in its buffer, and each process the tasks it runs (their outcomes are dropped when
    they return); then the worker stops the processes. Nothing is decided across
    processes: a task is reported by the process that runs it, or, once that process is
    dead, by the worker.

    Args:
        control: the worker's flags.
    """

    def __init__(self, control: Control) -> None:
        self._control = control
        self._servers: list[AtGrace] = []
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def add(self, server: AtGrace) -> None:
        """Fail ``server``'s running tasks when the grace ends (the first starts the thread)."""
        with self._lock:
            self._servers.append(server)
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._wait, name="sfn-activities-grace", daemon=True
                )
                self._thread.start()

    def forget(self, server: AtGrace) -> None:
        """``server`` ended: let go of it (a unit of the worker's process that is replaced)."""
        with self._lock:
            if server in self._servers:
                self._servers.remove(server)

    def _wait(self) -> None:
        while not self._control.past_deadline.wait(GRACE_LOOK):
            pass
        with self._lock:
            servers = list(self._servers)
        for server in servers:
            try:
                server.at_grace()
            except Exception:
                logger.exception("failing the tasks still running at the grace's end failed")


def shutdown_failure(task: Task, activity_name: str) -> Failure:
    """The failure of a task still running when the shutdown grace ended; said at WARNING."""
    error = WorkerShutdown("the task was still running when the shutdown grace expired")
    logger.warning(
        "task %s of %s failed with %s: %s",
        task.token_prefix,
        activity_name,
        "activities.WorkerShutdown",
        error,
        extra={**fields_of(task), "outcome": "failed", "error": "activities.WorkerShutdown"},
    )
    return failure_from_exception(error)


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
