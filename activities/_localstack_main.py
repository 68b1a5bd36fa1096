"""Start LocalStack with a fix for a race in its activity heartbeats; run by LocalStack's Python.

This file runs inside LocalStack's own virtualenv (``python -I _localstack_main.py``), so it
imports nothing from sfn-activities.

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
"""

from __future__ import annotations

import os
import runpy
import signal
import threading
import time
from typing import Any

#: Environment variable with the pid of the process that started LocalStack.
PARENT_VARIABLE = "SFN_ACTIVITIES_PARENT_PID"


def _exit_with_parent() -> None:
    """End LocalStack (its whole process group) when the process that started it is gone.

    LocalStack runs in a session of its own, so that a Ctrl-C meant for a test run does not
    reach it; if the test run is then killed without cleaning up, nothing else would stop it.
    """
    parent = int(os.environ.get(PARENT_VARIABLE, "0"))
    if not parent:
        return

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1)
        os.killpg(0, signal.SIGKILL)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


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


if __name__ == "__main__":
    _exit_with_parent()
    _patch()
    runpy.run_module("localstack.runtime.main", run_name="__main__", alter_sys=True)
