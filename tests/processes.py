"""Processes of a worker started by a test: which run, which are whose, and their endpoint.

A worker started as a subprocess reaches :func:`bench_environment`'s endpoint, the
benchmarks' in-memory Step Functions (see the ``bench_endpoint`` fixture): enough for
tests of processes that need no state machine.
"""

from __future__ import annotations

import json
import os
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def bench_environment(endpoint: str) -> dict[str, str]:
    """The environment of a worker that is to reach ``endpoint``."""
    return {
        **os.environ,
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
        "PYTHONPATH": str(ROOT),
    }


def running(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie no longer does)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in {"Z", "X"}


def children(pid: int, marker: bytes = b"") -> list[int]:
    """The child processes of ``pid`` whose command line holds ``marker``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            command = (entry / "cmdline").read_bytes()
        except (OSError, IndexError, ValueError):
            continue
        if parent == pid and marker in command:
            found.append(int(entry.name))
    return found


def name(pid: int) -> str:
    """The name ``ps -o comm`` shows for ``pid`` ("" if it has gone)."""
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def forkservers(worker: int) -> list[int]:
    """The forkservers ``worker`` started: a copy of its process, or a new interpreter."""
    return [
        child
        for child in children(worker)
        if name(child) == "sfn-forkserver"
        or child in children(worker, b"multiprocessing.forkserver")
    ]


def task_processes(worker: int) -> list[int]:
    """The task processes of ``worker``: the children of the forkserver it started."""
    return [child for server in forkservers(worker) for child in children(server)]


def bench(endpoint: str, operation: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
    """Call one of the benchmarks' endpoint's own operations (``Load``, ``Stats``, ``Fault``)."""
    request = urllib.request.Request(  # noqa: S310 - a local http URL
        endpoint,
        data=json.dumps(body or {}).encode(),
        headers={"X-Amz-Target": f"Bench.{operation}"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
        result: dict[str, Any] = json.load(response)
        return result


def polls_waiting(endpoint: str) -> int:
    """How many polls the benchmarks' endpoint holds open now."""
    return int(bench(endpoint, "Stats")["waiting"])
