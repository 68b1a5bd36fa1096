"""The direct path's connections (activities._aws.connections): urllib3's pool set up as
botocore sets up its own, through real proxies and TLS servers on 127.0.0.1."""

from __future__ import annotations

import base64
import json
import logging
import os
import signal
import ssl
import subprocess
import sys
import threading
from typing import TYPE_CHECKING, Any

import botocore.config
import botocore.exceptions
import botocore.session
import pytest
import urllib3

from activities import make_client
from activities._aws.connections import Connections
from activities._aws.wire import Wire, allow_direct
from activities.local import free_port
from tests.processes import ROOT, bench_environment
from tests.proxies import TunnelProxy
from tests.test_endpoint_worker import completed, load
from tests.test_wire import TLS, Scripted, credentials
from tests.waiting import wait_until

if TYPE_CHECKING:
    import pathlib
    from collections.abc import Iterator

CA = str(TLS / "cert.pem")  # the servers' self-signed certificate, trusted as a CA
CLIENT_CERT = (str(TLS / "cert.pem"), str(TLS / "key.pem"))  # the same pair, as the client's


def serving(scripted: Scripted) -> Iterator[Scripted]:
    with scripted:
        threading.Thread(target=scripted.serve_forever, args=(0.05,), daemon=True).start()
        yield scripted
        scripted.stopping.set()
        scripted.shutdown()


@pytest.fixture
def server() -> Iterator[Scripted]:
    yield from serving(Scripted())


@pytest.fixture
def tls_server() -> Iterator[Scripted]:
    yield from serving(Scripted(tls=True))


@pytest.fixture
def cert_server() -> Iterator[Scripted]:
    """A TLS server that serves only a client with a certificate its CA signed."""
    yield from serving(Scripted(tls=True, client_ca=TLS / "cert.pem"))


@pytest.fixture
def proxy() -> Iterator[TunnelProxy]:
    with TunnelProxy() as tunnel:
        yield tunnel


#: A proxy's TLS failing, as botocore names it: urllib3 1.26 does not say it was the proxy's.
PROXY_TLS_ERROR = (
    botocore.exceptions.ProxyConnectionError
    if int(urllib3.__version__.split(".")[0]) >= 2
    else botocore.exceptions.SSLError
)


def wire(url: str, **kwargs: Any) -> Wire:
    return Wire(url, region="eu-west-1", credentials=credentials(), **kwargs)


def heartbeat(direct: Wire, token: str = "t") -> dict[str, Any]:  # noqa: S107 - a task token
    return direct.call("SendTaskHeartbeat", {"taskToken": token}, timeout=5)


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


