"""Tracing with OpenTelemetry: a span for every task, when the application traces.

Nothing here needs OpenTelemetry: ``opentelemetry-api`` (the ``otel`` extra) is imported
only if it is installed, and only when a process runs its first task. Each process
decides once, then, whether its tasks get spans (see :func:`tracer`): they do when a
tracer provider is configured, by the application or by ``opentelemetry-instrument``;
otherwise nothing is done for a task but a global's look-up.

A task's span (:func:`task_span`) is opened by :mod:`activities._runner` around
``run()``, and is the current span while it runs (in its thread, or in its coroutine's
context): the spans the task's own code opens are its children. The worker's process
gives a span of its own (:func:`failed_by_worker`) to each task it fails on a slot's
behalf: its process died (``WorkerCrashed``), or the worker stopped (``WorkerShutdown``).
A task process ends with :func:`flush`: multiprocessing ends it with ``os._exit``, which
runs no ``atexit`` handler, the provider's flush included.

See ``docs/tracing.md``.
"""

from __future__ import annotations

import importlib.metadata
import logging
import os
import threading
from typing import TYPE_CHECKING, Any, Self

from activities._ops.metrics import outcome_name
from activities.outcome import Cancelled, Failure, failure_from_exception

if TYPE_CHECKING:
    from contextvars import Token
    from types import TracebackType

    from opentelemetry.context import Context
    from opentelemetry.trace import Span, Tracer

    from activities.outcome import Outcome
    from activities.task import Task

__all__ = [
    "FLUSH_TIMEOUT",
    "INSTRUMENTATION_NAME",
    "MESSAGING_SYSTEM",
    "TaskSpan",
    "failed_by_worker",
    "flush",
    "task_span",
    "tracer",
]

logger = logging.getLogger(__name__)

#: The name of the tracer (its instrumentation scope) the framework's spans come from.
INSTRUMENTATION_NAME = "sfn-activities"

#: Seconds a task process that ends waits, at most, for its spans to be exported.
FLUSH_TIMEOUT = 5.0

#: What a span's ``messaging.system`` says: the spans' attribute namespace for Step
#: Functions in OpenTelemetry's conventions (``aws.step_functions.*``).
MESSAGING_SYSTEM = "aws.step_functions"

_UNDECIDED: Any = object()

#: This process's tracer: ``_UNDECIDED`` until its first task, ``None`` when tasks get
#: no span. Forgotten in a forked child, which decides for itself.
_tracer: Any = _UNDECIDED


def tracer() -> Tracer | None:
    """The tracer of this process's task spans; ``None`` when tasks get no span.

    Decided at the first call in a process (its first task), and kept: no span when
    ``opentelemetry`` is not installed, or when no tracer provider is configured (the
    global provider is OpenTelemetry's proxy or its no-op provider). A provider
    configured later, once a task has run, is not seen by this process.
    """
    global _tracer  # noqa: PLW0603 - decided once per process
    found = _tracer
    if found is _UNDECIDED:
        try:
            found = _decide()
        except Exception:
            # A provider that cannot be loaded (OTEL_PYTHON_TRACER_PROVIDER) fails no task.
            logger.warning("tracing is off: the tracer provider failed", exc_info=True)
            found = None
        _tracer = found
    return found  # type: ignore[no-any-return]


def _decide() -> Tracer | None:
    try:
        from opentelemetry import trace  # noqa: PLC0415 - the extra, only if installed
    except ImportError:
        return None
    provider = trace.get_tracer_provider()
    if isinstance(provider, trace.ProxyTracerProvider | trace.NoOpTracerProvider):
        return None
    try:
        version: str | None = importlib.metadata.version("sfn-activities")
    except importlib.metadata.PackageNotFoundError:  # a checkout run without installing it
        version = None
    logger.debug("tasks get spans, from %r", provider)
    return provider.get_tracer(INSTRUMENTATION_NAME, version)


def _forget() -> None:
    """A forked child decides anew (see :func:`tracer`)."""
    global _tracer  # noqa: PLW0603 - decided once per process
    _tracer = _UNDECIDED


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget)


def _attributes(task: Task) -> dict[str, str]:
    """What every span of a task says of it (never its whole token: it reports the task)."""
    return {
        "messaging.system": MESSAGING_SYSTEM,
        "messaging.operation.type": "process",
        "messaging.operation.name": "run",
        "messaging.destination.name": task.activity_name,
        "aws.step_functions.activity.arn": task.activity_arn,
        "sfn_activities.activity": task.activity_name,
        "sfn_activities.token_prefix": task.token_prefix,
        "sfn_activities.worker_name": task.worker_name,
    }


def _span_name(task: Task) -> str:
    return f"run {task.activity_name}"


