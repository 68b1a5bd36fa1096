"""Running one task to its outcome: decode the input, call run(), encode the result.

Shared by every way of running a task (the worker, ``ActivityClient.process`` and
``activities.testing``), so that they all map input, errors and output the same way. An
``async def run()`` is awaited by :func:`execute_async`, on whichever loop runs it.
:func:`process` is ``ActivityClient.process``: a task run here, then its outcome sent.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

from activities._activity import cadence
from activities._ops import tracing
from activities.errors import (
    ActivityDefinitionError,
    ActivityError,
    InvalidInput,
    InvalidOutput,
    ServiceError,
    TaskCancelled,
    TaskGone,
)
from activities.outcome import (
    Cancelled,
    exception_text,
    failure_from_exception,
    refused_output,
    success_from_result,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Generator

    from activities._activity import Activity
    from activities.outcome import Outcome
    from activities.task import Task

__all__ = ["Reporter", "execute", "execute_async", "process"]

logger = logging.getLogger(__name__)

#: The logger of what :func:`process` says: ``ActivityClient.process``'s, as before it moved.
_client_logger = logging.getLogger("activities.client")


class Heartbeat:
    """The heartbeat of one task: sends through ``send`` until the task is known gone.

    ``send`` raises :class:`TaskGone` or :class:`TaskCancelled` when Step Functions no
    longer knows the task; from then on every call raises :class:`TaskCancelled` at once
    and sends nothing. Any other error from ``send`` (a network blip) is logged and the
    work goes on: a missed heartbeat is not worth failing the task for.
    """

    def __init__(self, send: Callable[[], None], task: Task) -> None:
        self._send = send
        self._task = task
        self.cancelled: TaskCancelled | None = None

    def __call__(self) -> None:
        if self.cancelled is not None:
            raise TaskCancelled(self.cancelled.message)
        try:
            self._send()
        except (TaskGone, TaskCancelled) as exc:
            self.cancelled = TaskCancelled(f"Step Functions no longer knows the task: {exc}")
            raise TaskCancelled(self.cancelled.message) from exc
        except ServiceError as exc:  # retried by the client already: no traceback to read
            logger.warning(
                "heartbeat for task %s failed; the task goes on: %s", self._task.token_prefix, exc
            )
        except Exception:
            logger.warning(
                "heartbeat for task %s failed; the task goes on",
                self._task.token_prefix,
                exc_info=True,
            )


def execute(activity: Activity, task: Task, send_heartbeat: Callable[[], None]) -> Outcome:
    """Run ``task`` on ``activity`` and return what to tell Step Functions.

    Never raises for anything the activity does: bad input, exceptions from ``run()`` and
    results that cannot be sent all become a :class:`Failure`. Only exceptions that are
    not ``Exception`` (``KeyboardInterrupt``, ``SystemExit``) propagate.

    Args:
        activity: the instance to run the task on.
        task: the task.
        send_heartbeat: sends one heartbeat; raises :class:`TaskGone` (or
            :class:`TaskCancelled`) when the task is gone.

    An ``async def run()`` runs to its end on a new event loop (``asyncio.run``), in
    this thread. When the process traces (see :mod:`activities._ops.tracing`), the task
    has a span, current while ``run()`` runs.
    """
    if activity._is_async():
        return asyncio.run(execute_async(activity, task, send_heartbeat))
    heartbeat = Heartbeat(send_heartbeat, task)
    span = tracing.task_span(task)
    if span is None:
        return _run(activity, task, heartbeat).outcome
    with span:
        ended = _run(activity, task, heartbeat)
        span.ended(*ended)
    return ended.outcome


async def execute_async(
    activity: Activity, task: Task, send_heartbeat: Callable[[], None]
) -> Outcome:
    """Await ``task`` on an activity whose ``run()`` is ``async def``; what to report.

    As :func:`execute`, on the running event loop. ``send_heartbeat`` must not block: it
    runs in the loop. When the coroutine is cancelled (the task is gone, or the worker
    stops), the outcome is :class:`Cancelled`, unless ``run()`` caught the cancellation
    and returned: then it is what ``run()`` returned. A ``CancelledError`` of something
    else ``run()`` awaited fails the task, as ``SystemExit`` does: never the loop. The
    task's span, if any, is current in the coroutine's context.
    """
    heartbeat = Heartbeat(send_heartbeat, task)
    span = tracing.task_span(task)
    if span is None:
        return (await _run_async(activity, task, heartbeat)).outcome
    with span:
        ended = await _run_async(activity, task, heartbeat)
        span.ended(*ended)
    return ended.outcome


class _Ended(NamedTuple):
    """How a task ended: its outcome, and the exception a failure was made from, if any."""

    outcome: Outcome
    error: BaseException | None = None


def _run(activity: Activity, task: Task, heartbeat: Heartbeat) -> _Ended:
    """:func:`execute`'s work, in the task's span if it has one."""
    activity._task, activity._heartbeat = task, heartbeat
    try:
        arguments = _arguments(activity, task)
        if isinstance(arguments, _Ended):
            return arguments
        args, kwargs = arguments
        try:
            if activity._is_generator():
                result = _drive(activity.run(*args, **kwargs), heartbeat)
            else:
                result = activity.run(*args, **kwargs)
        except Exception as exc:  # noqa: BLE001 - whatever run() raises fails the task
            return _failed(exc, heartbeat)
        return _succeeded(activity, result, heartbeat)
    finally:
        activity._task = activity._heartbeat = None


async def _run_async(activity: Activity, task: Task, heartbeat: Heartbeat) -> _Ended:
    """:func:`execute_async`'s work, in the task's span if it has one."""
    activity._task, activity._heartbeat = task, heartbeat
    try:
        arguments = _arguments(activity, task)
        if isinstance(arguments, _Ended):
            return arguments
        args, kwargs = arguments
        try:
            result = await activity.run(*args, **kwargs)
        except asyncio.CancelledError as exc:
            current = asyncio.current_task()
            if current is not None and current.cancelling():
                return _Ended(Cancelled("the task's coroutine was cancelled"))
            # Not cancelled itself: something it awaited was (a task, a library's future).
            return _Ended(failure_from_exception(exc), exc)
        except Exception as exc:  # noqa: BLE001 - whatever run() raises fails the task
            return _failed(exc, heartbeat)
        except BaseException as exc:  # noqa: BLE001 - SystemExit would end the loop of every task
            return _Ended(failure_from_exception(exc), exc)
        return _succeeded(activity, result, heartbeat)
    finally:
        activity._task = activity._heartbeat = None


class Reporter(Protocol):
    """What :func:`process` needs of a client (an :class:`~activities.ActivityClient`)."""

    def send_heartbeat(self, token: str) -> None:
        """Send a heartbeat of the task ``token``."""

    def send_outcome(self, token: str, outcome: Outcome) -> None:
        """Send the outcome of the task ``token``."""


class _AtCadence:
    """Send through ``send`` when called only if ``every`` seconds passed since the last send.

    The first is due ``every`` seconds after it is made (the task was just received).
    """

    def __init__(self, send: Callable[[], None], every: float) -> None:
        self._send = send
        self._every = every
        self._due = time.monotonic() + every

    def __call__(self) -> None:
        now = time.monotonic()
        if now < self._due:
            return
        self._due = now + self._every  # a failed send is not retried at each yield
        self._send()


def process(client: Reporter, activity: Activity, task: Task) -> Outcome:
    """Run ``task`` on ``activity`` with ``client``'s heartbeats, then send its outcome.

    What :meth:`ActivityClient.process <activities.ActivityClient.process>` does. A
    ``yield`` or ``heartbeat()`` of ``run()`` sends a heartbeat when one is due, at the
    activity's cadence (:func:`~activities._activity.cadence`: a third of its
    ``heartbeat_seconds``, its ``heartbeat_interval``, or 10 s), counted from the start; a
    call between two due times sends nothing, as in a worker. An output
    Step Functions refuses as invalid is replaced by an ``activities.SerializationError``
    failure, sent in its place. When Step Functions says the task is gone, the outcome
    is :class:`Cancelled` (dropped), or, when an earlier attempt of it got no answer or
    botocore retried it, the outcome (that attempt may have delivered it); a warning says
    which.
    """
    every = cadence(type(activity), type(activity).heartbeat_interval)
    outcome = execute(activity, task, _AtCadence(lambda: client.send_heartbeat(task.token), every))
    try:
        try:
            client.send_outcome(task.token, outcome)
        except InvalidOutput as exc:
            outcome = refused_output(exc)
            client.send_outcome(task.token, outcome)
    except TaskGone as exc:
        if exc.earlier_may_have_landed:
            _client_logger.warning(
                "task %s is no longer known to Step Functions (%s): an earlier attempt "
                "of its outcome, unanswered or retried, may have delivered it",
                task.token_prefix,
                exc,
            )
            return outcome
        _client_logger.warning(
            "task %s ended after Step Functions closed it; its outcome was dropped: %s",
            task.token_prefix,
            exc,
        )
        return Cancelled(str(exc))
    return outcome


def _arguments(activity: Activity, task: Task) -> tuple[tuple[Any, ...], dict[str, Any]] | _Ended:
    """``run()``'s arguments from the task input, or the failure of input that does not fit."""
    try:
        return activity._deserialize_arguments(task.input)
    except (ActivityError, ActivityDefinitionError) as exc:
        return _Ended(failure_from_exception(exc), exc)
    except Exception as exc:  # noqa: BLE001 - any other decoding error is the input's fault
        invalid = InvalidInput(exception_text(exc))
        return _Ended(failure_from_exception(invalid), invalid)


