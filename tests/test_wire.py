"""The direct path of the activity calls (activities._aws.wire), against a scripted HTTP server."""

from __future__ import annotations

import datetime
import json
import os
import pathlib
import ssl
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any
from unittest import mock

import botocore.auth
import botocore.awsrequest
import botocore.client
import botocore.config
import botocore.credentials
import botocore.exceptions
import botocore.session
import pytest
import wrapt

from activities import (
    ActivityClient,
    RetryPolicy,
    ServiceError,
    Success,
    TaskGone,
    Throttled,
    make_client,
)
from activities._aws.wire import MAX_IDLE, Wire, allow_direct
from activities.local import free_port
from tests.test_client import THROTTLING_CODES

if TYPE_CHECKING:
    import socket
    from collections.abc import Iterator
    from email.message import Message

ARN = "arn:aws:states:us-east-1:123456789012:activity:Echo"
TLS = pathlib.Path(__file__).parent / "tls"  # a self-signed certificate for 127.0.0.1


@pytest.fixture(autouse=True)
def no_timers(monkeypatch: pytest.MonkeyPatch) -> None:
    """Throttled calls here are summed up now or never, not by a timer in a later test."""
    monkeypatch.setattr("activities._aws.retry._later", lambda delay, function: None)


class Answer:
    """What the scripted server does with one request."""

    def __init__(
        self,
        status: int = 200,
        body: bytes = b"{}",
        headers: dict[str, str] | None = None,
        *,
        then_close: bool = False,
        hang: bool = False,
        drop: bool = False,
    ) -> None:
        self.status = status
        self.body = body
        self.headers = headers or {}
        self.then_close = then_close  # close the connection after answering, unannounced
        self.hang = hang  # answer nothing until the server stops
        self.drop = drop  # close the connection without answering


class Scripted(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, *, tls: bool = False, client_ca: pathlib.Path | None = None) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.answers: list[Answer] = []
        self.requests: list[tuple[Message, bytes]] = []
        self.targets: list[str] = []  # each request's target, as its request line has it
        self.connections = 0
        self.closed = threading.Event()  # a connection was closed by the server
        self.stopping = threading.Event()
        if tls:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(TLS / "cert.pem", TLS / "key.pem")
            if client_ca is not None:  # a client certificate this CA signed, or none served
                context.verify_mode = ssl.CERT_REQUIRED
                context.load_verify_locations(client_ca)
            self.socket = context.wrap_socket(self.socket, server_side=True)
        self.url = f"{'https' if tls else 'http'}://127.0.0.1:{self.server_address[1]}"

    def get_request(self) -> tuple[socket.socket, Any]:
        request = super().get_request()
        self.connections += 1
        return request


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: Scripted

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.server.requests.append((self.headers, body))
        self.server.targets.append(self.path)
        answer = self.server.answers.pop(0) if self.server.answers else Answer()
        if answer.hang:
            self.server.stopping.wait(30)
            self.close_connection = True
            return
        if answer.drop:
            self.close_connection = True
            self.server.closed.set()
            return
        self.send_response(answer.status)
        for name, value in answer.headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(answer.body)))
        self.end_headers()
        self.wfile.write(answer.body)
        self.wfile.flush()
        if answer.then_close:
            self.close_connection = True
            self.server.closed.set()

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base's name
        pass


@pytest.fixture
def server() -> Iterator[Scripted]:
    with Scripted() as scripted:
        thread = threading.Thread(target=scripted.serve_forever, args=(0.05,), daemon=True)
        thread.start()
        yield scripted
        scripted.stopping.set()
        scripted.shutdown()


def credentials(token: str | None = None) -> botocore.credentials.Credentials:
    return botocore.credentials.Credentials("AKIDEXAMPLE", "secret/key", token)


def wire(url: str, **kwargs: Any) -> Wire:
    return Wire(url, region="eu-west-1", credentials=credentials(), **kwargs)


