"""The worker's HTTP endpoint (``--metrics-port``): ``/metrics``, ``/healthz``, ``/readyz``.

- ``/metrics``: the worker's metrics in Prometheus' text format (see
  :mod:`activities._ops.prometheus`);
- ``/healthz`` (liveness): 200 while the worker's supervision runs, 503 if it stalled;
- ``/readyz`` (readiness): 200 while the worker serves, 503 before every slot started,
  while it drains after a signal, and while every task list's last poll failed.

A 503's body says why, in one line. The server runs in a thread of the worker's
process; requests are answered in threads of their own, so a slow scrape never holds up
a probe.
"""

from __future__ import annotations

import http.server
import logging
import threading
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["METRICS_CONTENT_TYPE", "HealthServer"]

logger = logging.getLogger(__name__)

#: The content type of Prometheus' text format.
METRICS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


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
