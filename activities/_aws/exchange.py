"""One HTTP/1.1 request and its answer on a kept-alive connection: the direct path's HTTP.

The four activity calls need little of HTTP: a ``POST`` of a JSON body, and an answer made
of a status, a few headers and a JSON body. :mod:`http.client` reads every answer's headers
with the :mod:`email` package, about 25 µs of CPU an answer, as much as the rest of its
work on a call; a worker makes two calls a task, one of them in its busiest thread.
:func:`exchange` writes a request in one send on a connection urllib3 opened
(:mod:`activities._aws.connections`) and reads the answer itself: its status line, its
headers, and a body sized by ``Content-Length``, sent in chunks, or running to the end of
the connection.

An answer that is not HTTP/1.x, or is cut short, raises :mod:`http.client`'s exceptions
(``RemoteDisconnected``, ``BadStatusLine``, ``LineTooLong``, ``IncompleteRead``, or
``HTTPException`` itself), as reading it with :mod:`http.client` would; the connection is
then in an unknown state and must be closed.
"""

from __future__ import annotations

import http.client
from typing import TYPE_CHECKING, Protocol

import attrs

if TYPE_CHECKING:
    from collections.abc import Mapping
    from io import BufferedReader as _Reader

__all__ = ["MAX_BODY", "MAX_HEADERS", "MAX_LINE", "Answer", "exchange", "request"]

#: The longest status or header line read, in bytes (as :mod:`http.client`).
MAX_LINE = 65536

#: The most header lines an answer may have (as :mod:`http.client`).
MAX_HEADERS = 100

#: The longest body read, in bytes: Step Functions' answers hold 256 KiB of input at most
#: (a few times that once escaped in JSON); a longer one is not its answer.
MAX_BODY = 16 * 1024 * 1024

_NO_BODY = frozenset({204, 304})


class _Socket(Protocol):
    """What :func:`exchange` needs of a socket.

    ``socket.socket``, ``ssl.SSLSocket``, or urllib3's ``SSLTransport`` (TLS within the
    TLS of an HTTPS proxy).
    """

    def settimeout(self, value: float | None, /) -> None: ...

    def sendall(self, data: bytes, /) -> None: ...

    def makefile(self, mode: str, /) -> _Reader: ...


@attrs.frozen
class Answer:
    """An answer to a request, read whole.

    Attributes:
        status: its status code.
        reason: its reason phrase (may be empty).
        headers: its headers, by lower-case name; repeated headers joined by ``", "``.
        body: its body.
        will_close: the server closes the connection after it: not for another request.
    """

    status: int
    reason: str
    headers: Mapping[str, str]
    body: bytes
    will_close: bool


def request(method: str, path: str, headers: Mapping[str, str], body: bytes) -> bytes:
    """The bytes of an HTTP/1.1 request: its head with a ``Content-Length``, then ``body``.

    Raises:
        ValueError: a header's name or value holds a line break (it would end the header).
    """
    lines = [f"{method} {path} HTTP/1.1"]
    for name, value in headers.items():
        if "\r" in value or "\n" in value or "\r" in name or "\n" in name:
            msg = f"a line break in the header {name!r}"
            raise ValueError(msg)
        lines.append(f"{name}: {value}")
    lines.append(f"content-length: {len(body)}\r\n\r\n")
    return "\r\n".join(lines).encode("latin-1") + body


def exchange(sock: _Socket, message: bytes, *, timeout: float) -> Answer:
    """Send ``message`` (see :func:`request`) on ``sock``, a connected socket, and read its answer.

    ``timeout`` bounds each wait to send or to read, in seconds. The answer is read
    through a buffer of this call's own, as :mod:`http.client` reads each answer: the
    connection holds nothing of it afterwards.

    Raises:
        OSError: the connection failed (``TimeoutError``: no progress in time).
        http.client.HTTPException: what came back is not an HTTP/1.x answer, or is cut
            short.
    """
    sock.settimeout(timeout)
    sock.sendall(message)
    reader = sock.makefile("rb")
    try:
        return _read_answer(reader)
    finally:
        reader.close()


