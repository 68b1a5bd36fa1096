"""A span per task with OpenTelemetry (activities._ops.tracing), and none without it."""

from __future__ import annotations

import asyncio
import importlib.metadata
import json
import logging
import os
import signal
import subprocess
import sys
import threading
from typing import TYPE_CHECKING, Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    SimpleSpanProcessor,
    SpanProcessor,
)
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from activities import Activity, ActivityError, Failure, Success, WorkerCrashed
from activities._ops import tracing
from activities._runner import execute, execute_async
from activities.outcome import failure_from_exception
from activities.task import Task
from activities.testing import ActivityEnvironment
from tests import tracing_workload
from tests.processes import ROOT, bench, bench_environment, running, task_processes
from tests.waiting import wait_until

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

# The SDK puts a filter on a logger of its own as it is imported. A worker's task processes
# cannot make a filter again, so a process with one forwards their lines instead of
# letting them write in place (activities.worker._childlog); tests/test_childlog.py checks
# that choice in this test process, whose logging must stay plain.
for _name, _logger in logging.root.manager.loggerDict.items():
    if _name.startswith("opentelemetry") and isinstance(_logger, logging.Logger):
        _logger.filters.clear()

TOKEN = "AAAAtokenofthetask" + "s" * 200
TASK_TRACER = "tests.test_tracing"


def a_task(data: str = "", name: str = "Traced") -> Task:
    return Task(
        token=TOKEN,
        activity_arn=f"arn:aws:states:us-east-1:123456789012:activity:{name}",
        worker_name="test-worker",
        input=data,
    )


def no_heartbeat() -> None:
    pass


class OutOfStock(ActivityError):
    error = "Inventory.OutOfStock"


class Nested(Activity):
    """Opens a span of its own in run(); fails when told."""

    name = "Traced"

    def run(self, fail: bool = False) -> str:
        with trace.get_tracer(TASK_TRACER).start_as_current_span("inner"):
            if fail:
                raise OutOfStock("none left")
        return "done"


class Echo(Activity):
    name = "Traced"

    def run(self, value: Any) -> Any:
        return value


class NestedAsync(Activity):
    name = "Traced"

    async def run(self, label: str) -> str:
        await asyncio.sleep(0)
        with trace.get_tracer(TASK_TRACER).start_as_current_span(f"inner {label}"):
            await asyncio.sleep(0)
        return label


