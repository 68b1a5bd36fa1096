"""Throttling, measured: how fast the worker recovers, and how it backs off.

``nox -s faults`` (``python -m benchmarks.faults``) runs the ``activities worker``
command as users run it (its defaults, log level included, ``--processes 2``) against
the benchmarks' endpoint (:mod:`benchmarks.endpoint`) with its faults on:

1. **random throttling**: 300 zero-work tasks, each activity call refused with
   ``ThrottlingException`` at random with probability 0.3 (and 0, for reference); the
   seconds from queueing the tasks to the last outcome taken, median of three rounds;
2. **a token bucket** per operation (as Step Functions runs per account), of ``--bucket``
   calls refilled at ``--refill`` per second, with three task lists (one class served on
   three, each with far more tasks queued than the bucket lets through): the calls per
   second the worker makes and those taken, over the second half of the run, against the
   refill rate; and the tasks served from each task list.

Prints the tables in Markdown.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

from activities.local import free_port

ROOT = Path(__file__).resolve().parent.parent

ACTIVITY = "bench-Nothing"
LISTS = ("bench-Nothing-a", "bench-Nothing-b", "bench-Nothing-c")


class Endpoint:
    """The benchmarks' endpoint in a process of its own, with faults given at start."""

    def __init__(self, *faults: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        command = [sys.executable, "-m", "benchmarks.endpoint", "--port", str(self.port)]
        self.process = subprocess.Popen(  # noqa: S603 - our own module
            [*command, "--poll-wait", "1", *faults],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        assert self.process.stdout is not None  # noqa: S101
        self.process.stdout.readline()  # "ready on PORT"

    def call(self, operation: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        """One of the endpoint's own operations."""
        request = urllib.request.Request(  # noqa: S310 - a local http URL
            self.url,
            data=json.dumps(body or {}).encode(),
            headers={"X-Amz-Target": f"Bench.{operation}"},
        )
        with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
            result: dict[str, Any] = json.load(response)
            return result

    def close(self) -> None:
        """Kill the endpoint (by its process group) and reap it."""
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()
        if self.process.stdout is not None:
            self.process.stdout.close()


def start(
    endpoint: Endpoint, *command: str, root: Path = ROOT, first_poll: bool = True
) -> subprocess.Popen[bytes]:
    """``python -m COMMAND`` in ``root`` against ``endpoint``, its first poll open.

    Its own process group (stopped with :func:`stop_worker`), its stderr dropped, and
    stand-in credentials; ``first_poll=False`` returns at once.
    """
    environment = {
        **os.environ,
        "AWS_ENDPOINT_URL": endpoint.url,
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "bench",
        "AWS_SECRET_ACCESS_KEY": "bench",
        "PYTHONPATH": str(root),
    }
    process = subprocess.Popen(  # noqa: S603 - our own modules
        [sys.executable, "-m", *command],
        cwd=root,
        env=environment,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + 60
    while first_poll and endpoint.call("Stats")["waiting"] < 1:
        if time.monotonic() > deadline or process.poll() is not None:
            stop_worker(process)
            msg = f"{' '.join(command)} never polled"
            raise RuntimeError(msg)
        time.sleep(0.05)
    return process


def start_worker(endpoint: Endpoint, *options: str) -> subprocess.Popen[bytes]:
    """``activities worker benchmarks.workloads.nothing --processes 2``, its polls open."""
    command = ("activities", "worker", "benchmarks.workloads.nothing", "--processes", "2")
    return start(endpoint, *command, *options)


def stop_worker(worker: subprocess.Popen[bytes]) -> None:
    """Stop the worker as systemd would: SIGTERM to its process group."""
    os.killpg(worker.pid, signal.SIGTERM)
    try:
        worker.wait(60)
    except subprocess.TimeoutExpired:
        os.killpg(worker.pid, signal.SIGKILL)
        worker.wait()


def random_throttling(rate: float, tasks: int) -> float:
    """Seconds from queueing ``tasks`` zero-work tasks to the last outcome taken."""
    endpoint = Endpoint("--throttle", str(rate))
    try:
        worker = start_worker(endpoint)
        try:
            started = time.monotonic()
            endpoint.call("Load", {"activity": ACTIVITY, "count": tasks, "input": "1"})
            while True:
                stats = endpoint.call("Stats")
                if stats.get("succeeded", 0) >= tasks:
                    return time.monotonic() - started
                if time.monotonic() - started > 600:  # noqa: PLR2004 - a broken run
                    msg = f"only {stats.get('succeeded', 0)} of {tasks} tasks after 600 s"
                    raise RuntimeError(msg)
                time.sleep(0.02)
        finally:
            stop_worker(worker)
    finally:
        endpoint.close()


def token_bucket(size: float, refill: float, seconds: float) -> dict[str, Any]:
    """Calls made and taken per second and operation, over the run's second half."""
    endpoint = Endpoint("--bucket", str(size), "--refill", str(refill))
    try:
        options = [arg for name in LISTS for arg in ("--task-list", f"{ACTIVITY}={name}")]
        worker = start_worker(endpoint, *options)
        try:
            for name in LISTS:
                endpoint.call("Load", {"activity": name, "count": 10**5, "input": "1"})
            time.sleep(seconds)
            stats = endpoint.call("Stats", {"rates": True})
        finally:
            stop_worker(worker)
    finally:
        endpoint.close()
    rates = {int(second): ops for second, ops in stats["rates"].items()}
    last = max(rates) - 1  # the last whole second
    window = [second for second in rates if last - seconds / 2 < second <= last]
    result: dict[str, Any] = {"queued": stats["queued_by"]}
    for operation in ("GetActivityTask", "SendTaskSuccess"):
        made = [rates[second].get(operation, [0, 0])[0] for second in window]
        refused = [rates[second].get(operation, [0, 0])[1] for second in window]
        result[operation] = {
            "made": sum(made) / len(window),
            "taken": (sum(made) - sum(refused)) / len(window),
        }
    return result


def main() -> int:
    """Run both scenarios; print their tables."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.faults")
    parser.add_argument("--tasks", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--bucket", type=float, default=100)
    parser.add_argument("--refill", type=float, default=100)
    parser.add_argument("--seconds", type=float, default=30)
    args = parser.parse_args()

    print(f"### Random throttling: {args.tasks} zero-work tasks, `--processes 2`\n")
    print("| calls throttled | seconds (median of rounds) | rounds |")
    print("|---|---|---|")
    for rate in (0.0, 0.3):
        rounds = [random_throttling(rate, args.tasks) for _ in range(args.rounds)]
        shown = ", ".join(f"{value:.2f}" for value in rounds)
        print(f"| {rate:.0%} | {statistics.median(rounds):.2f} | {shown} |", flush=True)

    result = token_bucket(args.bucket, args.refill, args.seconds)
    print(
        f"\n### Token bucket: {args.bucket:.0f} calls refilled at {args.refill:.0f}/s per "
        f"operation, three task lists, `--processes 2`, over the last {args.seconds / 2:.0f} s"
        f" of {args.seconds:.0f} s\n"
    )
    print("| operation | calls made /s | calls taken /s | made / refill | taken / refill |")
    print("|---|---|---|---|---|")
    for operation in ("GetActivityTask", "SendTaskSuccess"):
        row = result[operation]
        print(
            f"| {operation} | {row['made']:.0f} | {row['taken']:.0f} | "
            f"{row['made'] / args.refill:.2f}x | {row['taken'] / args.refill:.2f}x |"
        )
    served = {name: 10**5 - result["queued"].get(name, 0) for name in LISTS}
    print("\nTasks served from each task list: " + ", ".join(f"{n} {c}" for n, c in served.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
