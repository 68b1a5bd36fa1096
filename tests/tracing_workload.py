"""Activities the tracing tests serve, in a worker traced the way an application traces it.

When :data:`SPANS_VARIABLE` names a file, importing this module sets the process's
tracer provider, with a :class:`BatchSpanProcessor` whose exporter appends each finished
span to that file as a JSON line. Its scheduled exports are a minute apart: the spans of
a task process reach the file only when the process flushes them as it ends.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

from activities import Activity, ActivityError

if TYPE_CHECKING:
    from collections.abc import Sequence

    from opentelemetry.sdk.trace import ReadableSpan

#: The environment variable naming the file spans are written to.
SPANS_VARIABLE = "SFN_ACTIVITIES_TEST_SPANS"

#: Milliseconds between two scheduled exports: longer than any test.
SCHEDULE_DELAY_MS = 60_000

#: What the task code's own spans come from (the global provider's, once it is set).
TRACER = trace.get_tracer(__name__)


def describe(span: ReadableSpan) -> dict[str, Any]:
    """What the tests read of a span, in JSON."""
    context = span.get_span_context()
    assert context is not None
    return {
        "name": span.name,
        "kind": span.kind.name,
        "trace_id": format(context.trace_id, "032x"),
        "span_id": format(context.span_id, "016x"),
        "parent": None if span.parent is None else format(span.parent.span_id, "016x"),
        "status": span.status.status_code.name,
        "description": span.status.description,
        "attributes": dict(span.attributes or {}),
        "events": [
            {"name": event.name, "attributes": dict(event.attributes or {})}
            for event in span.events
        ],
        "pid": os.getpid(),
    }


class JsonLines(SpanExporter):
    """Appends each span to a file, one JSON line each, in one write per batch."""

    def __init__(self, path: str) -> None:
        self.path = path

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        lines = "".join(json.dumps(describe(span), default=str) + "\n" for span in spans)
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, lines.encode())
        finally:
            os.close(fd)
        return SpanExportResult.SUCCESS


if os.environ.get(SPANS_VARIABLE):
    _provider = TracerProvider()
    _provider.add_span_processor(
        BatchSpanProcessor(
            JsonLines(os.environ[SPANS_VARIABLE]), schedule_delay_millis=SCHEDULE_DELAY_MS
        )
    )
    trace.set_tracer_provider(_provider)


class Refused(ActivityError):
    error = "Tracing.Refused"


def _running() -> None:
    """Say the task runs: a file beside the spans' (the test waits for it)."""
    Path(os.environ[SPANS_VARIABLE] + ".running").touch()


class Traced(Activity):
    """Opens a span of its own; fails with Tracing.Refused when told, or sleeps."""

    name = "it-Traced"

    def run(self, verdict: str, seconds: float = 0) -> str:
        with TRACER.start_as_current_span("inner"):
            if verdict == "refuse":
                raise Refused("not today")
            if seconds:
                _running()
                time.sleep(seconds)
        return verdict


class TracedAsync(Activity):
    """An async def run() that opens a span of its own."""

    name = "it-TracedAsync"

    async def run(self, verdict: str) -> str:
        await asyncio.sleep(0)
        with TRACER.start_as_current_span("inner-async"):
            await asyncio.sleep(0)
        return verdict
