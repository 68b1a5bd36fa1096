"""What a worker with ``metrics_port`` shows its operators: metrics, liveness, readiness.

The worker makes one :class:`Operations` when it is given a port, and calls it as it
starts (:meth:`~Operations.prepare` before its task processes exist, so that they
count under its metrics directory; :meth:`~Operations.serve` once its pool is built) and
as it stops (:meth:`~Operations.close`). The HTTP side is :mod:`activities._ops.health`; the
counting in every process, :mod:`activities._ops.prometheus`.
"""

from __future__ import annotations

import importlib.util
import logging
import time
from typing import TYPE_CHECKING, Protocol

from activities._ops.health import HealthServer
from activities.errors import ConfigurationError

if TYPE_CHECKING:
    import threading
    from collections.abc import Callable, Sequence

    from activities._ops.prometheus import MetricsDirectory, PrometheusMetrics

__all__ = ["STALL_AFTER", "Operations", "Supervision", "count_before_imports"]

logger = logging.getLogger(__name__)


class Supervision(Protocol):
    """What the endpoint reads of the worker's supervision (its hand-off keeps it)."""

    #: When (``time.monotonic()``) the hand-off last looked at the waiting tasks.
    looked_at: float

    def running_cells(self) -> list[int]:
        """The task list of the task each slot runs now (-1: none), by position."""

    def buffered_by_task_list(self) -> list[int]:
        """How many tasks of each task list wait for a slot now."""

    def all_failing(self) -> bool:
        """Whether the last poll of every task list failed."""


#: Seconds without a look from the hand-off (it looks every few milliseconds) after which
#: the worker's supervision counts as stalled: ``/healthz`` answers 503.
STALL_AFTER = 10.0

#: Seconds ``/healthz`` waits for the worker's lock before it counts as stalled.
LOCK_WAIT = 1.0

#: The directory :func:`count_before_imports` made, until a worker takes it.
_early: list[MetricsDirectory] = []


def count_before_imports() -> MetricsDirectory:
    """Make and use the metrics directory of the worker this process is about to start.

    The command line calls it before it imports the user's modules, so that the metrics
    they make at import time count under it too (in every task process); the next
    worker with ``metrics_port`` takes it as its own and removes it at its stop.

    Raises:
        ConfigurationError: ``prometheus_client`` is not installed.
    """
    _check_installed()
    from activities._ops.prometheus import MetricsDirectory  # noqa: PLC0415 - the optional extra

    directory = MetricsDirectory()
    directory.use()
    _early.append(directory)
    return directory


def _check_installed() -> None:
    if importlib.util.find_spec("prometheus_client") is None:
        msg = "metrics need prometheus_client: python3 -m pip install prometheus_client"
        raise ConfigurationError(msg)


class Operations:
    """The worker's metrics directory and HTTP endpoint, from its start to its stop.

    Args:
        host: the address the endpoint listens on.
        port: its port (0: a free one, see :attr:`address`).

    Raises:
        ConfigurationError: ``prometheus_client`` is not installed.
    """

    def __init__(self, host: str, port: int) -> None:
        _check_installed()
        self.host = host
        self.port = port
        self._directory: MetricsDirectory | None = None
        self._server: HealthServer | None = None

    @property
    def address(self) -> tuple[str, int] | None:
        """The host and port the endpoint listens on, once it does."""
        return None if self._server is None else self._server.address

    def prepare(self) -> str:
        """Make the worker's metrics directory and count under it; its path.

        The directory :func:`count_before_imports` made is taken instead, if there is one.
        """
        from activities._ops.prometheus import MetricsDirectory  # noqa: PLC0415 - the optional extra

        if _early:
            self._directory = _early.pop()
        else:
            self._directory = MetricsDirectory()
            self._directory.use()
        logger.debug("metrics of the worker's processes are in %s", self._directory.path)
        return self._directory.path

    def metrics(self) -> PrometheusMetrics:
        """What this process (the worker's) counts in."""
        from activities._ops.prometheus import metrics_in  # noqa: PLC0415 - the optional extra

        assert self._directory is not None  # noqa: S101 - prepared
        return metrics_in(self._directory.path)

    def serve(
        self,
        *,
        slots: int,
        stopping: Callable[[], bool],
        names: list[str],
        handoff: Supervision,
        started: threading.Event,
        lock: threading.Lock,
        async_positions: Sequence[int] = (),
    ) -> None:
        """Listen, and answer from now on.

        Args:
            slots: how many slots (and async positions) the worker has.
            stopping: whether the worker stops.
            names: the activity's name of each task list, in the hand-off's order.
            async_positions: which positions are async positions.
            handoff: the worker's hand-off, whose looks say the worker is alive.
            started: set once every slot has started.
            lock: the worker's lock, which a stalled worker may hold.

        Raises:
            ConfigurationError: the port cannot be listened on.
        """
        from activities._ops.prometheus import LiveMetrics, exposition  # noqa: PLC0415

        assert self._directory is not None  # noqa: S101 - prepared
        directory, live = (
            self._directory,
            LiveMetrics(handoff, names, slots, async_positions),
        )
        self.metrics().start_at_zero(sorted(set(names)))

        def alive() -> str | None:
            silent = time.monotonic() - handoff.looked_at
            if silent > STALL_AFTER:
                return f"stalled: the worker's hand-off has not run for {silent:.0f} s"
            if not lock.acquire(timeout=LOCK_WAIT):
                return f"stalled: the worker's lock was held for over {LOCK_WAIT:.0f} s"
            lock.release()
            return None

        def ready() -> str | None:
            if stopping():
                return "not ready: the worker is stopping"
            if not started.is_set():
                return "not ready: the slots are starting"
            if handoff.all_failing():
                return "not ready: the last poll of every task list failed"
            return None

        try:
            self._server = HealthServer(
                self.host,
                self.port,
                metrics=lambda: exposition(directory, live),
                alive=alive,
                ready=ready,
            )
        except OSError as exc:
            msg = f"cannot serve metrics on {self.host}:{self.port}: {exc.strerror or exc}"
            raise ConfigurationError(msg) from None
        self._server.start()
        host, port = self._server.address
        logger.info("metrics on http://%s:%d/metrics; probes /healthz and /readyz", host, port)

    def process_ended(self, pid: int | None) -> None:
        """A task process ended: its live gauges (the user's) go."""
        if self._directory is not None and pid is not None:
            self._directory.process_ended(pid)

    def close(self) -> None:
        """Stop answering, and remove the metrics directory."""
        if self._server is not None:
            self._server.close()
            self._server = None
        if self._directory is not None:
            self._directory.remove()
            self._directory = None
