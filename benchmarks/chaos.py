"""Chaos: task processes killed under load, and stops during start. What is left open?

``nox -s chaos`` (``python -m benchmarks.chaos``) runs ``activities worker`` as users run
it (its defaults, log level included) against the benchmarks' endpoint
(:mod:`benchmarks.endpoint`), whose polls behave as Step Functions' do: a task handed to a
poll whose process is gone is handed out all the same, and stays open (on AWS, until its
``HeartbeatSeconds`` or ``TimeoutSeconds``).

For each shape of pool (threads and async positions; with ``--pollers``; with a
``--max-concurrency``), a steady stream of short sync and async tasks, while a random task
process is SIGKILLed every ``--every`` seconds, ``--kills`` times. Then, once the stream
stops and the worker settles: how many tasks succeeded, how many failed (with
``activities.WorkerCrashed``: they were running in a killed process), how many are left
open (lost until their timeout), how many outcomes came for a task closed already (a task
reported twice), and whether 60 new tasks are all served within 20 s.

Last, SIGTERM at a random moment of a worker's first seconds, ``--starts`` times: does
it exit?

Prints the tables in Markdown. The promise is none open, none twice, new tasks at once,
every stop honoured.
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks.faults import Endpoint

ROOT = Path(__file__).resolve().parent.parent

MODULE = "benchmarks.workloads.chaos"
SYNC, ASYNC = "bench-ChaosSleep", "bench-ChaosAwait"

#: The pool every scenario starts from, and what each adds.
POOL = ("--processes", "3", "--threads", "2", "--async-tasks", "10")
SCENARIOS: dict[str, tuple[str, ...]] = {
    "threads + async positions": (),
    "--pollers 3": ("--pollers", "3"),
    f"--max-concurrency {SYNC}=3": ("--max-concurrency", f"{SYNC}=3"),
}

#: Seconds an empty poll of the endpoint lasts.
POLL_WAIT = 20.0

#: Seconds the new tasks after the kills may take, all of them.
NEW_TASKS_WITHIN = 20.0
NEW_TASKS = 60


def environment(endpoint: Endpoint) -> dict[str, str]:
    """The worker's environment: the endpoint, stand-in credentials, this checkout."""
    return {
        **os.environ,
        "AWS_ENDPOINT_URL": endpoint.url,
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "bench",
        "AWS_SECRET_ACCESS_KEY": "bench",
        "PYTHONPATH": str(ROOT),
    }


def start(endpoint: Endpoint, options: tuple[str, ...], log: Path) -> subprocess.Popen[bytes]:
    """``activities worker benchmarks.workloads.chaos`` with ``options``, its log in ``log``."""
    with log.open("wb") as file:
        return subprocess.Popen(  # noqa: S603 - our own command
            [sys.executable, "-m", "activities", "worker", MODULE, *options],
            cwd=ROOT,
            env=environment(endpoint),
            stderr=file,
            start_new_session=True,
        )


def stop(worker: subprocess.Popen[bytes], timeout: float = 90) -> bool:
    """SIGTERM to the worker's group, as systemd sends it; whether it exited in time."""
    os.killpg(worker.pid, signal.SIGTERM)
    try:
        worker.wait(timeout)
    except subprocess.TimeoutExpired:
        os.killpg(worker.pid, signal.SIGKILL)
        worker.wait()
        return False
    return True


def task_processes(worker: int) -> list[int]:
    """The task processes of ``worker``: the children of its forkserver (from ``/proc``)."""
    return [child for server in _children(worker, "sfn-forkserver") for child in _children(server)]


def _children(parent: int, comm: str | None = None) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            name = (entry / "comm").read_text().strip()
        except (OSError, IndexError):
            continue
        if int(fields[1]) == parent and fields[0] not in {"Z", "X"} and comm in {None, name}:
            found.append(int(entry.name))
    return found


def load(endpoint: Endpoint, rng: random.Random) -> None:
    """Three sync and three async tasks of 0.1 to 0.5 s."""
    for activity in (SYNC, ASYNC):
        seconds = round(rng.uniform(0.1, 0.5), 2)
        endpoint.call("Load", {"activity": activity, "count": 3, "input": str(seconds)})


def settle(endpoint: Endpoint, quiet: float = 5.0, limit: float = 90.0) -> dict[str, Any]:
    """Wait until nothing is queued and no outcome came for ``quiet`` seconds; the stats."""
    deadline = time.monotonic() + limit
    last, since = -1, time.monotonic()
    while time.monotonic() < deadline:
        stats = endpoint.call("Stats")
        done = stats.get("succeeded", 0) + stats.get("failed", 0)
        if done != last:
            last, since = done, time.monotonic()
        elif not stats["queued"] and time.monotonic() - since >= quiet:
            return stats
        time.sleep(0.2)
    return endpoint.call("Stats")