def _failed(exc: Exception, heartbeat: Heartbeat) -> _Ended:
    """The outcome of ``run()`` raising ``exc``: cancelled if the task is gone, else failed."""
    if heartbeat.cancelled is not None:
        return _Ended(Cancelled(heartbeat.cancelled.message))
    exc = _without_runner_frames(exc)
    return _Ended(failure_from_exception(exc), exc)


def _succeeded(activity: Activity, result: Any, heartbeat: Heartbeat) -> _Ended:
    """The outcome of ``run()`` returning ``result``."""
    if heartbeat.cancelled is not None:
        # run() caught TaskCancelled and returned: the task is gone all the same.
        return _Ended(Cancelled(heartbeat.cancelled.message))
    try:
        return _Ended(success_from_result(activity._serialize_result, result))
    except Exception as exc:  # noqa: BLE001 - an ActivityError, or a transport's named error
        return _Ended(failure_from_exception(exc), exc)


def _without_runner_frames(exc: Exception) -> Exception:
    """Drop this module's frames from the start of the traceback: the cause shows user code."""
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None and tb.tb_frame.f_code.co_filename == __file__:
        tb = tb.tb_next
    return exc.with_traceback(tb)


def _drive(generator: Generator[Any, None, Any], heartbeat: Heartbeat) -> Any:
    """Run a generator ``run()`` to its return value, sending a heartbeat at every yield.

    When a heartbeat finds the task gone, :class:`TaskCancelled` is thrown in at the
    ``yield``; it is thrown again at every later ``yield`` until the generator ends.
    """
    pending: TaskCancelled | None = None
    while True:
        try:
            if pending is None:
                generator.send(None)
            else:
                generator.throw(pending)
        except StopIteration as stop:
            return stop.value
        try:
            heartbeat()
        except TaskCancelled as exc:
            pending = exc
        else:
            pending = None