class TestSigning:
    @pytest.mark.parametrize("token", [None, "session-token"])
    def test_the_signature_is_botocores(self, token: str | None) -> None:
        """The same request, signed at the same time, carries botocore's SigV4 signature."""
        keys = credentials(token)
        direct = Wire(
            "https://states.eu-west-1.amazonaws.com", region="eu-west-1", credentials=keys
        )
        at = datetime.datetime(2026, 12, 2, 7, 8, 9)
        body = b'{"taskToken":"t","output":"{}"}'
        headers = direct.signed_headers("SendTaskSuccess", body, now=at.timetuple())

        request = botocore.awsrequest.AWSRequest(
            "POST",
            "https://states.eu-west-1.amazonaws.com/",
            data=body,
            headers={
                "Content-Type": "application/x-amz-json-1.0",
                "X-Amz-Target": "AWSStepFunctions.SendTaskSuccess",
            },
        )
        with mock.patch.object(botocore.auth, "get_current_datetime", return_value=at):
            botocore.auth.SigV4Auth(keys, "states", "eu-west-1").add_auth(request)

        assert headers["authorization"] == request.headers["Authorization"]
        assert headers["x-amz-date"] == request.headers["X-Amz-Date"]
        assert headers.get("x-amz-security-token") == token
        assert headers["host"] == "states.eu-west-1.amazonaws.com"

    def test_a_new_day_signs_with_a_new_key(self) -> None:
        direct = wire("http://127.0.0.1:1")
        one = direct.signed_headers("SendTaskHeartbeat", b"{}", now=time.gmtime(0))
        other = direct.signed_headers("SendTaskHeartbeat", b"{}", now=time.gmtime(86400))
        assert "19700101/eu-west-1/states" in one["authorization"]
        assert "19700102/eu-west-1/states" in other["authorization"]

    def test_the_host_header_has_no_default_port(self) -> None:
        headers = wire("https://example.com:443/").signed_headers("GetActivityTask", b"{}")
        assert headers["host"] == "example.com"
        headers = wire("http://127.0.0.1:8999").signed_headers("GetActivityTask", b"{}")
        assert headers["host"] == "127.0.0.1:8999"

    def test_no_credentials_sends_nothing(self, server: Scripted) -> None:
        direct = Wire(server.url, region="eu-west-1", credentials=None)
        with pytest.raises(botocore.exceptions.NoCredentialsError):
            direct.call("SendTaskHeartbeat", {"taskToken": "t"}, timeout=5)
        assert server.requests == []


