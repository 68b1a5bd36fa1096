"""The worker's settings, checked when they are made: a bad one names itself.

Also the settings that depend on more than themselves: the async positions, the heartbeat
intervals (on the activities served) and the client (on whether tasks run in processes).
"""

from __future__ import annotations

import math
import os
import pickle
from typing import TYPE_CHECKING, Any

import attrs

from activities._aws.sfnclient import CALL_TIMEOUT, make_client
from activities.errors import ConfigurationError

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping

    from mypy_boto3_stepfunctions import SFNClient

    from activities._activity import Activity

__all__ = [
    "ASYNC_TASKS",
    "SHUTDOWN_GRACE",
    "SILENCE_WARNING",
    "WorkerSettings",
    "async_tasks_for",
    "check_positive",
    "client_and_factory",
    "concurrency_limits",
    "heartbeat_intervals",
    "plural",
]

#: Async positions of each process that runs tasks (each task process; with ``threads``
#: alone, the worker's own) when ``async_tasks`` is not given and an activity served has an
#: ``async def run()``: Temporal's default for the activities a worker runs at once.
ASYNC_TASKS = 100

#: Seconds running tasks may take to finish after a graceful stop begins.
SHUTDOWN_GRACE = 30.0

#: Seconds without an answer from Step Functions, while a call is due one, before the
#: worker warns of it.
SILENCE_WARNING = 15.0


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


#: Polls the worker opens on busy task lists beyond one per task list, at most (without
#: ``pollers``): at a 20 ms round trip, 64 polls take 3,200 tasks a second, over six
#: times the ``GetActivityTask`` quota of a Region.
BUSY_POLLS = 64


@attrs.frozen(kw_only=True)
class WorkerSettings:
    """How a worker runs its pool; see :class:`~activities.Worker` for each setting.

    Raises:
        ConfigurationError: a setting is out of range (the message names it).
    """

    processes: int | None = attrs.field(default=None, validator=_positive)
    threads: int | None = attrs.field(default=None, validator=_positive)
    #: The async positions of each process that runs tasks, as :func:`async_tasks_for` says.
    async_tasks: int = attrs.field(default=0, validator=_at_least_zero)
    pollers: int | None = attrs.field(default=None, validator=_positive)
    buffer: int | None = attrs.field(default=None, validator=_positive)
    shutdown_grace: float = attrs.field(default=SHUTDOWN_GRACE, validator=_at_least_zero)
    max_tasks_per_process: int | None = attrs.field(default=None, validator=_positive)
    max_memory_per_process: int | None = attrs.field(default=None, validator=_positive)
    call_timeout: float = attrs.field(default=CALL_TIMEOUT, validator=_positive)
    silence_warning: float = attrs.field(default=SILENCE_WARNING, validator=_positive)

    @property
    def use_threads(self) -> bool:
        """Whether tasks run in threads of the worker's own process (``threads`` alone)."""
        return self.threads is not None and self.processes is None

    @property
    def slots_per_unit(self) -> int:
        """The slots of one task process (``threads`` with ``processes``), or of a thread."""
        return (self.threads or 1) if self.processes is not None else 1

    @property
    def positions_per_unit(self) -> int:
        """The slots of one unit and, in a task process, its async positions after them."""
        return self.slots_per_unit + self.async_tasks

    @property
    def concurrency(self) -> int:
        """How many slots and async positions: their positions in the worker's Control.

        Processes x (threads + async tasks), the threads, or the processes (the CPUs).
        """
        if self.use_threads:
            return (self.threads or 1) + self.async_tasks
        processes = self.processes or os.cpu_count() or 1
        return processes * self.positions_per_unit

    def is_async_position(self, position: int) -> bool:
        """Whether ``position`` is an async position (see :mod:`activities.worker._asyncslots`)."""
        if not self.async_tasks:
            return False
        if self.use_threads:
            return position >= (self.threads or 1)
        return position % self.positions_per_unit >= self.slots_per_unit

    def sync_positions(self) -> list[int] | None:
        """The positions that take sync tasks, when some do not; ``None``: all do."""
        if not self.async_tasks:
            return None
        return [at for at in range(self.concurrency) if not self.is_async_position(at)]

    def async_positions(self) -> list[int]:
        """The async positions (none without ``async_tasks``)."""
        return [at for at in range(self.concurrency) if self.is_async_position(at)]

    def units(self) -> list[list[int]]:
        """The positions of each unit the worker starts.

        A task process's slots and async positions; or, in the worker's own process
        (``threads`` alone), a thread slot each, and its async positions together.
        """
        if self.use_threads:
            threads = self.threads or 1
            units = [[position] for position in range(threads)]
            if self.async_tasks:
                units.append(list(range(threads, threads + self.async_tasks)))
            return units
        per_unit = self.positions_per_unit
        return [
            list(range(first, first + per_unit)) for first in range(0, self.concurrency, per_unit)
        ]

    def describe(self) -> str:
        """The pool's shape, for the log: ``4 processes``, ``2 processes x 8 threads``."""
        if self.use_threads:
            threads = plural(self.threads or 1, "thread")
            if self.async_tasks:
                return f"{threads} + {plural(self.async_tasks, 'async task')}"
            return threads
        count = self.processes or self.concurrency // self.positions_per_unit
        shape = plural(count, "process")
        if self.threads is not None:
            shape = f"{shape} x {plural(self.threads, 'thread')}"
        if self.async_tasks:
            each = " each" if count > 1 else ""
            shape = f"{shape} + {plural(self.async_tasks, 'async task')}{each}"
        return shape

    def polls_at_most(self, task_lists: int) -> int:
        """The most polls the worker keeps open at once, on ``task_lists`` task lists.

        ``pollers`` if given; else one per task list and :data:`BUSY_POLLS` more for the
        busy ones, and never more than there is room for (the slots and the buffer: each
        poll may bring a task).
        """
        if self.pollers is not None:
            return self.pollers
        return min(task_lists + BUSY_POLLS, self.concurrency + (self.buffer or task_lists))

    def short_of_polls(self, task_lists: int) -> str | None:
        """Why ``task_lists`` cannot all have a poll open at all times, if they cannot."""
        if self.pollers is None or self.pollers >= task_lists:
            return None
        return (
            f"{task_lists} task lists but at most {self.pollers} pollers: at times some task "
            "list has no poll open, and its tasks wait (up to 60 s) for one; leave pollers "
            "out, or give at least one per task list"
        )


