"""One request and its answer (activities._aws.exchange), over a socket pair: the server's
side is written before the request is sent, and read after."""

from __future__ import annotations

import http.client
import io
import socket
from typing import TYPE_CHECKING

import pytest

from activities._aws import exchange
from activities._aws.exchange import MAX_HEADERS, MAX_LINE, Answer, request

if TYPE_CHECKING:
    from collections.abc import Iterator

REQUEST = request("POST", "/", {"host": "example.com"}, b"{}")


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    ours, theirs = socket.socketpair()
    yield ours, theirs
    ours.close()
    theirs.close()


def answer_to(
    pair: tuple[socket.socket, socket.socket], raw: bytes, *, close: bool = False
) -> Answer:
    ours, server = pair
    server.sendall(raw)
    if close:
        server.shutdown(socket.SHUT_WR)
    return exchange.exchange(ours, REQUEST, timeout=5)


def as_http_client_reads_it(raw: bytes) -> tuple[int, str, dict[str, str], bytes, bool]:
    """What :mod:`http.client` makes of the same answer."""

    class Sock:
        def makefile(self, mode: str) -> io.BytesIO:
            return io.BytesIO(raw)

    response = http.client.HTTPResponse(Sock(), method="POST")  # type: ignore[arg-type]
    response.begin()
    body = response.read()
    headers: dict[str, str] = {}
    for name, value in response.getheaders():
        key = name.lower()
        headers[key] = f"{headers[key]}, {value}" if key in headers else value
    return response.status, response.reason, headers, body, response.will_close


class TestRequest:
    def test_a_head_with_its_length_then_the_body(self) -> None:
        assert request("POST", "/", {"host": "h", "x-a": "1"}, b'{"a":1}') == (
            b'POST / HTTP/1.1\r\nhost: h\r\nx-a: 1\r\ncontent-length: 7\r\n\r\n{"a":1}'
        )

    @pytest.mark.parametrize("value", ["a\r\nx-evil: 1", "a\nb", "a\rb"])
    def test_a_line_break_in_a_header_is_refused(self, value: str) -> None:
        with pytest.raises(ValueError, match="line break"):
            request("POST", "/", {"user-agent": value}, b"")

    def test_the_request_is_sent_whole(self, pair: tuple[socket.socket, socket.socket]) -> None:
        answer_to(pair, b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
        assert pair[1].recv(65536) == REQUEST


SAME_AS_HTTP_CLIENT = {
    "sized": b"HTTP/1.1 200 OK\r\nContent-Type: application/x-amz-json-1.0\r\n"
    b'x-amzn-RequestId: r-1\r\nContent-Length: 11\r\n\r\n{"a": "b"}\n',
    "empty": b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
    "chunked": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
    b'4;ext=1\r\n{"a"\r\n6\r\n: "b"}\r\n0\r\nx-trailer: t\r\n\r\n',
    "closed after": b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\n{}",
    "HTTP/1.0": b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\n{}",
    "HTTP/1.0 kept alive": b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\n"
    b"Content-Length: 2\r\n\r\n{}",
    "an error": b"HTTP/1.1 400 Bad Request\r\nContent-Length: 2\r\n\r\n{}",
    "no reason": b"HTTP/1.1 503\r\nContent-Length: 0\r\n\r\n",
    "no content": b"HTTP/1.1 204 No Content\r\n\r\n",
    "continue first": b"HTTP/1.1 100 Continue\r\n\r\n"
    b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}",
    "repeated header": b"HTTP/1.1 200 OK\r\nx-a: 1\r\nX-A: 2\r\nContent-Length: 0\r\n\r\n",
    "bare line feeds": b"HTTP/1.1 200 OK\nContent-Length: 2\n\n{}",
}