class TestThroughAProxy:
    def test_https_is_tunnelled_and_the_tunnel_kept_alive(
        self, tls_server: Scripted, proxy: TunnelProxy
    ) -> None:
        direct = wire(tls_server.url, verify=CA, proxies={"https": proxy.url})
        for token in ("a", "b", "c"):
            assert heartbeat(direct, token) == {}
        port = tls_server.server_address[1]
        assert [target for target, _ in proxy.connects] == [f"127.0.0.1:{port}"]
        assert tls_server.connections == 1
        assert [json.loads(body)["taskToken"] for _, body in tls_server.requests] == list("abc")
        assert tls_server.targets == ["/", "/", "/"]

    def test_the_proxys_credentials_go_with_the_connect_only(self, tls_server: Scripted) -> None:
        with TunnelProxy(require=basic("user", "pa ss")) as proxy:
            url = proxy.url.replace("http://", "http://user:pa%20ss@")
            direct = wire(tls_server.url, verify=CA, proxies={"https": url})
            assert heartbeat(direct) == {}
        assert proxy.connects[0][1]["proxy-authorization"] == basic("user", "pa ss")
        headers, _ = tls_server.requests[0]
        assert "Proxy-Authorization" not in headers

    def test_a_refused_tunnel_is_a_proxy_error(self, tls_server: Scripted) -> None:
        with TunnelProxy(require=basic("user", "right")) as proxy:
            url = proxy.url.replace("http://", "http://user:wrong@")
            direct = wire(tls_server.url, verify=CA, proxies={"https": url})
            with pytest.raises(botocore.exceptions.ProxyConnectionError) as caught:
                heartbeat(direct)
        assert "wrong" not in str(caught.value)  # the proxy's URL is masked
        assert tls_server.requests == []

    def test_no_proxy_listening_is_a_proxy_error(self, tls_server: Scripted) -> None:
        direct = wire(
            tls_server.url, verify=CA, proxies={"https": f"http://127.0.0.1:{free_port()}"}
        )
        with pytest.raises(botocore.exceptions.ProxyConnectionError):
            heartbeat(direct)

    def test_the_endpoints_certificate_is_checked_through_the_tunnel(
        self, tls_server: Scripted, proxy: TunnelProxy
    ) -> None:
        direct = wire(tls_server.url, proxies={"https": proxy.url})  # botocore's bundle
        with pytest.raises(botocore.exceptions.SSLError):
            heartbeat(direct)
        assert len(proxy.connects) == 1
        assert tls_server.requests == []

    def test_an_https_proxy_tunnels_tls_within_tls(self, tls_server: Scripted) -> None:
        """The proxy's own certificate is checked with ``proxies_config``'s bundle."""
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(TLS / "cert.pem", TLS / "key.pem")
        with TunnelProxy(tls=context) as proxy:
            direct = wire(
                tls_server.url,
                verify=CA,
                proxies={"https": proxy.url},
                proxies_config={"proxy_ca_bundle": CA},
            )
            for token in ("a", "b"):
                assert heartbeat(direct, token) == {}
            untrusted = wire(tls_server.url, proxies={"https": proxy.url})
            with pytest.raises(PROXY_TLS_ERROR):
                heartbeat(untrusted)  # the proxy's certificate, not in botocore's bundle
        assert len(proxy.connects) == 1
        assert tls_server.connections == 1
        assert len(tls_server.requests) == 2

    def test_http_is_forwarded_with_its_url(self, server: Scripted) -> None:
        """Plain HTTP goes to the proxy itself, the request naming the endpoint in full.

        The scripted server stands in for a forwarding proxy: it answers what it is sent.
        """
        proxy_url = server.url.replace("http://", "http://user:secret@")
        direct = wire("http://states.invalid:8080", proxies={"http": proxy_url})
        assert heartbeat(direct) == {}
        headers, _ = server.requests[0]
        assert server.targets == ["http://states.invalid:8080/"]
        assert headers["Host"] == "states.invalid:8080"  # as signed
        assert headers["Proxy-Authorization"] == basic("user", "secret")


class TestClientCertificate:
    def test_a_client_certificate_is_presented(self, cert_server: Scripted) -> None:
        direct = wire(cert_server.url, verify=CA, client_cert=CLIENT_CERT)
        assert heartbeat(direct) == {}
        assert len(cert_server.requests) == 1

    def test_without_one_the_server_refuses(self, cert_server: Scripted) -> None:
        direct = wire(cert_server.url, verify=CA)
        # TLS 1.3 tells the client of the refusal after its handshake: at the first read.
        with pytest.raises(
            (botocore.exceptions.SSLError, botocore.exceptions.ConnectionClosedError)
        ):
            heartbeat(direct)
        assert cert_server.requests == []


class TestTLS:
    def test_a_bundle_that_cannot_be_read_fails_as_botocore_fails(
        self, tls_server: Scripted, tmp_path: pathlib.Path
    ) -> None:
        direct = wire(tls_server.url, verify=str(tmp_path / "missing.pem"))
        with pytest.raises(botocore.exceptions.SSLError):
            heartbeat(direct)


