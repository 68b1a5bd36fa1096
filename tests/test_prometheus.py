"""The worker's Prometheus metrics: counted in every process, added up at a scrape."""

from __future__ import annotations

import datetime as dt
import logging
import multiprocessing
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from prometheus_client import values
from prometheus_client.parser import text_string_to_metric_families

from activities._ops.metrics import NO_METRICS, Metrics
from activities._ops.processmetrics import metrics_of
from activities._ops.prometheus import (
    DIRECTORY_VARIABLE,
    MAX_ERROR_LABELS,
    OTHER_ERROR,
    LiveMetrics,
    MetricsDirectory,
    PrometheusMetrics,
    exposition,
    metrics_in,
)
from activities.outcome import Cancelled, Failure, Outcome, Success
from activities.task import Task

if TYPE_CHECKING:
    from collections.abc import Iterator

    from prometheus_client.core import Metric
    from prometheus_client.registry import Collector

ECHO_ARN = "arn:aws:states:us-east-1:123456789012:activity:it-Echo"
JUDGE_ARN = "arn:aws:states:us-east-1:123456789012:activity:it-Judge"

#: A sample's name and labels.
Key = tuple[str, frozenset[tuple[str, str]]]


def a_task(arn: str = ECHO_ARN, *, waited: float = 0.0) -> Task:
    """A task of ``arn`` whose poll returned ``waited`` seconds ago."""
    started_at = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=waited)
    return Task(
        token="AAAAKgAAAAIAtoken",
        activity_arn=arn,
        worker_name="w",
        input="{}",
        started_at=started_at,
    )


def ended(metrics: Metrics, task: Task, outcome: Outcome, seconds: float) -> None:
    """What a slot tells its metrics of a task that ran and whose outcome was taken."""
    metrics.task_ran(task, seconds)
    metrics.task_ended(task, outcome)


class NothingLive:
    """A collector of no metrics, for scrapes that are about the counted ones."""

    def collect(self) -> Iterator[Metric]:
        return iter(())


def scrape(directory: MetricsDirectory, live: Collector | None = None) -> dict[Key, float]:
    """Every sample of the exposition, by name and labels (each once)."""
    text = exposition(directory, live or NothingLive())
    found: dict[Key, float] = {}
    for family in text_string_to_metric_families(text.decode()):
        for sample in family.samples:
            key = (sample.name, frozenset(sample.labels.items()))
            assert key not in found, f"{key} twice"
            found[key] = sample.value
    return found


def key(name: str, **labels: str) -> Key:
    return name, frozenset(labels.items())


