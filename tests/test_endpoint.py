"""The worker's HTTP endpoint: /metrics, and the probes /healthz and /readyz."""

from __future__ import annotations

import logging
import socket
import threading
import urllib.error
import urllib.request
from typing import TYPE_CHECKING

import attrs
import pytest

from activities._ops.endpoint import METRICS_CONTENT_TYPE, HealthServer

if TYPE_CHECKING:
    from collections.abc import Iterator

#: Seconds any one request (or wait) of these tests may take before it fails.
TIMEOUT = 10

#: Requests go straight to the server, whatever proxy the environment names.
OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


@attrs.define
class Worker:
    """What the server answers from, as the test sets it between requests."""

    body: bytes = b"# metrics\n"
    error: Exception | None = None
    why_dead: str | None = None
    why_not_ready: str | None = None
    scrapes: int = 0

    def metrics(self) -> bytes:
        self.scrapes += 1
        if self.error is not None:
            raise self.error
        return self.body

    def alive(self) -> str | None:
        return self.why_dead

    def ready(self) -> str | None:
        return self.why_not_ready


@attrs.frozen
class Answer:
    status: int
    content_type: str
    length: int
    body: bytes


def get(address: tuple[str, int], path: str) -> Answer:
    """GET ``path``, whatever its status."""
    host, port = address
    try:
        with OPENER.open(f"http://{host}:{port}{path}", timeout=TIMEOUT) as response:
            headers, status, body = response.headers, response.status, response.read()
    except urllib.error.HTTPError as error:
        with error:
            headers, status, body = error.headers, error.code, error.read()
    return Answer(status, headers["Content-Type"], int(headers["Content-Length"]), body)


def serve(worker: Worker, port: int = 0) -> HealthServer:
    return HealthServer(
        "127.0.0.1", port, metrics=worker.metrics, alive=worker.alive, ready=worker.ready
    )


@pytest.fixture
def worker() -> Worker:
    return Worker()


@pytest.fixture
def server(worker: Worker) -> Iterator[HealthServer]:
    """A server answering from ``worker``, started, and closed after the test."""
    server = serve(worker)
    try:
        server.start()
        yield server
    finally:
        server.close()


def test_port_zero_listens_on_a_free_port(server: HealthServer) -> None:
    host, port = server.address
    assert host == "127.0.0.1"
    assert port > 0


def test_metrics_are_the_body_of_metrics(server: HealthServer, worker: Worker) -> None:
    worker.body = b'sfn_activities_slots{state="busy"} 1.0\n'
    answer = get(server.address, "/metrics")
    assert answer.status == 200
    assert answer.body == b'sfn_activities_slots{state="busy"} 1.0\n'
    assert answer.length == len(answer.body)
    assert answer.content_type == "text/plain; version=0.0.4; charset=utf-8"
    assert answer.content_type == METRICS_CONTENT_TYPE


def test_metrics_are_read_at_each_scrape(server: HealthServer, worker: Worker) -> None:
    assert get(server.address, "/metrics").body == b"# metrics\n"
    worker.body = b"# later\n"
    assert get(server.address, "/metrics").body == b"# later\n"
    assert worker.scrapes == 2


@pytest.mark.parametrize("path", ["/healthz", "/readyz"])
def test_a_probe_says_ok_while_all_is_well(server: HealthServer, path: str) -> None:
    answer = get(server.address, path)
    assert (answer.status, answer.body) == (200, b"ok\n")
    assert answer.content_type == "text/plain; charset=utf-8"
    assert answer.length == 3


def test_healthz_says_why_the_worker_is_not_alive(server: HealthServer, worker: Worker) -> None:
    worker.why_dead = "stalled: the worker's hand-off has not run for 63 s"
    answer = get(server.address, "/healthz")
    assert answer.status == 503
    assert answer.body == b"stalled: the worker's hand-off has not run for 63 s\n"
    assert answer.content_type == "text/plain; charset=utf-8"
    assert get(server.address, "/readyz").status == 200, "readiness is asked on its own"
    worker.why_dead = None
    assert get(server.address, "/healthz").status == 200, "asked again at each probe"


