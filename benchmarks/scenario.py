"""What the benchmarks run: contenders, the arrivals of tasks, and scenarios.

:mod:`benchmarks.run` measures them and :mod:`benchmarks.report` writes what they measured;
both read these, neither from the other.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Arrivals", "Contender", "Scenario"]


@dataclass
class Contender:
    """A command that serves the benchmark's activity until it is killed."""

    label: str
    command: list[str]
    kind: str  # "bare", "worker" or "peer"
    polls: int = 1  # polls it keeps open when ready
    python: str = sys.executable
    unavailable: str | None = None  # why it could not run, when it could not
    max_tasks: int | None = None  # fewer tasks for a slow contender: its rate is steady
    series: str = ""  # in a sweep: the line it belongs to
    concurrency: int = 0  # in a sweep: its task slots (threads, processes, or their product)
    processes: int = 0  # the processes it was told to run tasks in, 0 if not told
    threads: int = 0  # the threads (per process) it was told to run tasks in, 0 if not told
    log_level: str | None = None  # a worker's --log-level; None: the command's default
    note: str = ""  # options of a worker's beyond its pool, as its label says them

    @property
    def headline(self) -> bool:
        """Whether it counts toward the targets: a worker with the command's defaults."""
        return self.log_level is None and not self.note


@dataclass
class Arrivals:
    """Tasks queued one at a time, each on an activity drawn at random with a fixed seed.

    They arrive ``1 / rate`` seconds apart for ``duration`` seconds, at an endpoint whose
    empty polls last ``poll_wait`` seconds; feeding starts once the contender has a poll
    open per activity, or after ``ready_timeout`` seconds with fewer.
    """

    activities: tuple[str, ...]
    rate: float  # tasks a second
    duration: float  # seconds
    poll_wait: float = 60.0
    ready_timeout: float = 20.0
    seed: int = 60

    @property
    def count(self) -> int:
        """How many tasks arrive."""
        return round(self.rate * self.duration)


@dataclass
class Scenario:
    """Tasks of one kind, at one network delay, served by several contenders."""

    title: str
    activity: str
    tasks: int  # in a sweep: per unit of concurrency
    delay: float
    contenders: list[Contender]
    rounds: int = 1  # runs of each contender but the peers (their rates are steady)
    sweep: bool = False
    arrivals: Arrivals | None = None  # tasks one at a time, timed each, not a rate
    key: str = ""  # what --only calls it
    results: dict[str, dict[str, Any]] = field(default_factory=dict)

    def tasks_for(self, contender: Contender) -> int:
        """How many tasks ``contender`` serves."""
        tasks = max(100, self.tasks * contender.concurrency) if self.sweep else self.tasks
        return min(tasks, contender.max_tasks or tasks)