def task_span(task: Task) -> TaskSpan | None:
    """The span of ``task``, started now, or ``None`` when tasks get no span (see :func:`tracer`).

    Its parent is the current span, if any (the caller's, with
    ``ActivityClient.process``); in a worker's slot there is none.
    """
    found = _tracer if _tracer is not _UNDECIDED else tracer()
    if found is None:
        return None
    from opentelemetry.trace import SpanKind  # noqa: PLC0415 - the extra

    try:
        span = found.start_span(
            _span_name(task), kind=SpanKind.CONSUMER, attributes=_attributes(task)
        )
    except Exception:
        logger.warning(
            "task %s runs without a span: it failed to start", task.token_prefix, exc_info=True
        )
        return None
    return TaskSpan(span)


class TaskSpan:
    """A task's span: current while the task runs (``with``), ended as the task ends.

    Leaving the ``with`` ends the span; an exception that leaves it (``SystemExit`` from
    ``run()``) is recorded as the task's failure. Nothing it does raises into the task:
    an error of the tracing is logged, and the task goes on.

    Args:
        span: the span, started.
    """

    def __init__(self, span: Span) -> None:
        self.span = span
        self._token: Token[Context] | None = None
        self._ended = False

    def __enter__(self) -> Self:
        from opentelemetry import context, trace  # noqa: PLC0415 - the extra

        self._token = context.attach(trace.set_span_in_context(self.span))
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        from opentelemetry import context  # noqa: PLC0415 - the extra

        try:
            if error is not None and not self._ended:
                self.ended(failure_from_exception(error), error)
        finally:
            if self._token is not None:
                context.detach(self._token)
            self.span.end()

    def ended(self, outcome: Outcome, error: BaseException | None = None) -> None:
        """Say how the task ended: ``outcome``, from ``error`` when it is a failure's.

        A failure sets the status to ERROR, ``error.type`` to its error name, and records
        ``error``; a cancellation is an event with its reason.
        """
        self._ended = True
        try:
            _record(self.span, outcome, error)
        except Exception:
            logger.warning("the span of a task could not record its outcome", exc_info=True)


def _record(span: Span, outcome: Outcome, error: BaseException | None) -> None:
    from opentelemetry.trace import Status, StatusCode  # noqa: PLC0415 - the extra

    span.set_attribute("sfn_activities.outcome", outcome_name(outcome))
    if isinstance(outcome, Failure):
        span.set_attribute("error.type", outcome.error)
        span.set_status(Status(StatusCode.ERROR, outcome.error))
        if error is not None:
            try:
                span.record_exception(error)
            except Exception:  # noqa: BLE001 - a user's exception whose str() raises
                span.add_event("exception", {"exception.type": type(error).__qualname__})
    elif isinstance(outcome, Cancelled):
        span.add_event("sfn_activities.cancelled", {"sfn_activities.reason": outcome.reason})


def failed_by_worker(task: Task, failure: Failure, error: BaseException, *, sent: bool) -> None:
    """Give a span to a task the worker's process fails on a slot's behalf.

    Its process died (``WorkerCrashed``: the span its process was making is lost with
    it), or the worker stopped while it ran or waited (``WorkerShutdown``). The span
    starts and ends now, a root of its own, with the attributes of a task's span, status
    ERROR and ``error`` recorded. ``sent``: the slot's outcome may have landed first
    (``sfn_activities.outcome_may_have_landed``). Nothing when tasks get no span.
    """
    found = tracer()
    if found is None:
        return
    from opentelemetry.context import Context  # noqa: PLC0415 - the extra
    from opentelemetry.trace import SpanKind  # noqa: PLC0415 - the extra

    attributes: dict[str, str | bool] = {**_attributes(task)}
    if sent:
        attributes["sfn_activities.outcome_may_have_landed"] = True
    try:
        # A root: whatever span is current in the worker's thread is not the task's parent.
        span = found.start_span(
            _span_name(task), context=Context(), kind=SpanKind.CONSUMER, attributes=attributes
        )
        try:
            _record(span, failure, error)
        finally:
            span.end()
    except Exception:
        logger.warning("the span of a task the worker failed could not be made", exc_info=True)


def flush(timeout: float = FLUSH_TIMEOUT) -> None:
    """Export the spans this process made and has not exported; wait ``timeout`` at most.

    For a process that ends without ``atexit`` handlers (a task process). Nothing when
    it made no task span (tracing off, or no task ran). The provider's ``force_flush``
    runs in a thread of its own: an exporter that hangs delays the end by ``timeout``.
    """
    if _tracer is _UNDECIDED or _tracer is None:
        return
    from opentelemetry import trace  # noqa: PLC0415 - the extra

    force_flush = getattr(trace.get_tracer_provider(), "force_flush", None)
    if force_flush is None:
        return
    flushing = threading.Thread(
        target=_flush, args=(force_flush, timeout), name="sfn-activities-flush", daemon=True
    )
    flushing.start()
    flushing.join(timeout)
    if flushing.is_alive():
        logger.warning("spans not exported within %.1f s of the process's end", timeout)


def _flush(force_flush: Any, timeout: float) -> None:
    try:
        force_flush(int(timeout * 1000))
    except Exception:
        logger.warning("exporting the spans of the process failed", exc_info=True)
