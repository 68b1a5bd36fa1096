"""The worker's Prometheus metrics (``--metrics-port``), counted in all its processes.

Needs ``prometheus_client`` (``python3 -m pip install prometheus_client``), in its
multiprocess mode: every process of the worker (task processes, the worker's own)
counts in files of its own under the worker's :class:`MetricsDirectory`, which
:func:`exposition` adds up at each scrape, so that processes that ended or were replaced
still count; the files of a process that ended are added into one file of ended
processes' counts (:meth:`MetricsDirectory.process_ended`), so that the directory does
not grow with every process a worker replaces over weeks. What the worker knows at any
moment (slots busy and free, tasks running and waiting) is read from its shared state at
the scrape instead (:class:`LiveMetrics`).

The metrics and their labels are listed in ``docs/operations.md``.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import shutil
import tempfile
import threading
from typing import TYPE_CHECKING, Any, Protocol

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    mmap_dict,
    values,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead

from activities._ops.metrics import (
    HEARTBEAT_RESULTS,
    OUTCOMES,
    POLL_RESULTS,
    RESTART_REASONS,
    Metrics,
    outcome_name,
)
from activities.outcome import Failure

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence

    from prometheus_client.registry import Collector

    from activities.outcome import Outcome
    from activities.task import Task

__all__ = [
    "LiveMetrics",
    "MetricsDirectory",
    "PrometheusMetrics",
    "Record",
    "exposition",
    "metrics_in",
]

logger = logging.getLogger(__name__)

#: The environment variable by which ``prometheus_client`` finds the directory.
DIRECTORY_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"

#: Buckets of ``run()``'s seconds: from milliseconds to an hour.
DURATION_BUCKETS: tuple[float, ...] = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
DURATION_BUCKETS += (30, 60, 120, 300, 600, 1800, 3600, float("inf"))

#: Buckets of the seconds a task waited for a slot.
WAIT_BUCKETS: tuple[float, ...] = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5)
WAIT_BUCKETS += (10, 30, 60, float("inf"))

_NAMESPACE = "sfn_activities"

#: The most distinct error names ``sfn_activities_task_failures_total`` counts under
#: their own ``error`` label, in each process of the worker and in the counts of the
#: processes that ended; further names count as :data:`OTHER_ERROR`. Error names may be
#: made from task input: without a cap, each would be a series for the worker's lifetime.
MAX_ERROR_LABELS = 100

#: The ``error`` label of failures beyond :data:`MAX_ERROR_LABELS` names.
OTHER_ERROR = "other"

#: The family of the failures counter in metric files, and its label of error names.
_FAILURES = f"{_NAMESPACE}_task_failures"
_ERROR = "error"

#: The kinds of metric files whose values add up across processes.
_SUMMED = ("counter", "histogram", "summary")

#: The name, in place of a pid, of the files that hold the counts of ended processes.
_ENDED = "ended"

#: prometheus_client's file of one process's values (the format its collector reads);
#: untyped.
_Values: Any = mmap_dict.MmapedDict


class MetricsDirectory:
    """The worker's own multiprocess directory: made at start, removed at stop.

    While it is in use (:meth:`use`), metrics made in this process and the processes it
    starts count in files under it, the user's own metrics included.
    """

    def __init__(self) -> None:
        self.path = tempfile.mkdtemp(prefix="sfn-activities-metrics-")
        #: Held while the files are read (a scrape) or merged (a process ended).
        self.lock = threading.Lock()
        self._previous: tuple[str | None, type] | None = None

    def use(self) -> None:
        """Count this process's (and its children's) metrics under this directory."""
        self._previous = (os.environ.get(DIRECTORY_VARIABLE), values.ValueClass)
        os.environ[DIRECTORY_VARIABLE] = self.path
        values.ValueClass = values.MultiProcessValue()  # type: ignore[no-untyped-call]

    def remove(self) -> None:
        """Remove the directory, and count as before :meth:`use`."""
        if self._previous is not None:
            close = getattr(values.ValueClass, "close_all_files", None)
            if close is not None:
                close()  # this process's files under the directory
            variable, value_class = self._previous
            if variable is None:
                os.environ.pop(DIRECTORY_VARIABLE, None)
            else:
                os.environ[DIRECTORY_VARIABLE] = variable
            values.ValueClass = value_class
            self._previous = None
        _forget(self.path)
        shutil.rmtree(self.path, ignore_errors=True)

    def process_ended(self, pid: int) -> None:
        """Add the counts of a process that ended into those of ended processes.

        Its counters and histograms go into one file per kind (``counter_ended.db``,
        ``histogram_ended.db``), under the lock a scrape holds, so that no scrape counts
        them twice or not at all; its live gauges (the user's) are dropped. Gauges of
        other modes stay, one series per process, as ``prometheus_client`` keeps them.
        """
        with self.lock:
            mark_process_dead(pid, self.path)  # type: ignore[no-untyped-call]
            for kind in _SUMMED:
                ended = os.path.join(self.path, f"{kind}_{pid}.db")
                if not os.path.exists(ended):
                    continue
                archive = _Values(os.path.join(self.path, f"{kind}_{_ENDED}.db"))
                try:
                    names = {
                        name
                        for key, _, _ in archive.read_all_values()
                        if (name := _error_of(key)) is not None
                    }
                    for key, value, _, _ in _Values.read_all_values_from_file(ended):
                        key = _capped(key, names)  # noqa: PLW2901 - the key it counts under
                        total, _ = archive.read_value(key)
                        archive.write_value(key, total + value, 0.0)
                finally:
                    archive.close()
                os.remove(ended)


class PrometheusMetrics(Metrics):
    """The events of :class:`~activities._ops.metrics.Metrics`, counted with prometheus_client.

    A failure to count (the directory removed at a stop, a full disk) never reaches the
    task: it is logged once at DEBUG and the event goes uncounted.
    """

    def __init__(self) -> None:
        self._failed = False
        self._errors: set[str] = set()  # the error names counted under a label of their own
        self._errors_lock = threading.Lock()
        self.tasks = Counter(
            "tasks",
            "Tasks ended, by the outcome Step Functions took: succeeded, failed, or "
            "cancelled (the task was gone).",
            ["activity", "outcome"],
            namespace=_NAMESPACE,
            registry=None,
        )
        self.failures = Counter(
            "task_failures",
            f"Tasks that failed, by the Step Functions error name (the first "
            f"{MAX_ERROR_LABELS} names, then {OTHER_ERROR}).",
            ["activity", "error"],
            namespace=_NAMESPACE,
            registry=None,
        )
        self.duration = Histogram(
            "task_duration_seconds",
            "Seconds a task ran: its input decoded, run(), its result encoded.",
            ["activity"],
            buckets=DURATION_BUCKETS,
            namespace=_NAMESPACE,
            registry=None,
        )
        self.wait = Histogram(
            "task_wait_seconds",
            "Seconds from a task's arrival (its poll returned) to the start of run().",
            ["activity"],
            buckets=WAIT_BUCKETS,
            namespace=_NAMESPACE,
            registry=None,
        )
        self.polls = Counter(
            "polls",
            "Polls (GetActivityTask) that ended, by result: task, empty or error.",
            ["activity", "result"],
            namespace=_NAMESPACE,
            registry=None,
        )
        self.heartbeats = Counter(
            "heartbeats",
            "Heartbeats, by result: sent, gone (the task was closed) or error.",
            ["activity", "result"],
            namespace=_NAMESPACE,
            registry=None,
        )
        self.delivery_retries = Counter(
            "delivery_retries",
            "Outcomes sent again after Step Functions did not take them.",
            ["activity"],
            namespace=_NAMESPACE,
            registry=None,
        )
        self.restarts = Counter(
            "process_restarts",
            "Task processes replaced, by reason: crashed, recycled or stuck.",
            ["reason"],
            namespace=_NAMESPACE,
            registry=None,
        )

    def start_at_zero(self, activities: list[str]) -> None:
        """Show every series the worker will count as 0 from now on, not at its first count.

        So that ``rate()`` and ``increase()`` see a first poll error or restart. Failures
        by error name cannot be listed ahead.
        """
        for activity in activities:
            for outcome in OUTCOMES:
                self.tasks.labels(activity, outcome)
            for result in POLL_RESULTS:
                self.polls.labels(activity, result)
            for result in HEARTBEAT_RESULTS:
                self.heartbeats.labels(activity, result)
            self.delivery_retries.labels(activity)
            self.duration.labels(activity)
            self.wait.labels(activity)
        for reason in RESTART_REASONS:
            self.restarts.labels(reason)

    def polled(self, arn: str, result: str) -> None:
        """Count a poll of ``arn``."""
        self._count(self.polls, arn.rpartition(":")[2], result)

    def task_started(self, task: Task) -> None:
        """Observe the time ``task`` waited."""
        waited = (dt.datetime.now(dt.UTC) - task.started_at).total_seconds()
        try:
            self.wait.labels(task.activity_name).observe(max(0.0, waited))
        except Exception:  # noqa: BLE001 - see the class
            self._uncounted()

    def task_ran(self, task: Task, seconds: float) -> None:
        """Observe the task's duration."""
        try:
            self.duration.labels(task.activity_name).observe(seconds)
        except Exception:  # noqa: BLE001 - see the class
            self._uncounted()

    def task_ended(self, task: Task, outcome: Outcome) -> None:
        """Count the task's outcome."""
        activity = task.activity_name
        self._count(self.tasks, activity, outcome_name(outcome))
        if isinstance(outcome, Failure):
            self._count(self.failures, activity, self._error_label(outcome.error))

    def heartbeat(self, task: Task, result: str) -> None:
        """Count a heartbeat."""
        self._count(self.heartbeats, task.activity_name, result)

    def delivery_retried(self, task: Task) -> None:
        """Count a retry of an outcome."""
        self._count(self.delivery_retries, task.activity_name)

    def process_restarted(self, reason: str) -> None:
        """Count a replaced task process."""
        self._count(self.restarts, reason)

    def _error_label(self, error: str) -> str:
        """``error``, or :data:`OTHER_ERROR` once :data:`MAX_ERROR_LABELS` others were counted."""
        if error in self._errors:
            return error
        with self._errors_lock:
            if len(self._errors) < MAX_ERROR_LABELS:
                self._errors.add(error)
                return error
        return OTHER_ERROR

    def _count(self, counter: Counter, *labels: str) -> None:
        try:
            counter.labels(*labels).inc()
        except Exception:  # noqa: BLE001 - see the class
            self._uncounted()

    def _uncounted(self) -> None:
        if not self._failed:
            self._failed = True
            logger.debug(
                "a metric could not be counted; later failures are not logged",
                exc_info=True,  # noqa: LOG014 - called from the handlers above
            )


class Record(Protocol):
    """What the worker knows of its slots at a scrape (its hand-off keeps it)."""

    def running_cells(self) -> list[int]:
        """The task list of the task each slot runs now (-1: none), by position."""

    def buffered_by_task_list(self) -> list[int]:
        """How many tasks of each task list wait for a slot now."""


class LiveMetrics:
    """What the worker's record says at a scrape: slots, tasks running and waiting.

    Args:
        handoff: the worker's hand-off, which keeps the record.
        names: the activity's name of each task list, in the hand-off's order.
        slots: how many slots (and async positions) the worker has.
        async_positions: the positions that are async positions: counted under
            ``kind="async"``, the slots under ``kind="slot"``.
    """

    def __init__(
        self,
        handoff: Record,
        names: list[str],
        slots: int,
        async_positions: Sequence[int] = (),
    ) -> None:
        self._handoff = handoff
        self._names = names
        positions = set(async_positions)
        self._kinds = [
            ("slot", [at for at in range(slots) if at not in positions]),
            ("async", sorted(positions)),
        ]

    def collect(self) -> Iterator[GaugeMetricFamily]:
        """The gauges, read now."""
        cells = self._handoff.running_cells()
        running = [0] * len(self._names)
        for index in cells:
            if index >= 0:
                running[index] += 1
        slots = GaugeMetricFamily(
            f"{_NAMESPACE}_slots",
            "Slots (kind slot) and async positions (kind async) running a task (busy) or not "
            "(free).",
            labels=["state", "kind"],
        )
        for kind, positions in self._kinds:
            if kind == "slot" or positions:
                busy = sum(cells[at] >= 0 for at in positions)
                slots.add_metric(["busy", kind], busy)
                slots.add_metric(["free", kind], len(positions) - busy)
        yield slots
        tasks = GaugeMetricFamily(
            f"{_NAMESPACE}_tasks_running", "Tasks running now.", labels=["activity"]
        )
        waiting = GaugeMetricFamily(
            f"{_NAMESPACE}_tasks_waiting",
            "Tasks received that wait in the worker's buffer for a free slot.",
            labels=["activity"],
        )
        by_name: dict[str, list[int]] = {}
        for name, count, buffered in zip(
            self._names, running, self._handoff.buffered_by_task_list(), strict=True
        ):
            counts = by_name.setdefault(name, [0, 0])
            counts[0] += count
            counts[1] += buffered
        for name, (count, buffered) in by_name.items():
            tasks.add_metric([name], count)
            waiting.add_metric([name], buffered)
        yield tasks
        yield waiting


def exposition(directory: MetricsDirectory, live: Collector) -> bytes:
    """The worker's metrics in Prometheus' text format: every process's, and ``live``."""
    registry = CollectorRegistry(auto_describe=False)
    MultiProcessCollector(registry, path=directory.path)  # type: ignore[no-untyped-call]
    registry.register(live)
    with directory.lock:
        return generate_latest(registry)


_in_this_process: dict[tuple[str, int], PrometheusMetrics] = {}


def metrics_in(path: str) -> PrometheusMetrics:
    """The metrics this process counts under the directory at ``path``: made once.

    In a task process started by a new interpreter, ``prometheus_client`` counts in its
    multiprocess mode already (the directory is in the environment it inherited).
    """
    key = (path, os.getpid())
    metrics = _in_this_process.get(key)
    if metrics is None:
        if os.environ.get(DIRECTORY_VARIABLE) != path:
            os.environ[DIRECTORY_VARIABLE] = path
            values.ValueClass = values.MultiProcessValue()  # type: ignore[no-untyped-call]
        metrics = _in_this_process[key] = PrometheusMetrics()
    return metrics


def _error_of(key: str) -> str | None:
    """The error name of a failures counter's key in a metric file; ``None`` for others."""
    if not key.startswith(f'["{_FAILURES}"'):
        return None
    labels = json.loads(key)[2]
    error = labels.get(_ERROR)
    return error if isinstance(error, str) else None


def _capped(key: str, names: set[str]) -> str:
    """``key``, or its failures counted as :data:`OTHER_ERROR` when ``names`` are full.

    ``names`` are the error names counted under their own label so far; a name let in is
    added to them.
    """
    error = _error_of(key)
    if error is None or error in names:
        return key
    if len(names) < MAX_ERROR_LABELS:
        names.add(error)
        return key
    metric, sample, labels, help_text = json.loads(key)
    labels[_ERROR] = OTHER_ERROR
    return mmap_dict.mmap_key(metric, sample, list(labels), list(labels.values()), help_text)


def _forget(path: str) -> None:
    for key in [key for key in _in_this_process if key[0] == path]:
        del _in_this_process[key]