def test_readyz_says_why_the_worker_is_not_ready(server: HealthServer, worker: Worker) -> None:
    worker.why_not_ready = "not ready: the worker is stopping"
    answer = get(server.address, "/readyz")
    assert (answer.status, answer.body) == (503, b"not ready: the worker is stopping\n")
    assert get(server.address, "/healthz").status == 200, "liveness is asked on its own"
    worker.why_not_ready = None
    assert get(server.address, "/readyz").status == 200


def test_a_reason_that_is_not_ascii_is_sent_as_utf8(server: HealthServer, worker: Worker) -> None:
    worker.why_not_ready = "pas prêt ✗"
    assert get(server.address, "/readyz").body == "pas prêt ✗\n".encode()


@pytest.mark.parametrize("path", ["/", "/metricsx", "/healthz/", "/READYZ", "/favicon.ico"])
def test_any_other_path_is_not_found(server: HealthServer, worker: Worker, path: str) -> None:
    answer = get(server.address, path)
    assert (answer.status, answer.body) == (404, b"not found\n")
    assert worker.scrapes == 0


@pytest.mark.parametrize(
    ("path", "body"),
    [("/readyz?x=1", b"ok\n"), ("/healthz?", b"ok\n"), ("/metrics?name[]=up", b"# metrics\n")],
)
def test_a_query_string_is_ignored(server: HealthServer, path: str, body: bytes) -> None:
    answer = get(server.address, path)
    assert (answer.status, answer.body) == (200, body)


def test_a_route_that_raises_is_a_500_and_the_server_goes_on(
    server: HealthServer, worker: Worker, caplog: pytest.LogCaptureFixture
) -> None:
    worker.error = RuntimeError("the metrics directory is gone")
    with caplog.at_level(logging.ERROR, logger="activities._ops.endpoint"):
        answer = get(server.address, "/metrics")
    assert (answer.status, answer.body) == (500, b"error\n")
    assert answer.content_type == "text/plain; charset=utf-8"
    [record] = [record for record in caplog.records if record.name == "activities._ops.endpoint"]
    assert record.getMessage() == "answering /metrics failed"
    assert record.exc_info is not None
    assert record.exc_info[1] is worker.error
    assert get(server.address, "/healthz").status == 200, "the server still answers"
    worker.error = None
    assert get(server.address, "/metrics").status == 200


def test_a_slow_scrape_does_not_hold_up_a_probe(worker: Worker) -> None:
    """Requests are answered in threads of their own."""
    scraping, release = threading.Event(), threading.Event()

    def slow_metrics() -> bytes:
        scraping.set()
        release.wait(TIMEOUT)
        return b"# slow\n"

    server = HealthServer(
        "127.0.0.1", 0, metrics=slow_metrics, alive=worker.alive, ready=worker.ready
    )
    answers: list[Answer] = []
    scrape = threading.Thread(target=lambda: answers.append(get(server.address, "/metrics")))
    try:
        server.start()
        scrape.start()
        assert scraping.wait(TIMEOUT)
        assert get(server.address, "/healthz").status == 200
        assert not answers, "the scrape is still held"
    finally:
        release.set()
        scrape.join(TIMEOUT)
        server.close()
    assert [answer.body for answer in answers] == [b"# slow\n"]


def test_close_frees_the_port(worker: Worker) -> None:
    server = serve(worker)
    server.start()
    try:
        port = server.address[1]
        assert get(server.address, "/healthz").status == 200
        with socket.socket() as other, pytest.raises(OSError, match="in use"):
            other.bind(("127.0.0.1", port))
    finally:
        server.close()
    with pytest.raises(urllib.error.URLError) as refused:
        get(("127.0.0.1", port), "/healthz")
    assert isinstance(refused.value.reason, ConnectionRefusedError), "nothing listens"
    again = serve(worker, port)
    try:
        again.start()
        assert again.address == ("127.0.0.1", port)
        assert get(again.address, "/healthz").status == 200
    finally:
        again.close()


def test_a_server_never_started_closes_and_frees_its_port(worker: Worker) -> None:
    server = serve(worker)
    port = server.address[1]
    server.close()
    with socket.socket() as other:
        other.bind(("127.0.0.1", port))


def test_a_port_in_use_cannot_be_listened_on(server: HealthServer, worker: Worker) -> None:
    with pytest.raises(OSError, match="in use"):
        serve(worker, server.address[1])
