"""What the worker counts, for ``--metrics-port``: the events, and where they go.

The worker's machinery tells a :class:`Metrics` what happens (a poll returned, a task
started or ended, a heartbeat was sent, an outcome retried, a process replaced). This
one counts nothing, at the cost of a method call: it is what runs without
``--metrics-port``. :class:`activities._prometheus.PrometheusMetrics` counts the same
events with ``prometheus_client``, in every process of the worker.

Labels name an activity by its name in Step Functions (:attr:`Task.activity_name
<activities.task.Task.activity_name>`, a prefix included), since that is what a task
list, a poll and the console know it by.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from activities.outcome import Failure, Success

if TYPE_CHECKING:
    from activities.outcome import Outcome
    from activities.task import Task

__all__ = ["NO_METRICS", "Metrics", "metrics_of", "outcome_name"]


def outcome_name(outcome: Outcome) -> str:
    """``succeeded``, ``failed`` or ``cancelled``: what became of a task."""
    if isinstance(outcome, Success):
        return "succeeded"
    if isinstance(outcome, Failure):
        return "failed"
    return "cancelled"


class Metrics:
    """The events the worker counts; this class counts none of them."""

    def polled(self, arn: str, result: str) -> None:
        """A poll of ``arn`` ended: ``task``, ``empty`` or ``error``."""

    def task_started(self, task: Task) -> None:
        """``run()`` starts for ``task``: it waited since its poll returned."""

    def task_ended(self, task: Task, outcome: Outcome, seconds: float) -> None:
        """``run()`` ended for ``task`` after ``seconds`` with ``outcome``."""

    def heartbeat(self, task: Task, result: str) -> None:
        """A heartbeat for ``task`` was ``sent``, found it ``gone``, or ended in an ``error``."""

    def delivery_retried(self, task: Task) -> None:
        """An outcome of ``task`` was not taken and is sent again."""

    def process_restarted(self, reason: str) -> None:
        """A task process was replaced: it ``crashed``, was ``recycled`` or was ``stuck``."""


#: The metrics of a worker without ``--metrics-port``.
NO_METRICS = Metrics()


def metrics_of(directory: str | None) -> Metrics:
    """What this process counts in: under a worker's metrics ``directory``, or nothing."""
    if directory is None:
        return NO_METRICS
    from activities._prometheus import metrics_in  # noqa: PLC0415 - the optional extra

    return metrics_in(directory)
