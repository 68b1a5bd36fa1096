"""Start LocalStack bound to its gateway's host, with a fix for its activity heartbeats.

This file runs inside LocalStack's own virtualenv (``python -I main.py``), so it
imports nothing from sfn-activities. It patches two LocalStack bugs, then runs
``localstack.runtime.main``; a patch point that is missing ends it at once with a message.

The bind (LocalStack 4.9, ``runtime/server/twisted.py``): the default server listens on
every interface whatever host ``GATEWAY_LISTEN`` names (``TCP4ServerEndpoint`` without an
``interface``), so ``127.0.0.1:PORT`` is answered on the machine's other addresses too. The
fix wraps the reactor's ``listenTCP``, through which every Twisted endpoint listens: a
listener for all interfaces gets the gateway's host instead, and one for any other address
is refused. :class:`activities.local.LocalStepFunctions` checks what the process listens on
once it is ready, so that a LocalStack this fix no longer reaches is not used.

The race (LocalStack 4.8 to 4.14, ``asl/eval/callback/callback.py``): for a ``Task`` state
with ``HeartbeatSeconds``, the execution thread sets up its heartbeat watcher only after the
poll has returned the task. A heartbeat that arrives before that is refused
(``InvalidToken``), and a success or failure that arrives before it is never seen: the
watcher waits a full ``HeartbeatSeconds`` and the execution fails with ``States.Timeout``.
The fix remembers an early heartbeat and replays it (and an early outcome) when the
watcher is set up. (The race was reported for fast workers; it has not shown here even with
24 concurrent tasks, so no test proves this half of the fix.)

The same change makes a heartbeat for a state without ``HeartbeatSeconds`` succeed, as it
does on AWS. Unpatched, LocalStack answers ``InvalidToken``: the worker takes the task for
gone, and the execution stays RUNNING for good (``tests/test_local.py`` checks this).

The long poll (``provider.py`` ``_pull_activity_task``): an empty ``GetActivityTask``
lasts 60 s, as on AWS, but LocalStack looks at the queue once a second, so a task waits up
to a second for a poll already open. The launcher's own poll looks every
:data:`POLL_INTERVAL` seconds, and lasts ``SFN_ACTIVITIES_POLL_SECONDS`` (60 by default):
a test suite sets it shorter, so that stopping a worker, which waits for its open polls,
does not cost a minute each time.
"""

from __future__ import annotations

import os
import runpy
import shutil
import signal
import threading
import time
from typing import Any, NoReturn

#: Environment variable with the pid of the process that started LocalStack.
PARENT_VARIABLE = "SFN_ACTIVITIES_PARENT_PID"

#: Environment variable naming LocalStack's state directory, removed if the parent dies.
STATE_VARIABLE = "SFN_ACTIVITIES_STATE_DIR"

#: Environment variable with the seconds an empty ``GetActivityTask`` lasts (60 on AWS).
POLL_SECONDS_VARIABLE = "SFN_ACTIVITIES_POLL_SECONDS"

#: Seconds between two looks at an activity's queue while a poll waits.
POLL_INTERVAL = 0.05

#: What ``listenTCP`` receives for "every interface".
_ALL_INTERFACES = frozenset({"", "0.0.0.0", "::"})  # noqa: S104 - recognised, not used


def _fail(reason: str) -> NoReturn:
    """End the launcher with a one-line reason, exit code 1 (it lands in LocalStack's log)."""
    raise SystemExit(f"sfn-activities launcher: {reason}")


def _exit_with_parent() -> None:
    """End LocalStack (its whole process group) when the process that started it is gone.

    LocalStack runs in a session of its own, so that a Ctrl-C meant for a test run does not
    reach it; if the test run is then killed without cleaning up, nothing else would stop it.
    """
    parent = int(os.environ.get(PARENT_VARIABLE, "0"))
    if not parent:
        return

    state = os.environ.get(STATE_VARIABLE)

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1)
        if state:  # the parent cannot remove it any more
            shutil.rmtree(state, ignore_errors=True)
        os.killpg(0, signal.SIGKILL)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


def _bind_to_gateway_host() -> None:
    """Make every TCP listener of this process bind to the host of ``GATEWAY_LISTEN``."""
    from localstack import config  # noqa: PLC0415
    from localstack.runtime.server import twisted as server  # noqa: PLC0415

    if config.GATEWAY_SERVER != "twisted":
        _fail(f"GATEWAY_SERVER={config.GATEWAY_SERVER!r} is not patched; use 'twisted'")
    hosts = {address.host for address in config.GATEWAY_LISTEN}
    if len(hosts) != 1:
        _fail(f"GATEWAY_LISTEN must name one host, not {sorted(hosts)}")
    (host,) = hosts
    reactor: Any = getattr(server, "reactor", None)
    listen_tcp = getattr(reactor, "listenTCP", None)
    if listen_tcp is None:
        _fail("localstack.runtime.server.twisted has no reactor.listenTCP to patch")

    def listenTCP(  # noqa: N802 - the name Twisted calls
        port: int, factory: Any, backlog: int = 50, interface: str = ""
    ) -> Any:
        if interface in _ALL_INTERFACES:
            interface = host
        elif interface != host:
            msg = f"refusing to listen on {interface}:{port}; GATEWAY_LISTEN names {host}"
            raise RuntimeError(msg)
        return listen_tcp(port, factory, backlog, interface)

    reactor.listenTCP = listenTCP


def _patch() -> None:
    from localstack.services.stepfunctions.asl.eval.callback import (  # noqa: PLC0415
        callback,
    )

    endpoint_class: Any = callback.CallbackEndpoint
    setup = endpoint_class.setup_heartbeat_endpoint

    def setup_heartbeat_endpoint(self: Any, heartbeat_seconds: int) -> Any:
        heartbeat_endpoint = setup(self, heartbeat_seconds)
        if getattr(self, "_early_heartbeat", False) or self.get_outcome() is not None:
            heartbeat_endpoint.notify()
        return heartbeat_endpoint

    def notify_heartbeat(self: Any) -> bool:
        heartbeat_endpoint = self._heartbeat_endpoint
        if heartbeat_endpoint is None:
            self._early_heartbeat = True
        else:
            heartbeat_endpoint.notify()
        return True

    endpoint_class.setup_heartbeat_endpoint = setup_heartbeat_endpoint
    endpoint_class.notify_heartbeat = notify_heartbeat


def _poll_queue_often() -> None:
    """An empty poll that looks at the queue every :data:`POLL_INTERVAL` s, for as long as set."""
    from localstack.services.stepfunctions import provider  # noqa: PLC0415

    seconds = float(os.environ.get(POLL_SECONDS_VARIABLE) or 60)
    provider_class: Any = provider.StepFunctionsProvider
    if not isinstance(provider_class.__dict__.get("_pull_activity_task"), staticmethod):
        _fail("localstack's StepFunctionsProvider has no _pull_activity_task to patch")

    def pull_activity_task(activity: Any) -> Any:
        deadline = time.monotonic() + seconds
        while True:
            try:
                return activity.get_task()
            except IndexError:
                if time.monotonic() >= deadline:
                    return None
                time.sleep(POLL_INTERVAL)

    provider_class._pull_activity_task = staticmethod(pull_activity_task)


if __name__ == "__main__":
    _exit_with_parent()
    _bind_to_gateway_host()
    _patch()
    _poll_queue_often()
    runpy.run_module("localstack.runtime.main", run_name="__main__", alter_sys=True)
