"""An HTTP proxy that tunnels (``CONNECT``), on 127.0.0.1, for tests of the direct path.

It answers ``CONNECT host:port`` by connecting to ``host:port`` and relaying bytes both
ways until either side closes; it records each ``CONNECT`` with its headers. With
``require`` set, a ``CONNECT`` without that ``Proxy-Authorization`` is refused with 407.
"""

from __future__ import annotations

import contextlib
import socket
import socketserver
import threading
from typing import Self


class TunnelProxy(socketserver.ThreadingTCPServer):
    """A ``CONNECT`` proxy; use it as a context manager (it serves while inside)."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, *, require: str | None = None) -> None:
        super().__init__(("127.0.0.1", 0), _Tunnel)
        self.require = require
        #: Each CONNECT: its target and its headers (lower-case names).
        self.connects: list[tuple[str, dict[str, str]]] = []
        self.url = f"http://127.0.0.1:{self.server_address[1]}"
        self._thread = threading.Thread(target=self.serve_forever, args=(0.05,), daemon=True)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()
        self.server_close()


class _Tunnel(socketserver.StreamRequestHandler):
    server: TunnelProxy

    def handle(self) -> None:
        line = self.rfile.readline(65537).decode("latin-1")
        headers: dict[str, str] = {}
        while (header := self.rfile.readline(65537)) not in {b"\r\n", b"\n", b""}:
            name, _, value = header.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
        method, target, _ = [*line.split(), "", "", ""][:3]
        if method != "CONNECT":
            self.wfile.write(b"HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\n\r\n")
            return
        self.server.connects.append((target, headers))
        if self.server.require and headers.get("proxy-authorization") != self.server.require:
            self.wfile.write(
                b"HTTP/1.1 407 Proxy Authentication Required\r\n"
                b'Proxy-Authenticate: Basic realm="tests"\r\nContent-Length: 0\r\n\r\n'
            )
            return
        host, _, port = target.rpartition(":")
        try:
            upstream = socket.create_connection((host, int(port)), timeout=5)
        except OSError:
            self.wfile.write(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")
            return
        self.wfile.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
        self.wfile.flush()
        with upstream:
            back = threading.Thread(target=_relay, args=(upstream, self.connection), daemon=True)
            back.start()
            # The client waits for the 200 before it sends more: nothing was read ahead.
            _relay(self.connection, upstream)
            back.join(5)

    def finish(self) -> None:
        with contextlib.suppress(OSError):
            super().finish()


def _relay(source: socket.socket, sink: socket.socket) -> None:
    """Copy ``source`` to ``sink`` until ``source`` ends; then end ``sink``'s writing."""
    with contextlib.suppress(OSError):
        while data := source.recv(65536):
            sink.sendall(data)
    with contextlib.suppress(OSError):
        sink.shutdown(socket.SHUT_WR)