def _read_answer(reader: _Reader) -> Answer:
    while True:
        version, status, reason = _status_line(reader)
        headers = _headers(reader)
        if not 100 <= status < 200:  # noqa: PLR2004 - informational answers come first
            break
    coding = headers.get("transfer-encoding", "").lower()
    will_close = _closes(version, headers)
    if status in _NO_BODY:
        body = b""
    elif "chunked" in coding:
        body = _chunked(reader)
    elif "content-length" in headers:
        body = _exactly(reader, _length(headers["content-length"]))
    else:  # the body runs to the end of the connection
        body = reader.read(MAX_BODY + 1)
        if len(body) > MAX_BODY:
            raise _too_long()
        will_close = True
    return Answer(status, reason, headers, body, will_close)


def _status_line(reader: _Reader) -> tuple[str, int, str]:
    line = reader.readline(MAX_LINE + 1)
    if not line:
        msg = "the connection closed without an answer"
        raise http.client.RemoteDisconnected(msg)
    if len(line) > MAX_LINE:
        msg = "status line"
        raise http.client.LineTooLong(msg)
    version, _, rest = line.decode("latin-1").rstrip("\r\n").partition(" ")
    code, _, reason = rest.partition(" ")
    if not version.startswith("HTTP/1.") or len(code) != 3 or not _digits(code):  # noqa: PLR2004
        raise http.client.BadStatusLine(repr(line))
    return version, int(code), reason.strip()


def _headers(reader: _Reader) -> dict[str, str]:
    headers: dict[str, str] = {}
    name = ""
    for _ in range(MAX_HEADERS + 1):
        line = reader.readline(MAX_LINE + 1)
        if len(line) > MAX_LINE:
            msg = "header line"
            raise http.client.LineTooLong(msg)
        if line in {b"\r\n", b"\n"}:
            return headers
        if not line.endswith(b"\n"):
            raise http.client.IncompleteRead(line)  # closed within the headers
        text = line.decode("latin-1").rstrip("\r\n")
        if text[:1] in {" ", "\t"} and name:  # an obsolete folded line continues the last header
            headers[name] = f"{headers[name]} {text.strip()}"
            continue
        key, colon, value = text.partition(":")
        if not colon or not key or key != key.strip():
            msg = f"a malformed header line: {line!r}"
            raise http.client.HTTPException(msg)
        name = key.lower()
        value = value.strip()
        headers[name] = f"{headers[name]}, {value}" if name in headers else value
    msg = f"got more than {MAX_HEADERS} headers"
    raise http.client.HTTPException(msg)


def _closes(version: str, headers: Mapping[str, str]) -> bool:
    tokens = {token.strip() for token in headers.get("connection", "").lower().split(",")}
    if "close" in tokens:
        return True
    return version == "HTTP/1.0" and "keep-alive" not in tokens


def _length(value: str) -> int:
    lengths = {part.strip() for part in value.split(",")}  # repeated, they must agree
    length = lengths.pop()
    if lengths or not _digits(length):
        msg = f"an invalid Content-Length: {value!r}"
        raise http.client.HTTPException(msg)
    if int(length) > MAX_BODY:
        raise _too_long()
    return int(length)


def _digits(text: str) -> bool:
    """Whether ``text`` is ASCII digits only (``str.isdigit`` takes ``²`` too)."""
    return text.isascii() and text.isdigit()


def _too_long() -> http.client.HTTPException:
    return http.client.HTTPException(f"an answer's body over {MAX_BODY} bytes")


def _exactly(reader: _Reader, size: int) -> bytes:
    data = reader.read(size)
    if len(data) < size:
        raise http.client.IncompleteRead(data, size - len(data))
    return data


def _chunked(reader: _Reader) -> bytes:
    parts: list[bytes] = []
    while True:
        line = reader.readline(MAX_LINE + 1)
        if len(line) > MAX_LINE:
            msg = "chunk size"
            raise http.client.LineTooLong(msg)
        size_text = line.split(b";", 1)[0].strip()
        if not size_text or size_text.strip(b"0123456789abcdefABCDEF"):
            raise http.client.IncompleteRead(b"".join(parts))
        size = int(size_text, 16)
        if size == 0:
            break
        if size + sum(map(len, parts)) > MAX_BODY:
            raise _too_long()
        parts.append(_exactly(reader, size))
        if _exactly(reader, 2) != b"\r\n":
            msg = "a chunk without its line break"
            raise http.client.HTTPException(msg)
    for _ in range(MAX_HEADERS + 1):  # trailers, read and dropped
        line = reader.readline(MAX_LINE + 1)
        if line in {b"\r\n", b"\n", b""}:
            return b"".join(parts)
    msg = f"got more than {MAX_HEADERS} trailer lines"
    raise http.client.HTTPException(msg)
