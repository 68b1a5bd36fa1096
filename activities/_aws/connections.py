"""The direct path's connections to one endpoint: a urllib3 pool, set up as botocore sets its own.

:class:`Connections` hands out connected sockets of urllib3's connections and takes them
back. Everything about making them is urllib3's and botocore's: a
``botocore.httpsession.URLLib3Session`` made with the client's settings chooses the pool
manager (a proxy's, or none), the TLS context, the CA bundle (botocore's own, or
``AWS_CA_BUNDLE``'s), a client certificate, a proxy's credentials and its own TLS
(``proxy_ca_bundle``, ``proxy_client_cert``) and forwarding (``proxy_use_forwarding_for_https``);
urllib3 opens the connection, tunnels it through the proxy (``CONNECT``), wraps it in TLS,
and drops an idle connection the server closed. Only the request and its answer are written
and read by :mod:`activities._aws.exchange`, on the connection's socket.

The pool is this :class:`Connections`'s own, not the botocore client's: it keeps at most
``max_idle`` idle connections (the client's ``max_pool_connections`` or :data:`MAX_IDLE`,
whichever is more; urllib3 closes the ones over, with a warning, as for botocore's). A
forked child never uses its parent's connections: it closes its copies and opens its own.
"""

from __future__ import annotations

import os
import socket
import ssl
import threading
import weakref
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import urlsplit

import botocore.exceptions
import botocore.httpsession
import urllib3.exceptions

try:  # urllib3 2, and 1.26.8 and later
    from urllib3.util.ssl_match_hostname import CertificateError
except ImportError:  # pragma: no cover - urllib3 1.26 before 1.26.8
    CertificateError = ssl.CertificateError  # type: ignore[assignment,misc]

if TYPE_CHECKING:
    from collections.abc import Mapping

    from urllib3.connection import HTTPConnection
    from urllib3.connectionpool import HTTPConnectionPool

__all__ = ["MAX_IDLE", "Connections"]

#: Idle connections kept for the next calls, at most; more are closed.
MAX_IDLE = 64