class TestCall:
    def test_sends_botocores_request_and_parses_the_answer(self, server: Scripted) -> None:
        server.answers.append(Answer(body=b'{"taskToken": "tok", "input": "{\\"a\\": 1}"}'))
        answer = wire(server.url).call(
            "GetActivityTask", {"activityArn": ARN, "workerName": "w"}, timeout=5
        )
        assert answer == {"taskToken": "tok", "input": '{"a": 1}'}
        headers, body = server.requests[0]
        assert json.loads(body) == {"activityArn": ARN, "workerName": "w"}
        assert headers["X-Amz-Target"] == "AWSStepFunctions.GetActivityTask"
        assert headers["Content-Type"] == "application/x-amz-json-1.0"
        assert headers["Authorization"].startswith("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/")

    def test_an_empty_answer_is_an_empty_response(self, server: Scripted) -> None:
        server.answers.append(Answer(body=b""))
        assert wire(server.url).call("SendTaskHeartbeat", {"taskToken": "t"}, timeout=5) == {}

    def test_connections_are_kept_alive(self, server: Scripted) -> None:
        direct = wire(server.url)
        for _ in range(5):
            direct.call("SendTaskHeartbeat", {"taskToken": "t"}, timeout=5)
        assert len(server.requests) == 5
        assert server.connections == 1

    def test_a_connection_the_server_closed_is_not_reused(self, server: Scripted) -> None:
        """A keep-alive connection closed while idle is dropped, not failed on."""
        direct = wire(server.url)
        server.answers.append(Answer(then_close=True))
        direct.call("SendTaskHeartbeat", {"taskToken": "t"}, timeout=5)
        assert server.closed.wait(5)
        time.sleep(0.05)  # the FIN reaches the client's socket
        direct.call("SendTaskHeartbeat", {"taskToken": "t"}, timeout=5)
        assert server.connections == 2

    def test_a_forked_process_opens_its_own_connections(self, server: Scripted) -> None:
        """A child of a fork never uses the parent's connections; the parent keeps them."""
        direct = wire(server.url)
        direct.call("SendTaskHeartbeat", {"taskToken": "t"}, timeout=5)
        pid = os.fork()
        if pid == 0:  # the child: one call of its own, then out without pytest's cleanup
            code = 1
            try:
                direct.call("SendTaskHeartbeat", {"taskToken": "child"}, timeout=5)
                code = 0
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        direct.call("SendTaskHeartbeat", {"taskToken": "t"}, timeout=5)
        assert server.connections == 2  # the parent's, still alive, and the child's
        assert [json.loads(body)["taskToken"] for _, body in server.requests] == [
            "t",
            "child",
            "t",
        ]

    def test_a_200_that_is_not_json_holds_nothing(self, server: Scripted) -> None:
        """As botocore parses it: no field, not an error."""
        server.answers.append(Answer(body=b"<html>ok</html>"))
        assert wire(server.url).call("SendTaskHeartbeat", {"taskToken": "t"}, timeout=5) == {}

    @pytest.mark.parametrize(
        "params", [{"taskToken": ""}, {"taskToken": None}, {"taskToken": "t", "output": 1}]
    )
    def test_parameters_botocore_refuses_are_not_sent(
        self, server: Scripted, params: dict[str, Any]
    ) -> None:
        with pytest.raises(botocore.exceptions.ParamValidationError, match=r"taskToken|output"):
            wire(server.url).call("SendTaskSuccess", params, timeout=5)
        assert server.requests == []

    def test_calls_from_threads_at_once(self, server: Scripted) -> None:
        direct = wire(server.url)
        errors: list[BaseException] = []

        def calls() -> None:
            try:
                for _ in range(20):
                    direct.call("SendTaskHeartbeat", {"taskToken": "t"}, timeout=5)
            except BaseException as exc:  # noqa: BLE001 - reported below
                errors.append(exc)

        threads = [threading.Thread(target=calls) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert errors == []
        assert len(server.requests) == 80
        assert server.connections <= 4


class TestErrors:
    def test_a_service_error_is_botocores_client_error(self, server: Scripted) -> None:
        server.answers.append(
            Answer(
                400,
                b'{"__type": "com.amazonaws.swf.base.model#TaskDoesNotExist", "message": "gone"}',
                {"x-amzn-RequestId": "req-1"},
            )
        )
        with pytest.raises(botocore.exceptions.ClientError) as caught:
            wire(server.url).call("SendTaskHeartbeat", {"taskToken": "t"}, timeout=5)
        assert caught.value.response["Error"] == {"Code": "TaskDoesNotExist", "Message": "gone"}
        assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
        assert caught.value.response["ResponseMetadata"]["RequestId"] == "req-1"
        assert caught.value.operation_name == "SendTaskHeartbeat"

    def test_a_5xx_without_json_is_named_by_its_status(self, server: Scripted) -> None:
        server.answers.append(Answer(503, b"<html>Service Unavailable</html>"))
        with pytest.raises(botocore.exceptions.ClientError) as caught:
            wire(server.url).call("SendTaskHeartbeat", {"taskToken": "t"}, timeout=5)
        assert caught.value.response["Error"] == {
            "Code": "503",
            "Message": "Service Unavailable",
        }

    def test_an_empty_error_is_named_by_its_status(self, server: Scripted) -> None:
        """As botocore's JSON parser names it: not by a header it does not read."""
        server.answers.append(Answer(400, b"", {"x-amzn-ErrorType": "ThrottlingException:http"}))
        with pytest.raises(botocore.exceptions.ClientError) as caught:
            wire(server.url).call("SendTaskHeartbeat", {"taskToken": "t"}, timeout=5)
        assert caught.value.response["Error"]["Code"] == "400"

    def test_no_answer_in_time_is_a_read_timeout(self, server: Scripted) -> None:
        server.answers.append(Answer(hang=True))
        with pytest.raises(botocore.exceptions.ReadTimeoutError):
            wire(server.url).call("SendTaskHeartbeat", {"taskToken": "t"}, timeout=0.2)

    def test_a_connection_closed_unanswered(self, server: Scripted) -> None:
        server.answers.append(Answer(drop=True))
        with pytest.raises(botocore.exceptions.ConnectionClosedError):
            wire(server.url).call("SendTaskHeartbeat", {"taskToken": "t"}, timeout=5)

    def test_nothing_listening(self) -> None:
        with pytest.raises(botocore.exceptions.EndpointConnectionError):
            wire(f"http://127.0.0.1:{free_port()}").call(
                "SendTaskHeartbeat", {"taskToken": "t"}, timeout=5
            )

    def test_not_an_http_endpoint(self) -> None:
        with pytest.raises(ValueError, match="not an http"):
            wire("ftp://example.com")
        with pytest.raises(ValueError, match="a path"):
            wire("https://example.com/states")


class TestTLS:
    @pytest.fixture
    def tls_server(self) -> Iterator[Scripted]:
        with Scripted(tls=True) as scripted:
            threading.Thread(target=scripted.serve_forever, daemon=True).start()
            yield scripted
            scripted.shutdown()

    def test_verified_with_a_ca_bundle(self, tls_server: Scripted) -> None:
        direct = wire(tls_server.url, verify=str(TLS / "cert.pem"))
        assert direct.call("SendTaskHeartbeat", {"taskToken": "t"}, timeout=5) == {}

    def test_an_unknown_certificate_is_refused(self, tls_server: Scripted) -> None:
        with pytest.raises(botocore.exceptions.SSLError):
            wire(tls_server.url).call("SendTaskHeartbeat", {"taskToken": "t"}, timeout=5)
        assert tls_server.requests == []

    def test_verify_false_accepts_it(self, tls_server: Scripted) -> None:
        direct = wire(tls_server.url, verify=False)
        assert direct.call("SendTaskHeartbeat", {"taskToken": "t"}, timeout=5) == {}


class TestWhichClients:
    @pytest.fixture(autouse=True)
    def _region(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")
        for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "AWS_CA_BUNDLE"):
            monkeypatch.delenv(name, raising=False)

    def test_make_clients_take_the_direct_path(self) -> None:
        client = make_client(region_name="eu-west-1", endpoint_url="http://127.0.0.1:9")
        direct = Wire.of(client)
        assert direct is not None
        assert direct.endpoint_url == "http://127.0.0.1:9"
        assert ActivityClient(client)._wire is not None

    def test_as_many_idle_connections_as_the_client_keeps(self) -> None:
        """The worker sizes its client's pool for its polls: the direct path keeps as many."""
        sized = Wire.of(make_client(region_name="eu-west-1", max_pool_connections=300))
        small = Wire.of(make_client(region_name="eu-west-1", max_pool_connections=4))
        assert sized is not None
        assert small is not None
        assert sized._connections._current().urllib3.pool.maxsize == 300
        assert small._connections._current().urllib3.pool.maxsize == MAX_IDLE

    def test_the_clients_tls_context_serves_without_a_proxy(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """No second context in each task process; a proxy's pools get their own, as botocore's."""
        client = make_client(region_name="eu-west-1")
        direct = Wire.of(client)
        assert direct is not None
        theirs = client._endpoint.http_session._manager.connection_pool_kw["ssl_context"]  # type: ignore[attr-defined]
        assert direct._connections._current().urllib3.conn_kw["ssl_context"] is theirs
        monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example:3128")
        through_a_proxy = make_client(region_name="eu-west-1")
        proxied = Wire.of(through_a_proxy)
        assert proxied is not None
        own = through_a_proxy._endpoint.http_session._manager.connection_pool_kw["ssl_context"]  # type: ignore[attr-defined]
        assert proxied._connections._current().urllib3.conn_kw["ssl_context"] is not own

    def test_one_wire_per_client(self) -> None:
        client = make_client(region_name="eu-west-1")
        assert Wire.of(client) is Wire.of(client)
        assert ActivityClient(client)._wire is ActivityClient(client)._wire is Wire.of(client)

    def test_unless_told_not_to(self) -> None:
        client = make_client(region_name="eu-west-1", direct=False)
        assert Wire.of(client) is None

    def test_a_client_of_ones_own_goes_through_botocore(self) -> None:
        client = botocore.session.get_session().create_client("stepfunctions", "eu-west-1")
        assert Wire.of(client) is None

    def test_a_proxy_keeps_the_direct_path(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """Through the proxy botocore would use (tests/test_connections.py: through one)."""
        monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example:3128")
        monkeypatch.delenv("NO_PROXY", raising=False)
        monkeypatch.delenv("no_proxy", raising=False)
        direct = Wire.of(make_client(region_name="eu-west-1"))
        assert direct is not None
        assert direct._connections.proxy_url == "http://proxy.example:3128"
        configured = botocore.session.get_session().create_client(
            "stepfunctions",
            "eu-west-1",
            config=botocore.config.Config(proxies={"https": "http://proxy.example:3129"}),
        )
        allow_direct(configured)
        monkeypatch.delenv("HTTPS_PROXY")
        direct = Wire.of(configured)
        assert direct is not None
        assert direct._connections.proxy_url == "http://proxy.example:3129"

    def test_proxy_settings_urllib3_refuses_go_through_botocore(self) -> None:
        """botocore then says what is wrong, at each call, as it would without the direct path."""
        client = botocore.session.get_session().create_client(
            "stepfunctions",
            "eu-west-1",
            config=botocore.config.Config(
                proxies={"https": "https://proxy.example:3128"},
                proxies_config={"proxy_ca_bundle": "/nonexistent/ca.pem"},
            ),
        )
        allow_direct(client)
        assert Wire.of(client) is None

    def test_no_proxy_alone_is_no_proxy(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("NO_PROXY", "169.254.169.254")
        direct = Wire.of(make_client(region_name="eu-west-1"))
        assert direct is not None
        assert direct._connections.proxy_url is None

    def test_a_proxy_the_endpoint_bypasses(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example:3128")
        monkeypatch.setenv("NO_PROXY", "amazonaws.com")
        direct = Wire.of(make_client(region_name="eu-west-1"))
        assert direct is not None
        assert direct._connections.proxy_url is None

    def test_an_endpoint_with_a_path_goes_through_botocore(self) -> None:
        client = make_client(region_name="eu-west-1", endpoint_url="http://127.0.0.1:9/prefix")
        assert Wire.of(client) is None

    def test_a_bundle_that_cannot_be_read_fails_on_the_direct_path_too(
        self, monkeypatch: pytest.MonkeyPatch, tmp_path: pathlib.Path
    ) -> None:
        """As botocore's calls fail: an SSLError (tests/test_connections.py), not a detour."""
        monkeypatch.setenv("AWS_CA_BUNDLE", str(tmp_path / "missing.pem"))
        assert Wire.of(make_client(region_name="eu-west-1")) is not None

    def test_instrumented_botocore_goes_through_botocore(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """X-Ray and OpenTelemetry wrap BaseClient._make_api_call (wrapt sets __wrapped__)."""
        original = botocore.client.BaseClient._make_api_call

        def traced(self: Any, *args: Any, **kwargs: Any) -> Any:
            return original(self, *args, **kwargs)

        traced.__wrapped__ = original  # type: ignore[attr-defined]
        monkeypatch.setattr(botocore.client.BaseClient, "_make_api_call", traced)
        assert Wire.of(make_client(region_name="eu-west-1")) is None

    def test_botocore_wrapped_with_wrapt_goes_through_botocore(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """As OpenTelemetry's botocore instrumentation wraps it: the wrapper passes for a
        function of botocore's (isinstance, __code__)."""
        original = botocore.client.BaseClient._make_api_call

        def traced(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
            return wrapped(*args, **kwargs)

        monkeypatch.setattr(
            botocore.client.BaseClient, "_make_api_call", wrapt.FunctionWrapper(original, traced)
        )
        assert Wire.of(make_client(region_name="eu-west-1")) is None

    def test_the_user_agent_extra_is_sent(self, server: Scripted) -> None:
        client = botocore.session.get_session().create_client(
            "stepfunctions",
            "eu-west-1",
            endpoint_url=server.url,
            config=botocore.config.Config(user_agent_extra="my-app/1.2"),
        )
        allow_direct(client)
        direct = Wire.of(client)
        assert direct is not None
        direct.call("SendTaskHeartbeat", {"taskToken": "t"}, timeout=5)
        assert server.requests[0][0]["User-Agent"].endswith(" my-app/1.2")

    def test_the_clients_credentials_sign(self, server: Scripted) -> None:
        client = make_client(region_name="eu-west-1", endpoint_url=server.url)
        server.answers.append(Answer(body=b'{"taskToken": "tok", "input": "{}"}'))
        task = ActivityClient(client, worker_name="w").poll(ARN)
        assert task is not None
        assert task.token == "tok"
        headers, _ = server.requests[0]
        assert "Credential=test/" in headers["Authorization"]
        assert "/eu-west-1/states/aws4_request" in headers["Authorization"]


class TestThroughActivityClient:
    """ActivityClient maps the direct path's errors as it maps botocore's."""

    @pytest.fixture
    def client(self, server: Scripted, monkeypatch: pytest.MonkeyPatch) -> ActivityClient:
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")
        sfn = make_client(region_name="us-east-1", endpoint_url=server.url)
        return ActivityClient(sfn, worker_name="w", call_timeout=0.3)

    def test_a_task_gone(self, server: Scripted, client: ActivityClient) -> None:
        server.answers.append(Answer(400, b'{"__type": "TaskTimedOut", "message": "late"}'))
        with pytest.raises(TaskGone, match="late"):
            client.send_heartbeat("t")

    def test_throttling_is_retried(self, server: Scripted, client: ActivityClient) -> None:
        server.answers.append(Answer(400, b'{"__type": "ThrottlingException"}'))
        client.send_outcome("t", Success("{}"))
        assert len(server.requests) == 2
        assert json.loads(server.requests[1][1]) == {"taskToken": "t", "output": "{}"}

    @pytest.mark.parametrize("code", THROTTLING_CODES)
    def test_each_throttling_code_is_throttling(
        self, server: Scripted, client: ActivityClient, code: str
    ) -> None:
        server.answers.append(Answer(400, json.dumps({"__type": code}).encode()))
        client.retry = RetryPolicy(attempts=1)
        with pytest.raises(Throttled) as caught:
            client.send_heartbeat("t")
        assert caught.value.transient
        assert caught.value.code == code
        assert client.pacer.gap("SendTaskHeartbeat") > 0

    @pytest.mark.parametrize("direct", [True, False])
    def test_a_429_that_is_not_json_is_throttling(
        self, server: Scripted, client: ActivityClient, direct: bool
    ) -> None:
        """A proxy's page: named "429" by its status on both paths, throttling, retried."""
        if not direct:
            sfn = make_client(region_name="us-east-1", endpoint_url=server.url, direct=False)
            client = ActivityClient(sfn, worker_name="w", call_timeout=0.3)
        assert (client._wire is not None) is direct
        server.answers.append(Answer(429, b"<html><body>Too Many Requests</body></html>"))
        server.answers.append(Answer(429, b"<html><body>Too Many Requests</body></html>"))
        client.retry = RetryPolicy(attempts=2)
        with pytest.raises(Throttled) as caught:
            client.send_heartbeat("t")
        assert (caught.value.code, caught.value.transient) == ("429", True)
        assert len(server.requests) == 2, "retried"
        assert client.pacer.gap("SendTaskHeartbeat") > 0

    def test_a_hung_call_waits_the_call_timeout(
        self, server: Scripted, client: ActivityClient
    ) -> None:
        """A short call gives up after call_timeout, and is retried as unanswered."""
        server.answers.extend([Answer(hang=True)] * 5)
        with pytest.raises(ServiceError) as caught:
            client.send_heartbeat("t")
        assert caught.value.transient
        assert caught.value.unanswered

    def test_close_closes_the_direct_paths_connections(
        self, server: Scripted, client: ActivityClient
    ) -> None:
        """What a worker does before it forks: the copy must hold none of them."""
        client.send_heartbeat("t")
        client.close()
        client.send_heartbeat("t")
        assert server.connections == 2
