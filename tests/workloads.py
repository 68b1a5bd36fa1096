"""Activities the worker's integration tests serve: importable, so spawned processes find them."""

from __future__ import annotations

import logging
import os
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from activities import Activity, ActivityError, TaskCancelled

if TYPE_CHECKING:
    from collections.abc import Generator


class Echo(Activity):
    name = "it-Echo"

    def run(self, value: Any) -> Any:
        return value


class Busy(ActivityError):
    error = "Inventory.Busy"


class Flaky(Activity):
    """Fails with Inventory.Busy until the state machine's retry count reaches ``succeed_on``."""

    name = "it-Flaky"

    def run(self, attempt: int, succeed_on: int) -> dict[str, int]:
        if attempt < succeed_on:
            raise Busy(f"busy on attempt {attempt}")
        return {"attempt": attempt}


class Picky(Activity):
    name = "it-Picky"

    def run(self, quantity: int) -> int:
        if quantity <= 0:
            raise ValueError(f"quantity must be positive, got {quantity}")
        return quantity


class Patient(Activity):
    """Yields every 0.2 s for ``seconds``; writes ``marker`` when it sees TaskCancelled.

    With ``silence``, it goes quiet that many seconds after its first yield, long enough
    for a state's HeartbeatSeconds to expire.
    """

    name = "it-Patient"

    def run(self, seconds: float, marker: str, silence: float = 0) -> Generator[None, None, str]:
        deadline = time.monotonic() + seconds
        try:
            yield
            time.sleep(silence)
            while time.monotonic() < deadline:
                time.sleep(0.2)
                yield
        except TaskCancelled:
            Path(marker).write_text(str(os.getpid()))
            raise
        return "finished"


class Stubborn(Activity):
    """Never yields; the worker heartbeats for it and must stop it when the task is gone."""

    name = "it-Stubborn"
    heartbeat_interval = 0.5

    def run(self, seconds: float, marker: str) -> str:
        Path(marker).write_text(str(os.getpid()))
        time.sleep(seconds)
        return "finished"


class Crasher(Activity):
    name = "it-Crasher"

    def run(self) -> None:
        os._exit(3)


class Pid(Activity):
    """Returns the pid of the process that ran it."""

    name = "it-Pid"

    def run(self) -> int:
        return os.getpid()


class ThreadPid(Pid):
    name = "it-ThreadPid"


class RecycleByCount(Pid):
    name = "it-RecycleByCount"


class RecycleByMemory(Pid):
    name = "it-RecycleByMemory"


class Chatty(Activity):
    """Yields ``times`` times as fast as it can."""

    name = "it-Chatty"

    def run(self, times: int) -> Generator[None, None, int]:
        for _ in range(times):
            yield
        return times


class Sleepy(Activity):
    """Sleeps ``seconds`` (no heartbeats), then returns them."""

    name = "it-Sleepy"

    def run(self, seconds: float, secret: str = "") -> float:
        time.sleep(seconds)
        return seconds


class TaskListPid(Pid):
    name = "it-TaskListPid"


class LoudPid(Activity):
    """Logs a warning with its process id, and returns it."""

    name = "it-LoudPid"

    def run(self) -> int:
        logging.getLogger("tests.loud").warning("hello from %d", os.getpid())
        return os.getpid()


class Rendezvous(Activity):
    """Waits (up to 30 s) until ``count`` tasks of it run at once; where it ran, and if met."""

    name = "it-Rendezvous"

    def run(self, directory: str, count: int) -> dict[str, Any]:
        here = {"pid": os.getpid(), "thread": threading.get_ident()}
        Path(directory, f"{here['pid']}-{here['thread']}").touch()
        deadline = time.monotonic() + 30
        while len(os.listdir(directory)) < count and time.monotonic() < deadline:
            time.sleep(0.05)
        return {**here, "met": len(os.listdir(directory)) >= count}


class Blocker(Activity):
    """Holds its slot until the test sets ``release`` (a thread slot's test only)."""

    name = "it-Blocker"
    release = threading.Event()

    def run(self) -> str:
        if not type(self).release.wait(60):
            msg = "the test never released the blocker"
            raise RuntimeError(msg)
        return "released"