class TestFromTheClient:
    """What a client made by make_client (or botocore) is configured with, the direct path uses."""

    @pytest.fixture(autouse=True)
    def _environment(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")
        for name in (
            "HTTP_PROXY",
            "HTTPS_PROXY",
            "http_proxy",
            "https_proxy",
            "NO_PROXY",
            "no_proxy",
        ):
            monkeypatch.delenv(name, raising=False)

    def test_https_proxy_and_ca_bundle_from_the_environment(
        self, monkeypatch: pytest.MonkeyPatch, tls_server: Scripted, proxy: TunnelProxy
    ) -> None:
        monkeypatch.setenv("HTTPS_PROXY", proxy.url)
        monkeypatch.setenv("AWS_CA_BUNDLE", CA)
        client = make_client(region_name="eu-west-1", endpoint_url=tls_server.url)
        direct = Wire.of(client)
        assert direct is not None
        assert heartbeat(direct) == {}
        assert len(proxy.connects) == 1

    def test_no_proxy_exempts_the_endpoint(
        self, monkeypatch: pytest.MonkeyPatch, tls_server: Scripted, proxy: TunnelProxy
    ) -> None:
        monkeypatch.setenv("HTTPS_PROXY", proxy.url)
        monkeypatch.setenv("NO_PROXY", "127.0.0.1")
        monkeypatch.setenv("AWS_CA_BUNDLE", CA)
        direct = Wire.of(make_client(region_name="eu-west-1", endpoint_url=tls_server.url))
        assert direct is not None
        assert heartbeat(direct) == {}
        assert proxy.connects == []

    def test_a_configured_client_certificate_and_proxy(
        self, cert_server: Scripted, proxy: TunnelProxy
    ) -> None:
        client = botocore.session.get_session().create_client(
            "stepfunctions",
            "eu-west-1",
            endpoint_url=cert_server.url,
            verify=CA,
            config=botocore.config.Config(client_cert=CLIENT_CERT, proxies={"https": proxy.url}),
        )
        allow_direct(client)
        direct = Wire.of(client)
        assert direct is not None
        assert heartbeat(direct) == {}
        assert len(proxy.connects) == 1
        assert len(cert_server.requests) == 1


class TestFork:
    def test_a_child_closes_its_copies_and_tunnels_anew(
        self, tls_server: Scripted, proxy: TunnelProxy
    ) -> None:
        direct = wire(tls_server.url, verify=CA, proxies={"https": proxy.url})
        heartbeat(direct, "parent")
        pid = os.fork()
        if pid == 0:  # the child: one call of its own, then out without pytest's cleanup
            code = 1
            try:
                heartbeat(direct, "child")
                code = 0
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        heartbeat(direct, "parent again")
        assert len(proxy.connects) == 2  # the parent's tunnel, kept; the child's own
        assert [json.loads(body)["taskToken"] for _, body in tls_server.requests] == [
            "parent",
            "child",
            "parent again",
        ]

    @pytest.mark.parametrize("used", [False, True])
    def test_a_pool_is_the_childs_only_if_the_parent_never_used_it(
        self, server: Scripted, used: bool
    ) -> None:
        """Made before the fork and never asked for a connection (a worker premakes it): kept."""
        direct = wire(server.url)
        if used:
            heartbeat(direct, "parent")
        before = direct._connections._pool
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                kept = direct._connections._pool is before
                heartbeat(direct, "child")
                code = 0 if kept is not used else 2
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0

    def test_a_child_exits_though_a_parent_thread_held_the_pool_at_the_fork(
        self, server: Scripted, tmp_path: pathlib.Path
    ) -> None:
        """urllib3 closes a pool's connections at exit, taking its queue's lock: the child's.

        In a process of its own, so that the child ends as a program does (atexit, then
        the finalizers), not with os._exit as a test's child must.
        """
        script = tmp_path / "fork.py"
        script.write_text(FORK_WHILE_HELD.format(root=str(ROOT), url=server.url))
        done = subprocess.run(
            [sys.executable, str(script)], capture_output=True, text=True, timeout=60, check=False
        )
        assert done.returncode == 0, done.stdout + done.stderr
        assert [json.loads(body)["taskToken"] for _, body in server.requests] == [
            "parent",
            "child",
        ]


#: A program that forks while a thread holds its wire's pool queue's lock; its child makes
#: a call and exits as programs do. Exit status 0: the child exited within 20 s, status 0.
FORK_WHILE_HELD = """
import os, sys, threading, time
sys.path.insert(0, {root!r})
import botocore.credentials
from activities._aws.wire import Wire

direct = Wire("{url}", region="eu-west-1",
              credentials=botocore.credentials.Credentials("AKID", "secret"))
direct.call("SendTaskHeartbeat", {{"taskToken": "parent"}}, timeout=5)
queue = direct._connections._pool.urllib3.pool
held, release = threading.Event(), threading.Event()

def hold():
    with queue.mutex:
        held.set()
        release.wait()

threading.Thread(target=hold, daemon=True).start()
held.wait()
pid = os.fork()
if pid == 0:
    direct.call("SendTaskHeartbeat", {{"taskToken": "child"}}, timeout=5)
    sys.exit(0)
release.set()
deadline = time.monotonic() + 20
while time.monotonic() < deadline:
    done, status = os.waitpid(pid, os.WNOHANG)
    if done:
        sys.exit(os.waitstatus_to_exitcode(status))
    time.sleep(0.05)
os.kill(pid, 9)
sys.exit("the child hung at its exit")
"""


class TestClose:
    def test_the_idle_connections_are_closed(self, server: Scripted) -> None:
        connections = Connections(server.url)
        lease, conn = connections.take()
        connections.give_back(lease, conn, reusable=True)
        connections.close()
        assert conn.sock is None
        lease, again = connections.take()  # a new pool, a new connection
        assert again is not conn
        assert again.sock is not None
        connections.give_back(lease, again, reusable=False)

    def test_a_connection_goes_back_to_its_own_pool(
        self, server: Scripted, caplog: pytest.LogCaptureFixture
    ) -> None:
        """Held across close(): closed with its pool, never put in the next one (full)."""
        connections = Connections(server.url, max_idle=1)
        old, held = connections.take()
        connections.close()
        new, other = connections.take()
        assert new is not old
        connections.give_back(new, other, reusable=True)
        with caplog.at_level(logging.WARNING, logger="urllib3"):
            connections.give_back(old, held, reusable=True)
        assert held.sock is None  # closed with its pool
        assert not [r for r in caplog.records if "pool is full" in r.getMessage()]
        again, same = connections.take()
        assert (again, same) == (new, other)  # the idle one, still open
        assert same.sock is not None
        connections.give_back(again, same, reusable=False)


class TestAWorkerThroughAProxy:
    def test_its_polls_and_its_task_processes_outcomes(
        self, bench_endpoint: str, tmp_path: pathlib.Path
    ) -> None:
        """``HTTP_PROXY`` as a user sets it: every call goes through the proxy, on the direct path.

        The proxy records the first request of each connection: a task process's first
        is its first outcome (it does not poll).
        """
        environment = {**bench_environment(bench_endpoint), "TMPDIR": str(tmp_path)}
        for name in ("NO_PROXY", "no_proxy", "http_proxy", "HTTPS_PROXY", "https_proxy"):
            environment.pop(name, None)
        command = [sys.executable, "-m", "activities", "worker", "tests.metrics_workload"]
        command += ["--processes", "2"]
        with TunnelProxy() as proxy, (tmp_path / "worker.log").open("w") as log:
            environment["HTTP_PROXY"] = proxy.url
            worker = subprocess.Popen(command, cwd=ROOT, env=environment, stderr=log)
            try:
                load(bench_endpoint, 10, verdict="ok")
                assert wait_until(lambda: completed(bench_endpoint) == 10)
                worker.send_signal(signal.SIGTERM)
                assert worker.wait(60) == 0
            finally:
                if worker.poll() is None:
                    worker.kill()
                    worker.wait()
        assert {target for target, _ in proxy.forwarded} == {f"{bench_endpoint}/"}
        firsts = {
            (headers["x-amz-target"], headers["user-agent"].split()[0])
            for _, headers in proxy.forwarded
        }
        assert ("AWSStepFunctions.GetActivityTask", "sfn-activities") in firsts
        assert ("AWSStepFunctions.SendTaskSuccess", "sfn-activities") in firsts
