"""Process and thread slots: what the worker can do to them, and what a process inherits."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from activities._control import Control
from activities._loop import SlotSettings
from activities._slot import ProcessSlot, spawn_context
from activities.local import free_port
from tests.waiting import wait_until

if TYPE_CHECKING:
    from collections.abc import Iterator

    from activities._slot import Slot
    from activities.task import Task

ROOT = Path(__file__).resolve().parent.parent


class Owner:
    def on_ready(self, slot: Slot) -> None: ...

    def on_exit(self, slot: Slot, reason: str, *, was_ready: bool) -> None: ...

    def on_overflow(self, task: Task) -> None: ...

    def on_free(self) -> None: ...


def test_a_slot_stopped_before_it_started_is_no_error() -> None:
    """A stop at once can come while the worker is still starting its processes."""
    context = spawn_context()
    settings = SlotSettings(by_arn={}, heartbeat_intervals={}, worker_name="w")
    slot = ProcessSlot(
        settings, Control(context, ["arn:a"], slots=1, pollers=None), Owner(), context
    )
    assert slot.terminate()
    assert not slot.is_alive()


def running(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie no longer does)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in {"Z", "X"}


def children(pid: int) -> list[int]:
    """The task processes (spawned children) of ``pid``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            command = (entry / "cmdline").read_bytes()
        except (OSError, IndexError, ValueError):
            continue
        if parent == pid and b"multiprocessing.spawn" in command:
            found.append(int(entry.name))
    return found


def polls_waiting(endpoint: str) -> int:
    """How many polls the benchmarks' endpoint holds open now."""
    request = urllib.request.Request(  # noqa: S310 - a local http URL
        endpoint, data=b"{}", headers={"X-Amz-Target": "Bench.Stats"}
    )
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
        return int(json.load(response)["waiting"])


@pytest.fixture
def endpoint() -> Iterator[str]:
    """The benchmarks' in-memory Step Functions on 127.0.0.1, empty polls ending after 1 s."""
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.endpoint", "--port", str(port), "--poll-wait", "1"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        server.stdout.readline()  # "ready on PORT"
        yield f"http://127.0.0.1:{port}"
    finally:
        server.kill()
        server.wait()
        if server.stdout is not None:
            server.stdout.close()


def test_task_processes_end_when_the_worker_process_is_killed(endpoint: str) -> None:
    """Nobody would drain or replace them: they stop polling and exit on their own."""
    environment = {
        **os.environ,
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
        "PYTHONPATH": str(ROOT),
    }
    worker = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.serve", "Nothing", "--processes", "2"],
        cwd=ROOT,
        env=environment,
    )
    pids: list[int] = []
    try:
        assert wait_until(
            lambda: polls_waiting(endpoint) >= 1 and len(children(worker.pid)) == 2
        ), "the slots never polled"
        pids = children(worker.pid)
        assert len(pids) == 2
        worker.kill()
        worker.wait()
        assert wait_until(lambda: not any(running(pid) for pid in pids)), "orphans poll on"
    finally:
        worker.kill()
        worker.wait()
        for pid in pids:
            if running(pid):
                os.kill(pid, signal.SIGKILL)