@pytest.fixture
def exporter(monkeypatch: pytest.MonkeyPatch) -> Iterator[InMemorySpanExporter]:
    """A tracer provider configured for this test, as the global one; every span kept."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    monkeypatch.setattr(trace, "get_tracer_provider", lambda: provider)
    monkeypatch.setattr(tracing, "_tracer", tracing._UNDECIDED)
    yield exporter
    provider.shutdown()


@pytest.fixture
def undecided(monkeypatch: pytest.MonkeyPatch) -> None:
    """The process has not decided yet whether its tasks get spans."""
    monkeypatch.setattr(tracing, "_tracer", tracing._UNDECIDED)


def by_name(spans: tuple[ReadableSpan, ...], name: str) -> ReadableSpan:
    (found,) = [span for span in spans if span.name == name]
    return found


def parent_id(span: ReadableSpan) -> int | None:
    return None if span.parent is None else span.parent.span_id


def span_id(span: ReadableSpan) -> int:
    context = span.get_span_context()
    assert context is not None
    return context.span_id


class TestTaskSpan:
    def test_a_task_has_a_consumer_span_with_its_activity(
        self, exporter: InMemorySpanExporter
    ) -> None:
        """One span per task: CONSUMER, named after the activity, what it ran and how it ended."""
        outcome = execute(Nested(), a_task(), no_heartbeat)
        assert isinstance(outcome, Success)
        span = by_name(exporter.get_finished_spans(), "run Traced")
        assert span.kind is SpanKind.CONSUMER
        assert span.parent is None
        assert span.status.status_code is StatusCode.UNSET
        assert dict(span.attributes or {}) == {
            "messaging.system": "aws.step_functions",
            "messaging.operation.type": "process",
            "messaging.operation.name": "run",
            "messaging.destination.name": "Traced",
            "aws.step_functions.activity.arn": (
                "arn:aws:states:us-east-1:123456789012:activity:Traced"
            ),
            "sfn_activities.activity": "Traced",
            "sfn_activities.token_prefix": TOKEN[:12],
            "sfn_activities.worker_name": "test-worker",
            "sfn_activities.outcome": "succeeded",
        }
        assert span.instrumentation_scope is not None
        assert span.instrumentation_scope.name == "sfn-activities"

    def test_a_checkout_not_installed_still_traces(
        self, exporter: InMemorySpanExporter, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """No package metadata (a checkout on PYTHONPATH): spans, with no version."""

        def not_installed(name: str) -> str:
            raise importlib.metadata.PackageNotFoundError(name)

        monkeypatch.setattr(importlib.metadata, "version", not_installed)
        execute(Nested(), a_task(), no_heartbeat)
        span = by_name(exporter.get_finished_spans(), "run Traced")
        assert span.instrumentation_scope is not None
        assert not span.instrumentation_scope.version

    def test_spans_opened_in_run_are_its_children(self, exporter: InMemorySpanExporter) -> None:
        """The task's span is current while run() runs, and only then."""
        execute(Nested(), a_task(), no_heartbeat)
        spans = exporter.get_finished_spans()
        task, inner = by_name(spans, "run Traced"), by_name(spans, "inner")
        assert parent_id(inner) == span_id(task)
        assert inner.context is not None
        assert task.context is not None
        assert inner.context.trace_id == task.context.trace_id
        assert not trace.get_current_span().get_span_context().is_valid

    def test_a_failure_is_an_error_with_its_exception(self, exporter: InMemorySpanExporter) -> None:
        """Status ERROR, error.type the error name Retry/Catch match, the exception recorded."""
        outcome = execute(Nested(), a_task('{"fail": true}'), no_heartbeat)
        assert isinstance(outcome, Failure)
        span = by_name(exporter.get_finished_spans(), "run Traced")
        assert span.status.status_code is StatusCode.ERROR
        assert span.status.description == "Inventory.OutOfStock"
        attributes = dict(span.attributes or {})
        assert attributes["sfn_activities.outcome"] == "failed"
        assert attributes["error.type"] == "Inventory.OutOfStock"
        (event,) = span.events
        assert event.name == "exception"
        assert dict(event.attributes or {})["exception.type"].endswith("OutOfStock")
        assert dict(event.attributes or {})["exception.message"] == "none left"

    def test_invalid_input_is_a_failure_of_the_span(self, exporter: InMemorySpanExporter) -> None:
        """Input run() cannot take fails the task before run(): its span says so."""
        execute(Nested(), a_task("{not json"), no_heartbeat)
        (span,) = exporter.get_finished_spans()
        assert dict(span.attributes or {})["error.type"] == "activities.InvalidInput"
        assert span.status.status_code is StatusCode.ERROR

    def test_an_unprintable_exception_still_ends_the_span(
        self, exporter: InMemorySpanExporter
    ) -> None:
        """An exception whose str() raises fails its task as always; the span says which."""

        class Unprintable(Exception):
            def __str__(self) -> str:
                raise RuntimeError

        class Raises(Activity):
            name = "Traced"

            def run(self) -> None:
                raise Unprintable

        outcome = execute(Raises(), a_task(), no_heartbeat)
        assert isinstance(outcome, Failure)
        assert outcome.error == "Unprintable"
        (span,) = exporter.get_finished_spans()
        assert span.status.status_code is StatusCode.ERROR
        assert dict(span.attributes or {})["error.type"] == "Unprintable"

    def test_a_cancelled_task_says_why(self, exporter: InMemorySpanExporter) -> None:
        """A task found gone by a heartbeat: outcome cancelled, an event with the reason."""

        class Beats(Activity):
            name = "Traced"

            def run(self) -> None:
                self.heartbeat()

        report = ActivityEnvironment(cancel_after_heartbeats=0).run(Beats)
        assert report.cancelled
        (span,) = exporter.get_finished_spans()
        assert dict(span.attributes or {})["sfn_activities.outcome"] == "cancelled"
        assert span.status.status_code is StatusCode.UNSET
        (event,) = span.events
        assert event.name == "sfn_activities.cancelled"
        assert "no longer knows the task" in str(
            dict(event.attributes or {})["sfn_activities.reason"]
        )

    def test_system_exit_from_run_ends_the_span_as_a_failure(
        self, exporter: InMemorySpanExporter
    ) -> None:
        """What propagates out of execute() (SystemExit) is recorded, and the span ended."""

        class Exits(Activity):
            name = "Traced"

            def run(self) -> None:
                raise SystemExit(3)

        with pytest.raises(SystemExit):
            execute(Exits(), a_task(), no_heartbeat)
        (span,) = exporter.get_finished_spans()
        assert span.status.status_code is StatusCode.ERROR
        assert dict(span.attributes or {})["error.type"] == "SystemExit"
        assert not trace.get_current_span().get_span_context().is_valid

    def test_the_token_is_never_an_attribute(self, exporter: InMemorySpanExporter) -> None:
        """The token reports the task: only its prefix is in a span."""
        execute(Nested(), a_task('{"fail": true}'), no_heartbeat)
        for span in exporter.get_finished_spans():
            values = [*dict(span.attributes or {}).values()]
            values += [
                value for event in span.events for value in (event.attributes or {}).values()
            ]
            assert not any(TOKEN[:20] in str(value) for value in values)

    def test_a_callers_span_is_the_parent(self, exporter: InMemorySpanExporter) -> None:
        """Run where a span is current (ActivityClient.process in a request), it is the parent."""
        with trace.get_tracer(TASK_TRACER).start_as_current_span("caller") as caller:
            execute(Nested(), a_task(), no_heartbeat)
        task = by_name(exporter.get_finished_spans(), "run Traced")
        assert parent_id(task) == caller.get_span_context().span_id


