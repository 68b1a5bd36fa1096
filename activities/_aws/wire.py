"""The activity API's calls over the framework's own HTTP connections: the direct path.

A worker spends most of its own CPU time in four calls, ``GetActivityTask``,
``SendTaskSuccess``, ``SendTaskFailure`` and ``SendTaskHeartbeat``, and botocore spends
about 1 ms of CPU on each: its event hooks, parameter validation, serializer, signer,
urllib3 and parser. :class:`Wire` makes those four calls itself, about four times
cheaper: the same JSON 1.0 request botocore sends, signed with Signature Version 4 and the
credentials of the boto3 client it stands in for (:mod:`activities._aws.sigv4`), over
keep-alive connections from a urllib3 pool set up as botocore sets up the client's: the
same TLS, CA bundle, client certificate and proxies (:mod:`activities._aws.connections`).
Only the request and its answer are written and read by the framework
(:mod:`activities._aws.exchange`). Its errors are botocore's (``ClientError`` with the
service's code, ``EndpointConnectionError``, ``ReadTimeoutError``, ...), so that
:class:`~activities.ActivityClient` handles both paths alike.

Only clients made by :func:`~activities.make_client` take the direct path (``direct=True``,
the default), and only when their configuration is one it speaks (see :meth:`Wire.of`:
botocore's own HTTP session, an endpoint without a path, no tracer wrapping botocore's
calls). A client of one's own, or ``make_client(direct=False)``, goes through botocore for
every call, so that its event hooks, a ``Stubber``, or instrumentation (X-Ray,
OpenTelemetry) see the calls.
"""

from __future__ import annotations

import http.client
import inspect
import json
import logging
import os
import ssl
import types
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import botocore
import botocore.exceptions
import botocore.httpsession

from activities._aws.connections import MAX_IDLE, Connections
from activities._aws.exchange import Answer, exchange, request
from activities._aws.sigv4 import Signer

if TYPE_CHECKING:
    import time
    from collections.abc import Callable, Mapping

    from botocore.credentials import Credentials
    from mypy_boto3_stepfunctions import SFNClient

__all__ = ["MAX_IDLE", "Wire", "allow_direct"]

logger = logging.getLogger(__name__)

#: The attribute set on a client made by make_client whose calls may take the direct path
#: (absent: the client goes through botocore).
_DIRECT = "_sfn_activities_direct"

#: The attribute holding a client's wire, once made (see Wire.of).
_WIRE = "_sfn_activities_wire"

_OK = 200
_NOT_EMPTY = ("taskToken", "activityArn", "workerName")
_DEFAULT_PORTS = {"http": 80, "https": 443}


def allow_direct(client: SFNClient) -> None:
    """Let ``client``'s activity calls take the direct path, signed as ``client`` signs.

    Nothing changes for a client whose signer is not one this module knows (a botocore
    of another make): its calls go through botocore.
    """
    signer = getattr(client, "_request_signer", None)
    if signer is not None and hasattr(signer, "_credentials"):
        setattr(client, _DIRECT, True)


