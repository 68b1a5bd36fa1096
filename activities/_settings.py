"""The worker's settings, checked when they are made: a bad one names itself."""

from __future__ import annotations

import math
import os
from typing import Any

import attrs

from activities.errors import ConfigurationError

__all__ = ["SHUTDOWN_GRACE", "WorkerSettings", "check_positive"]

#: Seconds running tasks may take to finish after a graceful stop begins.
SHUTDOWN_GRACE = 30.0


def check_positive(name: str, value: float, *, allow_zero: bool = False) -> None:
    """Refuse a setting that is not a finite number above 0 (or at least 0)."""
    if not (value >= 0 if allow_zero else value > 0) or not math.isfinite(value):
        msg = f"{name} must be {'>= 0' if allow_zero else '> 0'}, got {value!r}"
        raise ConfigurationError(msg)


def _positive(_: Any, attribute: attrs.Attribute[Any], value: float | None) -> None:
    if value is not None:
        check_positive(attribute.name, value)


def _at_least_zero(_: Any, attribute: attrs.Attribute[Any], value: float) -> None:
    check_positive(attribute.name, value, allow_zero=True)


@attrs.frozen(kw_only=True)
class WorkerSettings:
    """How a worker runs its pool; see :class:`~activities.Worker` for each setting.

    Raises:
        ConfigurationError: a setting is out of range (the message names it), or both
            ``processes`` and ``threads`` are given.
    """

    processes: int | None = attrs.field(default=None, validator=_positive)
    threads: int | None = attrs.field(default=None, validator=_positive)
    pollers: int | None = attrs.field(default=None, validator=_positive)
    shutdown_grace: float = attrs.field(default=SHUTDOWN_GRACE, validator=_at_least_zero)
    max_tasks_per_process: int | None = attrs.field(default=None, validator=_positive)
    max_memory_per_process: int | None = attrs.field(default=None, validator=_positive)

    def __attrs_post_init__(self) -> None:
        if self.processes is not None and self.threads is not None:
            msg = "give either processes or threads, not both"
            raise ConfigurationError(msg)

    @property
    def use_threads(self) -> bool:
        """Whether tasks run in threads of the worker's process."""
        return self.threads is not None

    @property
    def concurrency(self) -> int:
        """How many slots: the threads, the processes, or the number of CPUs."""
        return self.threads or self.processes or os.cpu_count() or 1

    @property
    def poll_limit(self) -> int:
        """How many polls may be open at once: one per slot unless fewer are asked for."""
        return min(self.pollers, self.concurrency) if self.pollers else self.concurrency