class TestAsync:
    def test_each_coroutine_has_its_own_current_span(self, exporter: InMemorySpanExporter) -> None:
        """Tasks that interleave on one loop: a task's spans are children of its own span."""

        async def both() -> list[Any]:
            return await asyncio.gather(
                execute_async(NestedAsync(), a_task('{"label": "a"}'), no_heartbeat),
                execute_async(NestedAsync(), a_task('{"label": "b"}'), no_heartbeat),
            )

        outcomes = asyncio.run(both())
        assert all(isinstance(outcome, Success) for outcome in outcomes)
        spans = exporter.get_finished_spans()
        tasks = [span for span in spans if span.name == "run Traced"]
        assert len(tasks) == 2
        assert {span.kind for span in tasks} == {SpanKind.CONSUMER}
        parents = {parent_id(by_name(spans, "inner a")), parent_id(by_name(spans, "inner b"))}
        assert parents == {span_id(span) for span in tasks}

    def test_a_cancelled_coroutine_ends_its_span(self, exporter: InMemorySpanExporter) -> None:
        """A task gone while it awaits: cancelled, with the reason."""

        class Waits(Activity):
            name = "Traced"

            async def run(self) -> None:
                await asyncio.sleep(60)

        report = ActivityEnvironment(cancel_after=0.01).run(Waits)
        assert report.cancelled
        (span,) = exporter.get_finished_spans()
        assert dict(span.attributes or {})["sfn_activities.outcome"] == "cancelled"
        (event,) = span.events
        assert dict(event.attributes or {})["sfn_activities.reason"] == (
            "the task's coroutine was cancelled"
        )

    def test_sync_execute_of_an_async_activity_has_one_span(
        self, exporter: InMemorySpanExporter
    ) -> None:
        """execute() runs an async def run() through execute_async: one span, not two."""
        assert isinstance(execute(NestedAsync(), a_task('{"label": "c"}'), no_heartbeat), Success)
        spans = exporter.get_finished_spans()
        assert [span.name for span in spans].count("run Traced") == 1


class TestWorkerFailures:
    def test_a_task_failed_by_the_worker_has_a_span(self, exporter: InMemorySpanExporter) -> None:
        """WorkerCrashed: a root span, ERROR, its error name, the exception recorded."""
        error = WorkerCrashed("the task process running the task died (killed by SIGKILL)")
        with trace.get_tracer(TASK_TRACER).start_as_current_span("unrelated"):
            tracing.failed_by_worker(a_task(), failure_from_exception(error), error, sent=False)
        span = by_name(exporter.get_finished_spans(), "run Traced")
        assert span.parent is None
        assert span.kind is SpanKind.CONSUMER
        assert span.status.status_code is StatusCode.ERROR
        attributes = dict(span.attributes or {})
        assert attributes["error.type"] == "activities.WorkerCrashed"
        assert attributes["sfn_activities.outcome"] == "failed"
        assert attributes["sfn_activities.token_prefix"] == TOKEN[:12]
        assert "sfn_activities.outcome_may_have_landed" not in attributes
        assert [event.name for event in span.events] == ["exception"]

    def test_an_outcome_that_may_have_landed_is_said(self, exporter: InMemorySpanExporter) -> None:
        error = WorkerCrashed("died")
        tracing.failed_by_worker(a_task(), failure_from_exception(error), error, sent=True)
        (span,) = exporter.get_finished_spans()
        assert dict(span.attributes or {})["sfn_activities.outcome_may_have_landed"] is True


