"""An HTTP proxy on 127.0.0.1 that tunnels and forwards, for tests of the direct path.

It answers ``CONNECT host:port`` by connecting to ``host:port`` and relaying bytes both
ways until either side closes; it records each ``CONNECT`` with its headers. A request
naming its URL in full (``POST http://host:port/ HTTP/1.1``) is forwarded: sent as it is
to ``host:port`` (a server takes that form too), then the connection is relayed both
ways; the first request of each connection is recorded. With ``require`` set, a request
without that ``Proxy-Authorization`` is refused with 407. With ``tls``, it is an HTTPS
proxy: its clients speak TLS to it first.
"""

from __future__ import annotations

import contextlib
import socket
import socketserver
import threading
from typing import TYPE_CHECKING, Self
from urllib.parse import urlsplit

if TYPE_CHECKING:
    import ssl


class TunnelProxy(socketserver.ThreadingTCPServer):
    """A ``CONNECT`` proxy; use it as a context manager (it serves while inside)."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, *, require: str | None = None, tls: ssl.SSLContext | None = None) -> None:
        super().__init__(("127.0.0.1", 0), _Tunnel)
        self.require = require
        if tls is not None:  # an HTTPS proxy: TLS to the proxy, then (tunnelled) the endpoint's
            self.socket = tls.wrap_socket(self.socket, server_side=True)
        #: Each CONNECT: its target and its headers (lower-case names).
        self.connects: list[tuple[str, dict[str, str]]] = []
        #: The first request forwarded on each connection: its target and its headers.
        self.forwarded: list[tuple[str, dict[str, str]]] = []
        scheme = "https" if tls is not None else "http"
        self.url = f"{scheme}://127.0.0.1:{self.server_address[1]}"
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
        head = [self.rfile.readline(65537)]
        headers: dict[str, str] = {}
        while (header := self.rfile.readline(65537)) not in {b"\r\n", b"\n", b""}:
            head.append(header)
            name, _, value = header.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
        head.append(b"\r\n")
        method, target, _ = [*head[0].decode("latin-1").split(), "", "", ""][:3]
        tunnel = method == "CONNECT"
        if not tunnel and not target.startswith("http://"):
            self.wfile.write(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
            return
        (self.server.connects if tunnel else self.server.forwarded).append((target, headers))
        if self.server.require and headers.get("proxy-authorization") != self.server.require:
            self.wfile.write(
                b"HTTP/1.1 407 Proxy Authentication Required\r\n"
                b'Proxy-Authenticate: Basic realm="tests"\r\nContent-Length: 0\r\n\r\n'
            )
            return
        address = target if tunnel else urlsplit(target).netloc
        host, _, port = address.rpartition(":")
        try:
            upstream = socket.create_connection((host, int(port)), timeout=5)
        except OSError:
            self.wfile.write(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")
            return
        upstream.settimeout(None)
        if tunnel:
            self.wfile.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
            self.wfile.flush()
        else:  # the request as it came (a request waits for its answer: nothing more was sent)
            body = self.rfile.read(int(headers.get("content-length", "0")))
            upstream.sendall(b"".join(head) + body)
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
