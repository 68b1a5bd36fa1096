"""What the worker counts, for ``--metrics-port``: the events, and where they go.

The worker's machinery tells a :class:`Metrics` what happens (a poll returned, a task
started or ended, a heartbeat was sent, an outcome retried, a process replaced). This
one counts nothing, at the cost of a method call: it is what runs without
``--metrics-port``. :class:`activities._ops.prometheus.PrometheusMetrics` counts the same
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

__all__ = [
    "HEARTBEAT_RESULTS",
    "NO_METRICS",
    "OUTCOMES",
    "POLL_RESULTS",
    "RESTART_REASONS",
    "Metrics",
    "outcome_name",
]

#: What became of a task (see :func:`outcome_name`).
OUTCOMES = ("succeeded", "failed", "cancelled")

#: How a poll ended.
POLL_RESULTS = ("task", "empty", "error")

#: How a heartbeat ended.
HEARTBEAT_RESULTS = ("sent", "gone", "error")

#: Why a task process was replaced (see :func:`activities.worker._process.restart_reason`).
RESTART_REASONS = ("crashed", "recycled", "stuck")


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

    def task_ran(self, task: Task, seconds: float) -> None:
        """``task`` ran for ``seconds``: its input decoded, ``run()``, its result encoded."""

    def task_ended(self, task: Task, outcome: Outcome) -> None:
        """Step Functions took ``outcome`` for ``task`` (a :class:`Cancelled`: it was gone).

        Counted once per task, where the outcome is reported: by a slot, or by the worker
        for a task it failed itself (a crash, the shutdown grace).
        """

    def heartbeat(self, task: Task, result: str) -> None:
        """A heartbeat for ``task`` was ``sent``, found it ``gone``, or ended in an ``error``."""

    def delivery_retried(self, task: Task) -> None:
        """An outcome of ``task`` was not taken and is sent again."""

    def process_restarted(self, reason: str) -> None:
        """A task process was replaced: it ``crashed``, was ``recycled`` or was ``stuck``."""


#: The metrics of a worker without ``--metrics-port``.
NO_METRICS = Metrics()