class TestAnswer:
    @pytest.mark.parametrize("raw", SAME_AS_HTTP_CLIENT.values(), ids=SAME_AS_HTTP_CLIENT)
    def test_read_as_http_client_reads_it(
        self, pair: tuple[socket.socket, socket.socket], raw: bytes
    ) -> None:
        answer = answer_to(pair, raw)
        status, reason, headers, body, will_close = as_http_client_reads_it(raw)
        assert (answer.status, answer.reason, answer.body, answer.will_close) == (
            status,
            reason,
            body,
            will_close,
        )
        assert answer.headers == headers

    def test_a_body_to_the_end_of_the_connection(
        self, pair: tuple[socket.socket, socket.socket]
    ) -> None:
        answer = answer_to(pair, b'HTTP/1.1 200 OK\r\n\r\n{"a": 1}', close=True)
        assert answer.body == b'{"a": 1}'
        assert answer.will_close

    def test_a_folded_header_continues_the_one_before(
        self, pair: tuple[socket.socket, socket.socket]
    ) -> None:
        answer = answer_to(pair, b"HTTP/1.1 200 OK\r\nx-a: 1\r\n  2\r\nContent-Length: 0\r\n\r\n")
        assert answer.headers["x-a"] == "1 2"

    def test_answers_follow_each_other_on_one_connection(
        self, pair: tuple[socket.socket, socket.socket]
    ) -> None:
        first = answer_to(pair, b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\n1")
        second = answer_to(pair, b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\n2")
        assert (first.body, second.body) == (b"1", b"2")


class TestNotAnAnswer:
    @pytest.mark.parametrize(
        ("raw", "error"),
        [
            (b"", http.client.RemoteDisconnected),
            (b"SSH-2.0-OpenSSH\r\n\r\n", http.client.BadStatusLine),
            (b"HTTP/2 200 OK\r\n\r\n", http.client.BadStatusLine),
            (b"HTTP/1.1 2000 OK\r\n\r\n", http.client.BadStatusLine),
            (b"HTTP/1.1 200 OK\r\nContent-Le", http.client.IncompleteRead),
            (b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n{}", http.client.IncompleteRead),
            (b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", http.client.HTTPException),
            (b"HTTP/1.1 200 OK\r\nContent-Length: 2, 3\r\n\r\n{}", http.client.HTTPException),
            (b"HTTP/1.1 200 OK\r\nno colon\r\n\r\n", http.client.HTTPException),
            (
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
                http.client.IncompleteRead,
            ),
            (
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}XX0\r\n\r\n",
                http.client.HTTPException,
            ),
            (
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n9\r\n{}",
                http.client.IncompleteRead,
            ),
            (
                b"HTTP/1.1 200 OK\r\n" + b"x: 1\r\n" * (MAX_HEADERS + 1) + b"\r\n",
                http.client.HTTPException,
            ),
            ("HTTP/1.1 2\u00b20 OK\r\n\r\n".encode("latin-1"), http.client.BadStatusLine),
            (
                "HTTP/1.1 200 OK\r\nContent-Length: \u00b2\r\n\r\n".encode("latin-1"),
                http.client.HTTPException,
            ),
            (b"HTTP/1.1 200 OK\r\n\r\r\n\r\n", http.client.HTTPException),
            (
                b"HTTP/1.1 200 OK\r\nContent-Length: 99999999999\r\n\r\n",
                http.client.HTTPException,
            ),
            (
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nffffffffff\r\n",
                http.client.HTTPException,
            ),
            (b"HTTP/1.1 200 " + b"K" * MAX_LINE + b"\r\n\r\n", http.client.LineTooLong),
            (b"HTTP/1.1 200 OK\r\nx: " + b"1" * MAX_LINE + b"\r\n\r\n", http.client.LineTooLong),
        ],
        ids=[
            "nothing",
            "not HTTP",
            "HTTP/2",
            "a status of four digits",
            "cut within the headers",
            "a body cut short",
            "a negative length",
            "lengths that disagree",
            "a header without a colon",
            "a chunk size that is not hex",
            "a chunk without its line break",
            "a chunk cut short",
            "too many headers",
            "a status of other digits",
            "a length of other digits",
            "a header line of a carriage return",
            "a length over the bound",
            "a chunk over the bound",
            "a status line too long",
            "a header line too long",
        ],
    )
    def test_raises_http_clients_error(
        self,
        pair: tuple[socket.socket, socket.socket],
        raw: bytes,
        error: type[Exception],
    ) -> None:
        with pytest.raises(error):
            answer_to(pair, raw, close=True)

    def test_a_body_to_the_end_over_the_bound(
        self, pair: tuple[socket.socket, socket.socket], monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setattr(exchange, "MAX_BODY", 10)
        with pytest.raises(http.client.HTTPException, match="over 10 bytes"):
            answer_to(pair, b"HTTP/1.1 200 OK\r\n\r\n" + b"x" * 11, close=True)

    def test_no_answer_in_time(self, pair: tuple[socket.socket, socket.socket]) -> None:
        ours, _ = pair
        with pytest.raises(TimeoutError):
            exchange.exchange(ours, REQUEST, timeout=0.05)
