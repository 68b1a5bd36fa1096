"""What a task process counts in: the worker's metrics directory, or nothing.

:mod:`activities._ops.metrics` says what is counted and :mod:`activities._ops.prometheus` counts
it with the optional ``prometheus_client``; a task process picks one here, so that the
first needs nothing of the second.
"""

from __future__ import annotations

from activities._ops.metrics import NO_METRICS, Metrics

__all__ = ["metrics_of"]


def metrics_of(directory: str | None) -> Metrics:
    """What this process counts in: under a worker's metrics ``directory``, or nothing."""
    if directory is None:
        return NO_METRICS
    from activities._ops.prometheus import metrics_in  # noqa: PLC0415 - the optional extra

    return metrics_in(directory)