class Wire:
    """Make the activity API's calls of one Step Functions client on connections of its own.

    Safe to use from many threads at once: each call takes an idle connection, or opens
    one, and puts it back when the answer is read (see
    :class:`~activities._aws.connections.Connections`). After a fork, the child opens its own.

    Args:
        endpoint_url: the client's endpoint, e.g. ``https://states.us-east-1.amazonaws.com``.
        region: the Region calls are signed for.
        credentials: botocore credentials (refreshed as they expire), or ``None``.
        service: the signing name of the service.
        verify: verify TLS certificates: ``True`` (botocore's bundle), ``False``, or the
            path of a CA bundle.
        connect_timeout: seconds to wait for a connection.
        read_timeout: seconds a long poll waits for its answer (the client's read timeout).
        user_agent_extra: added to the ``User-Agent`` header (the client's config's).
        tcp_keepalive: turn TCP keep-alive on for the connections (the client's config's).
        proxies: proxy URLs by scheme, as botocore resolved them for the client.
        proxies_config: botocore's ``proxies_config`` (a proxy's own TLS, forwarding).
        client_cert: a client certificate: one file with its key, or (certificate, key).
        max_idle: idle connections kept, at most.
        ssl_context: the TLS context of connections without a proxy (the client's own).
    """

    def __init__(
        self,
        endpoint_url: str,
        *,
        region: str,
        credentials: Credentials | None,
        service: str = "states",
        verify: bool | str = True,
        connect_timeout: float = 10.0,
        read_timeout: float = 70.0,
        user_agent_extra: str = "",
        tcp_keepalive: bool = False,
        proxies: Mapping[str, str] | None = None,
        proxies_config: Mapping[str, Any] | None = None,
        client_cert: str | tuple[str, str] | None = None,
        max_idle: int = MAX_IDLE,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        parts = urlsplit(endpoint_url)
        if parts.scheme not in _DEFAULT_PORTS or not parts.hostname:
            msg = f"not an http(s) endpoint: {endpoint_url!r}"
            raise ValueError(msg)
        if parts.path not in {"", "/"} or parts.query:
            msg = f"an endpoint with a path or a query: {endpoint_url!r}"
            raise ValueError(msg)
        self.endpoint_url = endpoint_url
        self._hostname = parts.hostname
        port = parts.port or _DEFAULT_PORTS[parts.scheme]
        # The Host header as botocore sends (and signs) it: no default port.
        host = self._hostname if ":" not in self._hostname else f"[{self._hostname}]"
        self._host = host if port == _DEFAULT_PORTS[parts.scheme] else f"{host}:{port}"
        self._signer = Signer(self._host, region=region, service=service, credentials=credentials)
        #: Seconds a long poll waits for its answer.
        self.read_timeout = read_timeout
        self._user_agent = " ".join(
            filter(None, (f"sfn-activities botocore/{botocore.__version__}", user_agent_extra))
        )
        self._connections = Connections(
            endpoint_url,
            verify=verify,
            proxies=proxies,
            proxies_config=proxies_config,
            client_cert=client_cert,
            connect_timeout=connect_timeout,
            tcp_keepalive=tcp_keepalive,
            max_idle=max_idle,
            ssl_context=ssl_context,
        )

    @classmethod
    def of(cls, client: object) -> Wire | None:
        """The direct path for ``client``, or ``None`` if its calls must go through botocore.

        ``None`` unless :func:`allow_direct` was called on it, or when its configuration is
        one the direct path does not speak: an HTTP session not botocore's own, an
        endpoint that is not http(s) or has a path, proxy settings botocore or urllib3
        refuse (botocore then says why at each call), botocore's calls instrumented (a
        wrapped ``_make_api_call``, as X-Ray and OpenTelemetry wrap it, when the client is
        made). The client's proxies (its config's, or ``HTTP(S)_PROXY`` and ``NO_PROXY`` as
        botocore read them), ``proxies_config``, client certificate and CA bundle are the
        direct path's too. Which path was taken, and why, is logged at DEBUG.

        One wire per client: made at the first call, then the same (its connections are
        shared by every :class:`~activities.ActivityClient` of the client). A worker makes
        it before forking task processes, with their client, so that they share its pages.
        """
        made: Wire | None = getattr(client, _WIRE, None)
        if made is not None:
            return made
        meta = getattr(client, "meta", None)
        if not getattr(client, _DIRECT, False) or meta is None:
            return None
        config = meta.config
        endpoint_url: str = meta.endpoint_url
        http_session = getattr(getattr(client, "_endpoint", None), "http_session", None)
        why_not = _why_not(client, endpoint_url, http_session)
        if why_not:
            logger.debug("the activity calls go through botocore: %s", why_not)
            return None
        appid = getattr(config, "user_agent_appid", None)  # botocore 1.31 and later
        extra = " ".join(filter(None, (config.user_agent_extra, appid and f"app/{appid}")))
        try:
            wire = cls(
                endpoint_url,
                region=meta.region_name,
                credentials=client._request_signer._credentials,  # type: ignore[attr-defined]
                service=meta.service_model.signing_name or "states",
                # What botocore verifies TLS with: its bundle, AWS_CA_BUNDLE's, or nothing.
                verify=getattr(http_session, "_verify", True),
                connect_timeout=config.connect_timeout,
                read_timeout=config.read_timeout,
                user_agent_extra=extra,
                tcp_keepalive=bool(getattr(config, "tcp_keepalive", False)),
                proxies=http_session._proxy_config._proxies,  # type: ignore[union-attr]
                proxies_config=config.proxies_config,
                client_cert=config.client_cert,
                # As many as botocore's pool keeps (sized for the polls), MAX_IDLE at least.
                max_idle=max(config.max_pool_connections or 0, MAX_IDLE),
                ssl_context=_ssl_context_of(http_session),
            )
        except ValueError as exc:
            logger.debug("the activity calls go through botocore: %s", exc)
            return None
        logger.debug("the activity calls take the direct path to %s", endpoint_url)
        setattr(client, _WIRE, wire)
        return wire

    def method(self, operation: str, *, timeout: float) -> Callable[..., dict[str, Any]]:
        """A callable of ``operation`` with the keyword arguments of boto3's method."""

        def call(**params: Any) -> dict[str, Any]:
            return self.call(operation, params, timeout=timeout)

        return call

    def call(self, operation: str, params: dict[str, Any], *, timeout: float) -> dict[str, Any]:
        """Make the call ``operation`` with ``params``; its answer, parsed as botocore would.

        ``timeout`` bounds the wait for each read of the answer, in seconds.

        Raises:
            botocore.exceptions.ParamValidationError: a parameter is not a string, or one
                that must not be empty is (nothing was sent).
            botocore.exceptions.ClientError: Step Functions answered with an error.
            botocore.exceptions.NoCredentialsError: no credentials (nothing was sent).
            botocore.exceptions.EndpointConnectionError: no connection could be made.
            botocore.exceptions.ConnectTimeoutError: the connection was not made in time.
            botocore.exceptions.ReadTimeoutError: no answer within ``timeout``.
            botocore.exceptions.ConnectionClosedError: the connection broke, unanswered.
            botocore.exceptions.SSLError: TLS failed.
        """
        _validate(params)
        body = json.dumps(params, separators=(",", ":")).encode()
        headers = self.signed_headers(operation, body)
        connections = self._connections
        lease, conn = connections.take()
        try:
            headers.update(lease.extra_headers)
            message = request("POST", lease.target, headers, body)
            answer = exchange(conn.sock, message, timeout=timeout)  # type: ignore[arg-type]
        except BaseException as exc:
            connections.give_back(lease, conn, reusable=False)  # in an unknown state
            error = self._botocore_error(exc)
            if error is None:
                raise
            raise error from exc
        connections.give_back(lease, conn, reusable=not answer.will_close)
        if answer.status != _OK:
            raise botocore.exceptions.ClientError(
                _error_of(answer),  # type: ignore[arg-type]
                operation,
            )
        try:
            parsed = json.loads(answer.body) if answer.body else {}
        except ValueError:
            parsed = {}  # as botocore's parser: what is not JSON holds no field
        return parsed if isinstance(parsed, dict) else {}

    def signed_headers(
        self, operation: str, body: bytes, *, now: time.struct_time | None = None
    ) -> dict[str, str]:
        """The headers of a call of ``operation`` with ``body``, signed (SigV4) at ``now``.

        Raises:
            botocore.exceptions.NoCredentialsError: there are no credentials.
        """
        headers = self._signer.headers(operation, body, now=now)
        headers["user-agent"] = self._user_agent
        headers["accept-encoding"] = "identity"  # the body as it is: never compressed
        return headers

    def close(self) -> None:
        """Close the idle connections (calls may still open new ones)."""
        self._connections.close()

    def _botocore_error(self, exc: BaseException) -> Exception | None:
        """The botocore exception for ``exc``, met sending or reading; ``None``: none."""
        url = self.endpoint_url
        if isinstance(exc, TimeoutError):
            return botocore.exceptions.ReadTimeoutError(endpoint_url=url)
        if isinstance(exc, ssl.SSLError):
            return botocore.exceptions.SSLError(endpoint_url=url, error=exc)
        if isinstance(exc, OSError | http.client.HTTPException):
            return botocore.exceptions.ConnectionClosedError(endpoint_url=url)
        return None

    def __repr__(self) -> str:
        return f"<Wire {self.endpoint_url}>"


def _ssl_context_of(http_session: object) -> ssl.SSLContext | None:
    """The TLS context of botocore's pools without a proxy, if it is to be found."""
    manager = getattr(http_session, "_manager", None)
    context = getattr(manager, "connection_pool_kw", {}).get("ssl_context")
    return context if isinstance(context, ssl.SSLContext) else None


def _error_of(answer: Answer) -> dict[str, Any]:
    """The error of an answer that is not 200 OK, in botocore's form (its JSON parser's)."""
    data = answer.body
    try:
        body = json.loads(data) if data else {}
    except ValueError:
        body = None
    if not isinstance(body, dict):
        # Not JSON (a proxy's or load balancer's page): its status names it.
        message = answer.reason or data.decode("utf-8", "replace")
        body = {"message": message}
    code = str(body.get("__type") or answer.status)
    code = code.split(":", 1)[0].rsplit("#", 1)[-1]
    metadata: dict[str, Any] = {"HTTPStatusCode": answer.status}
    request_id = answer.headers.get("x-amzn-requestid")
    if request_id:
        metadata["RequestId"] = request_id
    message = body.get("message", body.get("Message", ""))
    return {"Error": {"Code": code, "Message": message}, "ResponseMetadata": metadata}


def _validate(params: dict[str, Any]) -> None:
    """Refuse what botocore's validation would: a value not a string, an empty required one.

    Every parameter of the four calls is a string; ``taskToken``, ``activityArn`` and
    ``workerName`` must not be empty.
    """
    problems = [
        f"Invalid type for parameter {name}, value: {value!r}, type: {type(value)}, "
        "valid types: <class 'str'>"
        for name, value in params.items()
        if not isinstance(value, str)
    ]
    problems += [
        f"Invalid length for parameter {name}, value: 0, valid min length: 1"
        for name in _NOT_EMPTY
        if params.get(name) == ""
    ]
    if problems:
        raise botocore.exceptions.ParamValidationError(report="\n".join(problems))


def _why_not(client: object, endpoint_url: str, http_session: object) -> str:
    """Why ``client``'s calls must go through botocore; ``""`` if they need not."""
    meta = client.meta  # type: ignore[attr-defined]
    parts = urlsplit(endpoint_url)
    proxies = getattr(http_session, "_proxy_config", None)
    reasons = (
        (
            not isinstance(http_session, botocore.httpsession.URLLib3Session)
            or not isinstance(getattr(proxies, "_proxies", None), dict),
            "botocore's HTTP session is not one the direct path knows",
        ),
        (parts.path not in {"", "/"} or bool(parts.query), "the endpoint has a path or a query"),
        (not meta.region_name, "the client has no Region"),
        (_instrumented(client), "botocore's calls are instrumented (X-Ray, OpenTelemetry, ...)"),
    )
    return next((reason for applies, reason in reasons if applies), "")


def _instrumented(client: object) -> bool:
    """Whether ``client``'s calls go through code not botocore's: a tracer's wrapper.

    X-Ray, OpenTelemetry and others wrap ``BaseClient._make_api_call`` (with wrapt, or a
    function of their own); botocore's own is a function of its package. A wrapt wrapper
    passes for the function it wraps (``isinstance``, ``__code__``): only its type tells.
    """
    call = inspect.getattr_static(type(client), "_make_api_call", None)
    code = getattr(call, "__code__", None)
    return not (
        type(call) is types.FunctionType
        and code is not None
        and code.co_filename.startswith(_BOTOCORE_DIR)
    )


#: Where botocore's modules are.
_BOTOCORE_DIR = os.path.join(os.path.dirname(botocore.__file__), "")
