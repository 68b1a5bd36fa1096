"""The worker's HTTP endpoint (``--metrics-port``): what it shows operators, and how.

- ``/metrics``: the worker's metrics in Prometheus' text format (counted in every process,
  see :mod:`activities._ops.prometheus`);
- ``/healthz`` (liveness): 200 while the worker's supervision runs, 503 if it stalled;
- ``/readyz`` (readiness): 200 while the worker serves, 503 before every slot started,
  while it drains after a signal, and while every task list's last poll failed.

A 503's body says why, in one line. The worker makes one :class:`Operations` when it is
given a port, and calls it as it starts (:meth:`~Operations.prepare` before its task
processes exist, so that they count under its metrics directory;
:meth:`~Operations.serve` once its pool is built) and as it stops
(:meth:`~Operations.close`). :class:`HealthServer` is the HTTP side: it runs in a thread of
the worker's process, and answers requests in threads of their own, so a slow scrape never
holds up a probe.
"""

from __future__ import annotations

import http.server
import importlib.util
import logging
import threading
import time
from typing import TYPE_CHECKING, Protocol

from activities.errors import ConfigurationError

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from activities._ops.prometheus import MetricsDirectory, PrometheusMetrics

__all__ = [
    "METRICS_CONTENT_TYPE",
    "STALL_AFTER",
    "HealthServer",
    "Operations",
    "Supervision",
    "count_before_imports",
]

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


#: The content type of Prometheus' text format.
METRICS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

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


class HealthServer:
    """Serve the metrics and the probes on ``host:port`` (port 0: a free one).

    Args:
        host: the address to listen on.
        port: the port; 0 picks a free one (see :attr:`address`).
        metrics: the metrics, as the response's body.
        alive: ``None`` while the worker is alive, else why it is not.
        ready: ``None`` while the worker may be sent work, else why not.

    Raises:
        OSError: the address cannot be listened on (a port in use, say).
    """

    def __init__(
        self,
        host: str,
        port: int,
        *,
        metrics: Callable[[], bytes],
        alive: Callable[[], str | None],
        ready: Callable[[], str | None],
    ) -> None:
        routes: dict[str, Callable[[], tuple[int, str, bytes]]] = {
            "/metrics": lambda: (200, METRICS_CONTENT_TYPE, metrics()),
            "/healthz": lambda: _probe(alive()),
            "/readyz": lambda: _probe(ready()),
        }
        self._server = _Server((host, port), _handler(routes))
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.1},
            name="sfn-activities-health",
            daemon=True,
        )

    @property
    def address(self) -> tuple[str, int]:
        """The host and port listened on."""
        host, port = self._server.server_address[:2]
        return str(host), int(port)

    def start(self) -> None:
        """Answer requests from now on, in the background."""
        self._thread.start()

    def close(self) -> None:
        """Stop answering and close the socket."""
        if self._thread.is_alive():
            self._server.shutdown()
        self._server.server_close()


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True


def _probe(why_not: str | None) -> tuple[int, str, bytes]:
    if why_not is None:
        return 200, "text/plain; charset=utf-8", b"ok\n"
    return 503, "text/plain; charset=utf-8", why_not.encode() + b"\n"


def _handler(
    routes: dict[str, Callable[[], tuple[int, str, bytes]]],
) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(http.server.BaseHTTPRequestHandler):
        server_version = "sfn-activities"

        def do_GET(self) -> None:
            route = routes.get(self.path.partition("?")[0])
            if route is None:
                status, kind, body = 404, "text/plain; charset=utf-8", b"not found\n"
            else:
                try:
                    status, kind, body = route()
                except Exception:
                    logger.exception("answering %s failed", self.path)
                    status, kind, body = 500, "text/plain; charset=utf-8", b"error\n"
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - http.server's
            logger.debug("%s %s", self.address_string(), format % args)

    return Handler