def kills(options: tuple[str, ...], count: int, every: float, seed: int) -> dict[str, Any]:
    """One scenario: the stream, the kills, the settling, the new tasks."""
    rng = random.Random(seed)  # noqa: S311 - a benchmark's choices, repeatable by seed
    endpoint = Endpoint("--poll-wait", str(POLL_WAIT))
    log = ROOT / ".nox" / f"chaos-{os.getpid()}.log"
    log.parent.mkdir(exist_ok=True)
    worker = start(endpoint, (*POOL, *options), log)
    try:
        processes = int(POOL[POOL.index("--processes") + 1])
        _wait(
            lambda: (
                len(task_processes(worker.pid)) == processes and endpoint.call("Stats")["waiting"]
            )
        )
        killed = 0
        next_kill = time.monotonic() + every
        while killed < count:
            load(endpoint, rng)
            if time.monotonic() >= next_kill:
                processes = task_processes(worker.pid)
                if processes:
                    os.kill(rng.choice(processes), signal.SIGKILL)
                    killed += 1
                next_kill += every
            time.sleep(0.25)
        settled = settle(endpoint)
        outputs = endpoint.call("Stats", {"outputs": True})["outputs"]
        crashed = sum(output == "activities.WorkerCrashed" for output in outputs)
        before = settled.get("succeeded", 0) + settled.get("failed", 0)
        endpoint.call("Load", {"activity": SYNC, "count": NEW_TASKS, "input": "0.01"})
        started = time.monotonic()
        served = 0
        while time.monotonic() - started < NEW_TASKS_WITHIN:
            stats = endpoint.call("Stats")
            served = stats.get("succeeded", 0) + stats.get("failed", 0) - before
            if served >= NEW_TASKS:
                break
            time.sleep(0.05)
        took = time.monotonic() - started
    finally:
        stopped = stop(worker)
        endpoint.close()
    return {
        "handed out": settled.get("handed_out", 0),
        "succeeded": settled.get("succeeded", 0),
        "WorkerCrashed": crashed,
        "other failures": settled.get("failed", 0) - crashed,
        "left open": settled["open"],
        "reported twice": settled.get("refused_outcomes", 0),
        "the second outcomes": ", ".join(
            f"{name.removeprefix('refused ')} x{count}"
            for name, count in sorted(settled.items())
            if name.startswith("refused ")
        )
        or "-",
        f"new {NEW_TASKS} served": (
            f"all in {took:.1f} s" if served >= NEW_TASKS else f"{served} in {took:.0f} s"
        ),
        "stopped": "yes" if stopped else "no (SIGKILL)",
    }


def starts(count: int, seed: int) -> dict[str, Any]:
    """SIGTERM during a worker's first seconds, ``count`` times: how many exited."""
    rng = random.Random(seed)  # noqa: S311 - a benchmark's choices, repeatable by seed
    exited, hung = 0, []
    endpoint = Endpoint("--poll-wait", "1")
    log = ROOT / ".nox" / f"chaos-start-{os.getpid()}.log"
    log.parent.mkdir(exist_ok=True)
    try:
        for _ in range(count):
            worker = start(endpoint, POOL, log)
            at = round(rng.uniform(0.0, 1.5), 2)
            time.sleep(at)
            if stop(worker, timeout=30):
                exited += 1
            else:
                hung.append(at)
    finally:
        endpoint.close()
    return {"stops during start": count, "exited": exited, "hung (s after start)": hung or "-"}


def _wait(condition: Any, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            msg = "the worker never came up"
            raise RuntimeError(msg)
        time.sleep(0.1)


def table(rows: dict[str, dict[str, Any]]) -> str:
    """The rows as a Markdown table, one column per figure."""
    columns = list(next(iter(rows.values())))
    lines = [
        "| scenario | " + " | ".join(columns) + " |",
        "|---|" + "---|" * len(columns),
    ]
    lines += [
        f"| {name} | " + " | ".join(str(row[column]) for column in columns) + " |"
        for name, row in rows.items()
    ]
    return "\n".join(lines)


def main() -> None:
    """Run every scenario, then the stops during start; print the tables."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--kills", type=int, default=12, help="task processes killed")
    parser.add_argument("--every", type=float, default=1.5, help="seconds between kills")
    parser.add_argument("--starts", type=int, default=10, help="stops during start")
    parser.add_argument("--seed", type=int, default=1, help="of the random choices")
    args = parser.parse_args()
    print(
        f"{args.kills} task processes SIGKILLed, one every {args.every} s, under a stream of "
        f"sync and async tasks; pool {' '.join(POOL)}\n"
    )
    rows = {
        name: kills(options, args.kills, args.every, args.seed)
        for name, options in SCENARIOS.items()
    }
    print(table(rows))
    print()
    print(table({"SIGTERM in the first 1.5 s": starts(args.starts, args.seed)}))


if __name__ == "__main__":
    main()