class Broken(trace.TracerProvider):
    """A provider that fails as it is asked for a tracer."""

    def get_tracer(self, *args: Any, **kwargs: Any) -> trace.Tracer:
        raise RuntimeError


class TestTracingFailsNoTask:
    def test_a_provider_that_fails_turns_tracing_off(
        self, monkeypatch: pytest.MonkeyPatch, undecided: None, caplog: pytest.LogCaptureFixture
    ) -> None:
        monkeypatch.setattr(trace, "get_tracer_provider", Broken)
        with caplog.at_level(logging.WARNING, logger=tracing.__name__):
            assert isinstance(execute(Echo(), a_task('"x"'), no_heartbeat), Success)
        assert tracing.tracer() is None
        assert "tracing is off" in caplog.text

    def test_a_span_that_cannot_start_leaves_the_task_alone(
        self, exporter: InMemorySpanExporter, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        found = tracing.tracer()
        assert found is not None
        monkeypatch.setattr(found, "start_span", Broken().get_tracer)
        assert isinstance(execute(Echo(), a_task('"x"'), no_heartbeat), Success)
        assert exporter.get_finished_spans() == ()


class NeverFlushes(SpanProcessor):
    """A processor whose flush hangs until released: an exporter that cannot reach its collector."""

    def __init__(self) -> None:
        self.release = threading.Event()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        self.release.wait()
        return True


class TestFlush:
    def test_flush_exports_what_a_batch_holds(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """A batch processor's spans wait for its schedule; flush() exports them now."""
        exporter = InMemorySpanExporter()
        provider = TracerProvider()
        provider.add_span_processor(BatchSpanProcessor(exporter, schedule_delay_millis=60_000))
        monkeypatch.setattr(trace, "get_tracer_provider", lambda: provider)
        monkeypatch.setattr(tracing, "_tracer", tracing._UNDECIDED)
        try:
            execute(Nested(), a_task(), no_heartbeat)
            assert exporter.get_finished_spans() == ()
            tracing.flush()
            assert {span.name for span in exporter.get_finished_spans()} == {"run Traced", "inner"}
        finally:
            provider.shutdown()

    def test_a_hung_flush_is_given_up(
        self, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
    ) -> None:
        """The process ends all the same: flush() waits its timeout, then says so."""
        hanging = NeverFlushes()
        provider = TracerProvider()
        provider.add_span_processor(hanging)
        monkeypatch.setattr(trace, "get_tracer_provider", lambda: provider)
        monkeypatch.setattr(tracing, "_tracer", tracing._UNDECIDED)
        execute(Nested(), a_task(), no_heartbeat)
        try:
            with caplog.at_level(logging.WARNING, logger=tracing.__name__):
                tracing.flush(0.2)
            assert "spans not exported within 0.2 s" in caplog.text
        finally:
            hanging.release.set()

    def test_nothing_to_flush_before_a_task(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """A process that ran no task has decided nothing: flush() looks at no provider."""
        monkeypatch.setattr(tracing, "_tracer", tracing._UNDECIDED)
        monkeypatch.setattr(trace, "get_tracer_provider", pytest.fail)
        tracing.flush()


class TestNoCost:
    def test_without_opentelemetry_no_span(
        self, monkeypatch: pytest.MonkeyPatch, undecided: None
    ) -> None:
        """opentelemetry not installed: tasks run as always, and tracing stays off."""
        monkeypatch.setitem(sys.modules, "opentelemetry", None)
        assert isinstance(execute(Echo(), a_task('"x"'), no_heartbeat), Success)
        assert tracing.tracer() is None
        tracing.flush()

    def test_without_a_provider_no_span_and_one_look(
        self, monkeypatch: pytest.MonkeyPatch, undecided: None
    ) -> None:
        """OpenTelemetry's proxy provider (none configured): decided once, no tracer asked for."""
        looks: list[str] = []
        proxy = trace.ProxyTracerProvider()

        def get_tracer_provider() -> trace.TracerProvider:
            looks.append("provider")
            return proxy

        def get_tracer(*args: Any, **kwargs: Any) -> trace.Tracer:
            looks.append("tracer")
            return trace.NoOpTracer()

        monkeypatch.setattr(trace, "get_tracer_provider", get_tracer_provider)
        monkeypatch.setattr(proxy, "get_tracer", get_tracer)
        for _ in range(3):
            assert isinstance(execute(Echo(), a_task('"x"'), no_heartbeat), Success)
        assert tracing.tracer() is None
        assert looks == ["provider"]

    def test_a_no_op_provider_is_none(
        self, monkeypatch: pytest.MonkeyPatch, undecided: None
    ) -> None:
        monkeypatch.setattr(trace, "get_tracer_provider", trace.NoOpTracerProvider)
        assert tracing.tracer() is None

    def test_importing_the_framework_imports_no_opentelemetry(self) -> None:
        """Only a process's first task looks for it: a worker's start costs nothing more."""
        code = (
            "import sys, activities, activities.worker, activities.cli\n"
            "found = sorted(m for m in sys.modules if m.startswith('opentelemetry'))\n"
            "assert not found, found"
        )
        subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


# -- a worker of task processes ------------------------------------------------------------

TRACED, TRACED_ASYNC = "it-Traced", "it-TracedAsync"


def load(endpoint: str, activity: str, count: int, **task_input: Any) -> None:
    bench(endpoint, "Load", {"activity": activity, "count": count, "input": json.dumps(task_input)})


def completed(endpoint: str) -> int:
    stats = bench(endpoint, "Stats")
    return int(stats.get("succeeded", 0)) + int(stats.get("failed", 0))


def spans_in(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_spans_of_task_processes_are_exported(bench_endpoint: str, tmp_path: Path) -> None:
    """A worker of one task process, traced by its application: every task's span exported.

    Its provider's batches are a minute apart: the spans reach the file because the
    task process flushes them as it ends (recycled after four tasks). A task whose process
    is killed gets its span from the worker's process, with WorkerCrashed.
    """
    path = tmp_path / "spans.jsonl"
    environment = {
        **bench_environment(bench_endpoint),
        "TMPDIR": str(tmp_path),
        tracing_workload.SPANS_VARIABLE: str(path),
    }
    command = [sys.executable, "-m", "activities", "worker", "tests.tracing_workload"]
    command += ["--processes", "1", "--max-tasks-per-process", "4"]
    with (tmp_path / "worker.log").open("w") as stderr:
        worker = subprocess.Popen(command, cwd=ROOT, env=environment, stderr=stderr)
    try:
        load(bench_endpoint, TRACED, 2, verdict="ok")
        load(bench_endpoint, TRACED, 1, verdict="refuse")
        load(bench_endpoint, TRACED_ASYNC, 1, verdict="ok")
        assert wait_until(lambda: completed(bench_endpoint) == 4, timeout=60)
        # Recycled after its fourth task, the process flushed its spans as it ended.
        assert wait_until(lambda: len(spans_in(path)) >= 8, timeout=30), spans_in(path)

        load(bench_endpoint, TRACED, 1, verdict="ok", seconds=60)
        assert wait_until(lambda: path.with_name("spans.jsonl.running").exists(), timeout=30)
        for pid in task_processes(worker.pid):
            os.kill(pid, signal.SIGKILL)
        assert wait_until(lambda: completed(bench_endpoint) == 5, timeout=30)

        worker.send_signal(signal.SIGTERM)
        assert worker.wait(timeout=60) == 0
    finally:
        if running(worker.pid):
            worker.kill()
        worker.wait()

    spans = spans_in(path)
    tasks = [span for span in spans if span["name"].startswith("run ")]
    in_processes = [span for span in tasks if span["pid"] != worker.pid]
    assert sorted(span["name"] for span in in_processes) == [
        f"run {TRACED}",
        f"run {TRACED}",
        f"run {TRACED}",
        f"run {TRACED_ASYNC}",
    ]
    for task in in_processes:
        assert task["kind"] == "CONSUMER"
        assert task["parent"] is None
        assert task["attributes"]["sfn_activities.token_prefix"].startswith("token-")
        inner = [span for span in spans if span["parent"] == task["span_id"]]
        assert [span["name"] for span in inner] in (["inner"], ["inner-async"])
        assert inner[0]["trace_id"] == task["trace_id"]
    outcomes = sorted(
        (task["attributes"]["sfn_activities.outcome"], task["status"]) for task in in_processes
    )
    assert outcomes == [("failed", "ERROR"), *[("succeeded", "UNSET")] * 3]
    (refused,) = [task for task in in_processes if task["status"] == "ERROR"]
    assert refused["attributes"]["error.type"] == "Tracing.Refused"
    assert [event["name"] for event in refused["events"]] == ["exception"]

    (crashed,) = [span for span in tasks if span["pid"] == worker.pid]
    assert crashed["name"] == f"run {TRACED}"
    assert crashed["status"] == "ERROR"
    assert crashed["attributes"]["error.type"] == "activities.WorkerCrashed"