@pytest.fixture
def directory(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[MetricsDirectory]:
    """A MetricsDirectory (under tmp_path) in use in this process; removed after the test."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    monkeypatch.delenv(DIRECTORY_VARIABLE, raising=False)
    before = values.ValueClass
    directory = MetricsDirectory()
    directory.use()
    try:
        yield directory
    finally:
        directory.remove()
        assert values.ValueClass is before
        assert DIRECTORY_VARIABLE not in os.environ


class TestMetricsDirectory:
    def test_it_is_made_at_once_and_used_by_this_process(
        self, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
    ) -> None:
        monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
        monkeypatch.delenv(DIRECTORY_VARIABLE, raising=False)
        before = values.ValueClass
        directory = MetricsDirectory()
        try:
            assert os.path.isdir(directory.path)
            assert os.path.basename(directory.path).startswith("sfn-activities-metrics-")
            assert os.path.dirname(directory.path) == str(tmp_path)
            assert DIRECTORY_VARIABLE not in os.environ, "made, not yet used"
            directory.use()
            assert os.environ[DIRECTORY_VARIABLE] == directory.path
            assert values.ValueClass is not before
            assert values.ValueClass._multiprocess
        finally:
            directory.remove()
        assert not os.path.exists(directory.path)
        assert DIRECTORY_VARIABLE not in os.environ, "absent before, absent after"
        assert values.ValueClass is before

    def test_remove_puts_back_a_directory_variable_that_was_set(
        self, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
    ) -> None:
        monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
        monkeypatch.setenv(DIRECTORY_VARIABLE, "/elsewhere")
        before = values.ValueClass
        directory = MetricsDirectory()
        directory.use()
        assert os.environ[DIRECTORY_VARIABLE] == directory.path
        directory.remove()
        assert os.environ[DIRECTORY_VARIABLE] == "/elsewhere"
        assert values.ValueClass is before

    def test_a_directory_never_used_is_removed_and_changes_nothing(
        self, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
    ) -> None:
        monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
        monkeypatch.setenv(DIRECTORY_VARIABLE, "/elsewhere")
        before = values.ValueClass
        directory = MetricsDirectory()
        directory.remove()
        assert not os.path.exists(directory.path)
        assert os.environ[DIRECTORY_VARIABLE] == "/elsewhere"
        assert values.ValueClass is before

    def test_remove_closes_the_files_this_process_counted_in(
        self, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
    ) -> None:
        """A process that starts and stops workers keeps no descriptor of a removed file."""
        monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
        monkeypatch.delenv(DIRECTORY_VARIABLE, raising=False)

        def open_in(path: str) -> list[str]:
            targets = [os.readlink(fd) for fd in Path("/proc/self/fd").iterdir() if fd.is_symlink()]
            return [target for target in targets if target.startswith(path)]

        directory = MetricsDirectory()
        directory.use()
        metrics_in(directory.path).polled(ECHO_ARN, "empty")
        assert open_in(directory.path), "counting opened a file under the directory"
        directory.remove()
        assert open_in(directory.path) == []

    def test_the_metrics_of_a_removed_directory_are_forgotten(
        self, directory: MetricsDirectory
    ) -> None:
        metrics = metrics_in(directory.path)
        assert metrics_in(directory.path) is metrics, "one per directory and process"
        directory.remove()
        directory.use()  # the fixture removes it again
        assert metrics_in(directory.path) is not metrics


class TestCounted:
    def test_tasks_are_counted_by_activity_and_outcome(self, directory: MetricsDirectory) -> None:
        metrics = PrometheusMetrics()
        ended(metrics, a_task(), Success("{}"), 0.002)
        ended(metrics, a_task(), Success("{}"), 3.0)
        ended(metrics, a_task(), Cancelled("gone"), 1.0)
        ended(metrics, a_task(JUDGE_ARN), Failure("ValueError", "not a quantity"), 0.2)
        ended(metrics, a_task(JUDGE_ARN), Failure("Inventory.OutOfStock"), 0.2)
        text = exposition(directory, NothingLive()).decode()
        lines = text.splitlines()
        assert 'sfn_activities_tasks_total{activity="it-Echo",outcome="succeeded"} 2.0' in lines
        assert 'sfn_activities_tasks_total{activity="it-Echo",outcome="cancelled"} 1.0' in lines
        assert 'sfn_activities_tasks_total{activity="it-Judge",outcome="failed"} 2.0' in lines
        assert (
            'sfn_activities_task_failures_total{activity="it-Judge",error="ValueError"} 1.0'
            in lines
        )
        found = scrape(directory)
        failure = "sfn_activities_task_failures_total"
        assert found[key(failure, activity="it-Judge", error="Inventory.OutOfStock")] == 1.0
        assert not [name for name, labels in found if name == failure and "it-Echo" in str(labels)]
        duration = "sfn_activities_task_duration_seconds"
        assert found[key(f"{duration}_count", activity="it-Echo")] == 3.0
        assert found[key(f"{duration}_sum", activity="it-Echo")] == pytest.approx(4.002)
        assert found[key(f"{duration}_bucket", activity="it-Echo", le="0.005")] == 1.0
        assert found[key(f"{duration}_bucket", activity="it-Echo", le="2.5")] == 2.0
        assert found[key(f"{duration}_bucket", activity="it-Echo", le="5.0")] == 3.0
        assert found[key(f"{duration}_bucket", activity="it-Echo", le="+Inf")] == 3.0
        assert found[key(f"{duration}_count", activity="it-Judge")] == 2.0

    def test_every_series_starts_at_zero(self, directory: MetricsDirectory) -> None:
        """A first poll error or restart is an increase, not the start of a series."""
        PrometheusMetrics().start_at_zero(["it-Echo"])
        found = scrape(directory)
        assert found[key("sfn_activities_polls_total", activity="it-Echo", result="error")] == 0
        assert found[key("sfn_activities_tasks_total", activity="it-Echo", outcome="failed")] == 0
        assert found[key("sfn_activities_process_restarts_total", reason="stuck")] == 0
        assert found[key("sfn_activities_task_wait_seconds_count", activity="it-Echo")] == 0
        counted = {name for name, _ in found}
        assert "sfn_activities_heartbeats_total" in counted
        assert "sfn_activities_delivery_retries_total" in counted

    def test_the_wait_for_a_slot_is_observed(self, directory: MetricsDirectory) -> None:
        metrics = PrometheusMetrics()
        metrics.task_started(a_task(waited=7.0))
        metrics.task_started(a_task(waited=-60.0))  # a clock set back: no negative wait
        found = scrape(directory)
        wait = "sfn_activities_task_wait_seconds"
        assert found[key(f"{wait}_count", activity="it-Echo")] == 2.0
        assert 7.0 <= found[key(f"{wait}_sum", activity="it-Echo")] < 60.0
        assert found[key(f"{wait}_bucket", activity="it-Echo", le="0.001")] == 1.0
        assert found[key(f"{wait}_bucket", activity="it-Echo", le="5.0")] == 1.0
        assert found[key(f"{wait}_bucket", activity="it-Echo", le="10.0")] == 2.0

    def test_polls_are_counted_by_the_activity_of_the_arn(
        self, directory: MetricsDirectory
    ) -> None:
        metrics = PrometheusMetrics()
        metrics.polled(ECHO_ARN, "empty")
        metrics.polled(ECHO_ARN, "empty")
        metrics.polled(ECHO_ARN, "task")
        metrics.polled(JUDGE_ARN, "error")
        lines = exposition(directory, NothingLive()).decode().splitlines()
        assert 'sfn_activities_polls_total{activity="it-Echo",result="empty"} 2.0' in lines
        found = scrape(directory)
        assert found[key("sfn_activities_polls_total", activity="it-Echo", result="task")] == 1.0
        assert found[key("sfn_activities_polls_total", activity="it-Judge", result="error")] == 1.0
        assert key("sfn_activities_polls_total", activity="it-Judge", result="empty") not in found

    def test_heartbeats_retries_and_restarts_are_counted(self, directory: MetricsDirectory) -> None:
        metrics = PrometheusMetrics()
        metrics.heartbeat(a_task(), "sent")
        metrics.heartbeat(a_task(), "sent")
        metrics.heartbeat(a_task(), "gone")
        metrics.heartbeat(a_task(JUDGE_ARN), "error")
        metrics.delivery_retried(a_task(JUDGE_ARN))
        metrics.process_restarted("crashed")
        metrics.process_restarted("recycled")
        metrics.process_restarted("recycled")
        lines = exposition(directory, NothingLive()).decode().splitlines()
        assert 'sfn_activities_process_restarts_total{reason="crashed"} 1.0' in lines
        assert 'sfn_activities_process_restarts_total{reason="recycled"} 2.0' in lines
        assert 'sfn_activities_delivery_retries_total{activity="it-Judge"} 1.0' in lines
        found = scrape(directory)
        beats = "sfn_activities_heartbeats_total"
        assert found[key(beats, activity="it-Echo", result="sent")] == 2.0
        assert found[key(beats, activity="it-Echo", result="gone")] == 1.0
        assert found[key(beats, activity="it-Judge", result="error")] == 1.0
        assert key("sfn_activities_delivery_retries_total", activity="it-Echo") not in found

    def test_the_help_says_what_a_metric_counts(self, directory: MetricsDirectory) -> None:
        PrometheusMetrics().process_restarted("stuck")
        text = exposition(directory, NothingLive()).decode()
        [family] = text_string_to_metric_families(text)
        assert (family.name, family.type) == ("sfn_activities_process_restarts", "counter")
        assert family.documentation.startswith("Task processes replaced, by reason")

    def test_every_event_of_metrics_is_counted(self) -> None:
        """A new event on Metrics that PrometheusMetrics does not count would count nothing."""
        events = [name for name in vars(Metrics) if not name.startswith("_")]
        assert len(events) == 7
        for name in events:
            assert getattr(PrometheusMetrics, name) is not getattr(Metrics, name), name


def count_in_child(path: str, parent: PrometheusMetrics, times: int) -> None:
    """What a task process does: count in the worker's directory, in files of its own."""
    metrics = metrics_in(path)
    assert metrics is not parent, "the child counts in metrics of its own"
    assert metrics_in(path) is metrics
    for _ in range(times):
        ended(metrics, a_task(), Success("{}"), 0.5)
        metrics.heartbeat(a_task(), "sent")
    metrics.process_restarted("crashed")


FAILURES = "sfn_activities_task_failures_total"


def failures(found: dict[Key, float]) -> dict[str, float]:
    """The failures counted, by error label (one activity)."""
    return {
        dict(labels)["error"]: value for (name, labels), value in found.items() if name == FAILURES
    }


def fail_with(path: str, names: list[str]) -> None:
    """A task process that fails a task with each error name."""
    metrics = metrics_in(path)
    for name in names:
        metrics.task_ended(a_task(), Failure(name))


class TestErrorLabels:
    def test_distinct_error_names_are_capped_then_counted_as_other(
        self, directory: MetricsDirectory
    ) -> None:
        """5,000 error names made from task input: at most the cap plus one series."""
        metrics = PrometheusMetrics()
        for i in range(5_000):
            metrics.task_ended(a_task(), Failure(f"Made.From.Input.{i}"))
        metrics.task_ended(a_task(), Failure("Made.From.Input.0"))
        counted = failures(scrape(directory))
        assert len(counted) == MAX_ERROR_LABELS + 1
        assert counted["Made.From.Input.0"] == 2, "a name let in keeps its own series"
        assert counted[OTHER_ERROR] == 5_000 - MAX_ERROR_LABELS
        assert sum(counted.values()) == 5_001, "every failure counts"

    def test_the_counts_of_ended_processes_are_capped_too(
        self, directory: MetricsDirectory
    ) -> None:
        """Processes replaced for weeks, each with names of its own: the series stay bounded."""
        context = multiprocessing.get_context("fork")
        for batch in range(3):
            names = [f"E{batch}.{i}" for i in range(MAX_ERROR_LABELS)]
            child = context.Process(target=fail_with, args=(directory.path, names))
            child.start()
            child.join(30)
            assert child.exitcode == 0
            assert child.pid is not None
            directory.process_ended(child.pid)
        counted = failures(scrape(directory))
        assert len(counted) == MAX_ERROR_LABELS + 1
        assert counted == {
            **{f"E0.{i}": 1.0 for i in range(MAX_ERROR_LABELS)},
            OTHER_ERROR: 2.0 * MAX_ERROR_LABELS,
        }, "the first names keep their series; the later ones add up under other"


class TestProcesses:
    def test_the_counts_of_another_process_add_up(self, directory: MetricsDirectory) -> None:
        parent = metrics_in(directory.path)
        assert metrics_in(directory.path) is parent
        ended(parent, a_task(), Success("{}"), 0.5)
        parent.heartbeat(a_task(), "sent")
        context = multiprocessing.get_context("fork")
        child = context.Process(target=count_in_child, args=(directory.path, parent, 4))
        child.start()
        child.join(30)
        assert child.exitcode == 0
        ended(parent, a_task(), Success("{}"), 0.5)
        assert len(os.listdir(directory.path)) >= 4, "counters and histograms of both"
        tasks = key("sfn_activities_tasks_total", activity="it-Echo", outcome="succeeded")
        beats = key("sfn_activities_heartbeats_total", activity="it-Echo", result="sent")
        restarts = key("sfn_activities_process_restarts_total", reason="crashed")
        count = key("sfn_activities_task_duration_seconds_count", activity="it-Echo")
        found = scrape(directory)
        assert found[tasks] == 2 + 4
        assert found[beats] == 1 + 4
        assert found[restarts] == 1
        assert found[count] == 2 + 4
        assert child.pid is not None
        directory.process_ended(child.pid)
        assert scrape(directory) == found, "an ended process's counts still count"
        names = os.listdir(directory.path)
        assert f"counter_{child.pid}.db" not in names, "added into the ended processes' file"
        assert {"counter_ended.db", "histogram_ended.db"} <= set(names)

        second = context.Process(target=count_in_child, args=(directory.path, parent, 3))
        second.start()
        second.join(30)
        assert second.exitcode == 0
        assert second.pid is not None
        directory.process_ended(second.pid)
        found = scrape(directory)
        assert found[tasks] == 2 + 4 + 3
        assert found[count] == 2 + 4 + 3
        assert found[restarts] == 2
        assert len(os.listdir(directory.path)) == len(names), "no file more per ended process"

    def test_metrics_of_a_directory_are_those_counted_in_it(
        self, directory: MetricsDirectory
    ) -> None:
        metrics = metrics_of(directory.path)
        assert metrics is metrics_in(directory.path)
        assert isinstance(metrics, PrometheusMetrics)

    def test_no_directory_no_metrics(self) -> None:
        assert metrics_of(None) is NO_METRICS
        assert type(NO_METRICS) is Metrics
        NO_METRICS.process_restarted("crashed")
        NO_METRICS.polled(ECHO_ARN, "empty")


class TestNeverRaises:
    def test_counting_after_the_directory_was_removed_does_not_raise(
        self, directory: MetricsDirectory
    ) -> None:
        metrics = PrometheusMetrics()
        ended(metrics, a_task(), Success("{}"), 0.1)
        directory.remove()
        assert not os.path.exists(directory.path)
        ended(metrics, a_task(), Success("{}"), 0.1)
        ended(metrics, a_task(JUDGE_ARN), Failure("ValueError"), 0.1)
        metrics.polled(ECHO_ARN, "empty")

    def test_a_count_that_fails_is_dropped_and_logged_once(
        self, directory: MetricsDirectory, caplog: pytest.LogCaptureFixture
    ) -> None:
        """The directory gone under a process that had not counted yet: its files fail."""
        metrics = PrometheusMetrics()
        for name in os.listdir(directory.path):
            os.remove(os.path.join(directory.path, name))
        os.rmdir(directory.path)
        with caplog.at_level(logging.DEBUG, logger="activities._ops.prometheus"):
            metrics.polled(ECHO_ARN, "empty")
            metrics.task_started(a_task())
            ended(metrics, a_task(), Failure("ValueError"), 0.1)
            metrics.heartbeat(a_task(), "sent")
            metrics.delivery_retried(a_task())
            metrics.process_restarted("crashed")
        records = [
            record for record in caplog.records if record.name == "activities._ops.prometheus"
        ]
        assert len(records) == 1, "later failures are not logged"
        [record] = records
        assert record.levelno == logging.DEBUG
        assert record.exc_info is not None
        assert isinstance(record.exc_info[1], OSError)
        os.mkdir(directory.path)
        assert scrape(directory) == {}, "nothing was counted"


class Record:
    """A stand-in for the worker's hand-off: what its record says of each slot and task list."""

    def __init__(self, slots: int, task_lists: int) -> None:
        #: The task list of the task each slot runs (-1: none), by position.
        self.cells = [-1] * slots
        #: How many tasks of each task list wait in the buffer.
        self.buffered = [0] * task_lists

    def running_cells(self) -> list[int]:
        return list(self.cells)

    def buffered_by_task_list(self) -> list[int]:
        return list(self.buffered)


def live_of(
    record: Record, names: list[str], async_positions: list[int] | None = None
) -> LiveMetrics:
    return LiveMetrics(
        record,  # type: ignore[arg-type]
        names,
        len(record.cells),
        async_positions or (),
    )


class TestLiveMetrics:
    def test_slots_and_tasks_are_read_from_the_hand_off_at_each_scrape(
        self, directory: MetricsDirectory
    ) -> None:
        record = Record(slots=3, task_lists=2)
        live = live_of(record, ["it-Echo", "it-Judge"])
        busy, free = (
            key("sfn_activities_slots", state="busy", kind="slot"),
            key("sfn_activities_slots", state="free", kind="slot"),
        )

        def running(name: str) -> Key:
            return key("sfn_activities_tasks_running", activity=name)

        def waiting(name: str) -> Key:
            return key("sfn_activities_tasks_waiting", activity=name)

        found = scrape(directory, live)
        assert (found[busy], found[free]) == (0, 3)
        assert (found[running("it-Echo")], found[running("it-Judge")]) == (0, 0)
        assert (found[waiting("it-Echo")], found[waiting("it-Judge")]) == (0, 0)

        record.cells = [0, 1, 0]
        record.buffered = [0, 2]
        found = scrape(directory, live)
        assert (found[busy], found[free]) == (3, 0)
        assert (found[running("it-Echo")], found[running("it-Judge")]) == (2, 1)
        assert (found[waiting("it-Echo")], found[waiting("it-Judge")]) == (0, 2)

        record.cells = [0, 1, -1]
        record.buffered = [1, 1]
        found = scrape(directory, live)
        assert (found[busy], found[free]) == (2, 1)
        assert (found[running("it-Echo")], found[running("it-Judge")]) == (1, 1)
        assert (found[waiting("it-Echo")], found[waiting("it-Judge")]) == (1, 1)

        lines = exposition(directory, live).decode().splitlines()
        assert 'sfn_activities_slots{kind="slot",state="busy"} 2.0' in lines
        assert 'sfn_activities_tasks_running{activity="it-Echo"} 1.0' in lines
        assert 'sfn_activities_tasks_waiting{activity="it-Judge"} 1.0' in lines

    def test_async_positions_are_counted_apart_from_the_slots(
        self, directory: MetricsDirectory
    ) -> None:
        """One slot and three async positions: a busy slot is no free capacity for sync work."""
        record = Record(slots=4, task_lists=1)
        record.cells = [0, -1, 0, -1]
        found = scrape(directory, live_of(record, ["it-Echo"], async_positions=[1, 2, 3]))
        slots = {
            (state, kind): found[key("sfn_activities_slots", state=state, kind=kind)]
            for state in ("busy", "free")
            for kind in ("slot", "async")
        }
        assert slots == {
            ("busy", "slot"): 1,
            ("free", "slot"): 0,
            ("busy", "async"): 1,
            ("free", "async"): 2,
        }
        assert found[key("sfn_activities_tasks_running", activity="it-Echo")] == 2

    def test_no_async_kind_without_async_positions(self, directory: MetricsDirectory) -> None:
        """A worker of slots alone shows no ``kind="async"`` series."""
        found = scrape(directory, live_of(Record(slots=2, task_lists=1), ["it-Echo"]))
        kinds = {
            dict(labels).get("kind") for name, labels in found if name == "sfn_activities_slots"
        }
        assert kinds == {"slot"}

    def test_task_lists_of_one_name_are_added_up(self, directory: MetricsDirectory) -> None:
        """One activity in two regions: one sample each, not two of one name and labels."""
        record = Record(slots=3, task_lists=2)
        record.cells = [0, 1, -1]
        record.buffered = [1, 3]
        found = scrape(directory, live_of(record, ["it-Echo", "it-Echo"]))
        assert found[key("sfn_activities_tasks_running", activity="it-Echo")] == 2
        assert found[key("sfn_activities_tasks_waiting", activity="it-Echo")] == 4
        names = [name for name, _ in found]
        assert names.count("sfn_activities_tasks_running") == 1

    def test_counted_and_live_metrics_are_scraped_together(
        self, directory: MetricsDirectory
    ) -> None:
        record = Record(slots=2, task_lists=1)
        record.cells = [-1, 0]
        PrometheusMetrics().polled(ECHO_ARN, "task")
        found = scrape(directory, live_of(record, ["it-Echo"]))
        assert found[key("sfn_activities_polls_total", activity="it-Echo", result="task")] == 1
        assert found[key("sfn_activities_slots", state="busy", kind="slot")] == 1
        assert found[key("sfn_activities_slots", state="free", kind="slot")] == 1