class Connections:
    """Keep-alive connections to one endpoint, from a urllib3 pool botocore's way.

    Safe to use from many threads at once. :meth:`take` gives a connection, opened if
    need be; :meth:`give_back` returns it to the pool (or closes it).

    Args:
        endpoint_url: ``http(s)://host[:port]``.
        verify: verify TLS certificates: ``True`` (botocore's bundle), ``False``, or the
            path of a CA bundle.
        proxies: proxy URLs by scheme, as botocore resolved them for the client (its
            config's ``proxies``, or ``HTTP(S)_PROXY`` unless ``NO_PROXY`` exempts the
            endpoint).
        proxies_config: botocore's ``proxies_config`` (the proxy's TLS, forwarding).
        client_cert: a client certificate: a file holding it and its key, or a pair of
            files (certificate, key).
        connect_timeout: seconds to wait for a connection (the proxy's tunnel and TLS
            included).
        tcp_keepalive: turn TCP keep-alive on for the connections.
        max_idle: idle connections kept, at most.
        ssl_context: the TLS context of the connections made without a proxy: the
            botocore client's own, so that a process does not make (and, forked, copy the
            pages of) another; ``None``: one made as botocore makes it.

    Raises:
        ValueError: botocore or urllib3 refuse the settings (a proxy's CA bundle or
            certificate that cannot be read, a proxy URL they cannot parse).
    """

    def __init__(
        self,
        endpoint_url: str,
        *,
        verify: bool | str = True,
        proxies: Mapping[str, str] | None = None,
        proxies_config: Mapping[str, Any] | None = None,
        client_cert: str | tuple[str, str] | None = None,
        connect_timeout: float = 10.0,
        tcp_keepalive: bool = False,
        max_idle: int = MAX_IDLE,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.endpoint_url = endpoint_url
        # As botocore's endpoint sets the sockets up: no Nagle, keep-alive if asked.
        options = [(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)]
        if tcp_keepalive:
            options.append((socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1))
        self._settings: dict[str, Any] = {
            "verify": verify,
            "proxies": dict(proxies or {}),
            "proxies_config": dict(proxies_config or {}),
            "client_cert": client_cert,
            # The read timeout is each call's (see exchange): this one is never used.
            "timeout": (connect_timeout, connect_timeout),
            "max_pool_connections": max_idle,
            "socket_options": options,
        }
        self._ssl_context = ssl_context
        #: Whether a connection was ever asked for (its pool's locks were then taken).
        self._taken = False
        self._lock = threading.Lock()
        try:  # made now, so that settings refused are refused here, not at each call
            self._pool: _Pool | None = _Pool(endpoint_url, self._settings, ssl_context)
        except Exception as exc:
            msg = f"no connections can be made with these settings: {exc}"
            raise ValueError(msg) from exc
        # Every connection opened, to close this process's copies of them after a fork.
        self._opened: weakref.WeakSet[HTTPConnection] = weakref.WeakSet()
        _ALL.add(self)

    @property
    def proxy_url(self) -> str | None:
        """The proxy the connections go through, if any."""
        return self._current().proxy_url

    def take(self) -> tuple[Lease, HTTPConnection]:
        """A connection to the endpoint, connected (an idle one, or one opened now).

        With it, the lease to give it back with (:meth:`give_back`): its pool's, which also
        says how to write a request on it (``target``, ``extra_headers``).

        Raises:
            botocore.exceptions.EndpointConnectionError: no connection could be made.
            botocore.exceptions.ConnectTimeoutError: the connection was not made in time.
            botocore.exceptions.ProxyConnectionError: the proxy could not be reached or
                refused the tunnel.
            botocore.exceptions.SSLError: TLS failed (a certificate not trusted, a CA
                bundle that cannot be read, ...).
        """
        self._taken = True  # before any lock of the pool's: see _forked
        pool = self._current()
        try:
            conn = pool.get()
        except urllib3.exceptions.ClosedPoolError:  # closed by close() meanwhile
            pool = self._current()
            conn = pool.get()
        if conn.sock is None:
            try:
                pool.connect(conn)
            except BaseException as exc:
                error = pool.connect_error(exc, conn)  # before close(): it forgets the proxy
                conn.close()
                pool.urllib3._put_conn(conn)
                if error is None:
                    raise
                raise error from exc
            self._opened.add(conn)
        return pool, conn

    def give_back(self, lease: Lease, conn: HTTPConnection, *, reusable: bool) -> None:
        """Return ``conn`` to the pool it came from; closed first unless ``reusable``.

        A pool closed meanwhile (:meth:`close`) closes it: it never goes to the next pool.
        """
        if not reusable:
            conn.close()
        lease.urllib3._put_conn(conn)

    def close(self) -> None:
        """Close the idle connections (calls may still open new ones)."""
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.urllib3.close()  # its idle connections: the manager's clear() leaves them
            pool.session.close()

    def _current(self) -> _Pool:
        pool = self._pool
        if pool is None:
            with self._lock:
                pool = self._pool
                if pool is None:
                    pool = self._pool = _Pool(self.endpoint_url, self._settings, self._ssl_context)
        return pool

    def _forked(self) -> None:
        """In a forked child: close its copies of the parent's connections; open its own.

        Nothing of urllib3's is called: its locks may have been held by a thread of the
        parent at the fork. The parent's pool is kept in :data:`_LEFT`, emptied and with
        locks of the child's, for its finalizer (urllib3 closes a pool's connections at
        exit, taking its queue's lock). A pool no connection was ever asked of (made before
        the fork, as a worker makes its task processes' clients) is the child's to use:
        nothing of it is the parent's.
        """
        self._lock = threading.Lock()
        if self._pool is not None and self._taken:
            _disown(self._pool.urllib3)
            _LEFT.append(self._pool)
            self._pool = None
        for conn in list(self._opened):
            sock = conn.sock
            if sock is not None:
                sock.close()  # this process's copy: the parent's stays open
        self._opened = weakref.WeakSet()

    def __repr__(self) -> str:
        return f"<Connections {self.endpoint_url}>"


class _Pool:
    """The urllib3 pool of one endpoint and how requests go through it."""

    def __init__(
        self, endpoint_url: str, settings: dict[str, Any], ssl_context: ssl.SSLContext | None
    ) -> None:
        self.endpoint_url = endpoint_url
        url = endpoint_url.rstrip("/") + "/"  # the URL of each call, as botocore makes it
        # Its private helpers are those its send() uses: the pool as botocore chooses it.
        session: Any = _Session(ssl_context, **settings)
        self.session = session
        self.proxy_url: str | None = session._proxy_config.proxy_url_for(url)
        manager = session._get_connection_manager(url, self.proxy_url)
        pool: HTTPConnectionPool = manager.connection_from_url(url)
        session._setup_ssl_cert(pool, url, settings["verify"])
        self.urllib3 = pool
        #: The request target: ``/``, or the endpoint's URL through a forwarding proxy.
        self.target: str = session._get_request_target(url, self.proxy_url)
        scheme = urlsplit(endpoint_url).scheme
        self.tunnel = _requires_tunnel(pool, scheme)
        #: Headers each request carries besides its own: what urllib3 adds to a request it
        #: forwards (a forwarding proxy's credentials; none through a CONNECT tunnel).
        self.extra_headers: dict[str, str] = {} if self.tunnel else dict(pool.proxy_headers)

    def get(self) -> HTTPConnection:
        """An idle connection (urllib3 drops one the server closed), or a new unconnected one."""
        return cast("HTTPConnection", self.urllib3._get_conn())

    def connect(self, conn: HTTPConnection) -> None:
        conn.timeout = self.urllib3.timeout.connect_timeout  # type: ignore[assignment]
        if self.tunnel:
            self.urllib3._prepare_proxy(conn)  # CONNECT, then TLS to the endpoint
        else:
            conn.connect()

    def connect_error(self, exc: BaseException, conn: HTTPConnection) -> Exception | None:
        """The botocore exception for ``exc``, met connecting ``conn``; ``None``: none.

        As botocore's HTTP session names what urllib3 raises. A failure before the proxy
        answered is the proxy's: urllib3 2 tells when it has; with urllib3 1.26, every
        failure to connect through a proxy but TLS's is.
        """
        if not isinstance(exc, OSError | urllib3.exceptions.HTTPError | ValueError):
            return None
        url = self.endpoint_url
        through = getattr(conn, "has_connected_to_proxy", None)  # None: urllib3 1.26
        if self.proxy_url is not None and (
            through is False or (through is None and not isinstance(exc, _TLS_ERRORS))
        ):
            proxy_url = botocore.httpsession.mask_proxy_url(self.proxy_url)
            return botocore.exceptions.ProxyConnectionError(proxy_url=proxy_url, error=exc)
        if isinstance(exc, _TLS_ERRORS):
            return botocore.exceptions.SSLError(endpoint_url=url, error=exc)
        if isinstance(exc, urllib3.exceptions.NewConnectionError):  # before: it is a timeout's
            return botocore.exceptions.EndpointConnectionError(endpoint_url=url, error=exc)
        if isinstance(exc, urllib3.exceptions.ConnectTimeoutError | TimeoutError):
            return botocore.exceptions.ConnectTimeoutError(endpoint_url=url, error=exc)
        return botocore.exceptions.EndpointConnectionError(endpoint_url=url, error=exc)


class _Session(botocore.httpsession.URLLib3Session):
    """botocore's HTTP session, its pools without a proxy on the TLS context given, if any.

    botocore asks for a new context for each pool manager and for a proxy's own TLS,
    which it then changes: only the first, its manager without a proxy's, is the one given.
    """

    def __init__(self, ssl_context: ssl.SSLContext | None, **settings: Any) -> None:
        self._given = ssl_context
        super().__init__(**settings)

    def _get_ssl_context(self) -> ssl.SSLContext:
        given, self._given = self._given, None
        return given if given is not None else super()._get_ssl_context()  # type: ignore[misc]


#: What :meth:`Connections.take` gives to give a connection back with: its pool.
Lease = _Pool


def _requires_tunnel(pool: HTTPConnectionPool, scheme: str) -> bool:
    """Whether a connection of ``pool`` to a ``scheme`` endpoint goes through ``CONNECT``.

    As urllib3 decides (``urllib3.util.proxy`` from 1.26): through a proxy, to an https
    endpoint, unless an HTTPS proxy forwards (``proxy_use_forwarding_for_https``).
    """
    proxy = pool.proxy
    if proxy is None or scheme != "https":
        return False
    config = getattr(pool, "proxy_config", None)  # urllib3 1.26 and later
    return not (proxy.scheme == "https" and getattr(config, "use_forwarding_for_https", False))


def _disown(pool: HTTPConnectionPool) -> None:
    """In a forked child: empty ``pool``'s queue and give it locks of the child's own.

    A thread of the parent may have held the queue's lock at the fork: the child's
    finalizers would wait for it forever. The connections queued are the parent's (their
    copies are closed by :meth:`Connections._forked`).
    """
    queue = pool.pool
    if queue is None:
        return
    queue.mutex = threading.Lock()
    queue.not_empty = threading.Condition(queue.mutex)
    queue.not_full = threading.Condition(queue.mutex)
    queue.all_tasks_done = threading.Condition(queue.mutex)
    queue.queue.clear()


#: What TLS failing raises: the ssl module's errors, urllib3's, a name not matching.
_TLS_ERRORS = (ssl.SSLError, ssl.CertificateError, urllib3.exceptions.SSLError, CertificateError)


def _after_fork_in_child() -> None:
    for connections in list(_ALL):
        connections._forked()


#: Every Connections of this process, made anew in a forked child.
_ALL: weakref.WeakSet[Connections] = weakref.WeakSet()

#: Pools a forked child left to its parent (see Connections._forked): never touched again.
_LEFT: list[_Pool] = []

if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