def plural(number: int, noun: str) -> str:
    """``1 process``, ``2 processes``, ``0 tasks``: a count and its noun, for logs."""
    return f"{number} {noun}{'' if number == 1 else 'es' if noun.endswith('s') else 's'}"


def async_tasks_for(activities: Iterable[type[Activity]], async_tasks: int | None) -> int:
    """The async positions of each process that runs tasks: ``async_tasks`` if given.

    Else :data:`ASYNC_TASKS` when an activity of ``activities`` has an ``async def run()``,
    and none when none has (no position, no thread for them). 0: none, async tasks run on
    the slots.
    """
    if async_tasks is not None:
        return async_tasks
    return ASYNC_TASKS if any(activity._is_async() for activity in activities) else 0


def heartbeat_intervals(
    activities: Mapping[str, type[Activity]], overrides: Mapping[str, float | None] | None
) -> dict[str, float | None]:
    """Seconds between automatic heartbeats by activity name: the class's, or the override."""
    intervals = {name: activity.heartbeat_interval for name, activity in activities.items()}
    for name, interval in (overrides or {}).items():
        if name not in activities:
            msg = f"heartbeat_intervals: {name!r} is not an activity being served"
            raise ConfigurationError(msg)
        if interval is not None:
            check_positive(f"heartbeat_intervals[{name!r}]", interval)
        intervals[name] = interval
    return intervals


def concurrency_limits(
    activities: Mapping[str, type[Activity]], overrides: Mapping[str, int | None] | None
) -> dict[str, int | None]:
    """The most tasks of each activity held at once, by name: the class's, or the override."""
    limits = {name: activity.max_concurrency for name, activity in activities.items()}
    for name, limit in (overrides or {}).items():
        if name not in activities:
            msg = f"max_concurrency: {name!r} is not an activity being served"
            raise ConfigurationError(msg)
        if limit is not None and (
            isinstance(limit, bool) or not isinstance(limit, int) or limit < 1
        ):
            msg = f"max_concurrency[{name!r}] must be a whole number >= 1, got {limit!r}"
            raise ConfigurationError(msg)
        limits[name] = limit
    return limits


def client_and_factory(
    client: SFNClient | Callable[[], SFNClient] | None, *, use_threads: bool, connections: int
) -> tuple[Callable[[], SFNClient] | None, SFNClient]:
    """The factory task processes make their clients with, and the worker's own client.

    Raises:
        ConfigurationError: a client for task processes, which it cannot reach, or a
            factory that cannot be pickled to them.
    """
    if client is None:
        return None, make_client(max_pool_connections=connections)
    if callable(client):
        if not use_threads:
            try:
                pickle.dumps(client)
            except Exception as exc:  # noqa: BLE001 - whatever pickling raises
                msg = (
                    "client: each worker process calls the client factory, so it must be "
                    "picklable (a module-level function, or a functools.partial of one): "
                    f"{exc}"
                )
                raise ConfigurationError(msg) from None
        return client, client()
    if not use_threads:
        msg = (
            "client: a client cannot be shared with worker processes, each makes its own: "
            "pass a function that makes one (e.g. functools.partial(activities.make_client, "
            "endpoint_url=...)), leave client out to use boto3's default chain in each "
            "process, or run tasks in threads"
        )
        raise ConfigurationError(msg)
    return None, client
