"""Heartbeats a second for tasks that yield continually: what the account's quota pays.

``python -m benchmarks.heartbeats`` runs the ``activities worker`` command as users run it
(its defaults, with ``--threads`` enough to hold every task) against the benchmarks'
endpoint (:mod:`benchmarks.endpoint`). ``--tasks`` tasks (500) yield every ``--every``
seconds (10 ms) for ``--seconds`` (100): once of an activity that declares no
``heartbeat_seconds``, once of one that declares 60. Once every task runs, it counts the
``SendTaskHeartbeat`` calls the endpoint answered over ``--window`` seconds (60): heartbeats
a second, per task a minute, and the busiest whole second. ``SendTaskHeartbeat`` refills
at 500 calls a second per account and Region at best, for every worker of the account.

``--root DIR`` runs the ``activities`` and ``transport`` of another checkout on the same
workload (this module still comes from this one), e.g. the code before a change::

    git worktree add /tmp/hb-before <commit>
    python -m benchmarks.heartbeats --root /tmp/hb-before
    git worktree remove /tmp/hb-before

Prints the table in Markdown.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

from activities import Activity

if TYPE_CHECKING:
    import subprocess
    from collections.abc import Generator, Iterator

    from benchmarks.faults import Endpoint

ROOT = Path(__file__).resolve().parent.parent


class Yielding(Activity):
    """Yields every ``every`` seconds for ``seconds``; how many times. No heartbeat_seconds."""

    name = "bench-HbYield"

    def run(self, seconds: float, every: float) -> Generator[None, None, int]:
        """Sleep ``every`` seconds and yield, until ``seconds`` have passed."""
        deadline = time.monotonic() + seconds
        count = 0
        while time.monotonic() < deadline:
            time.sleep(every)
            count += 1
            yield
        return count


class YieldingDeclared(Yielding):
    """The same, for states whose HeartbeatSeconds are 60."""

    name = "bench-HbYield60"
    heartbeat_seconds = 60


#: The activity of each row, by what it declares.
CASES = {"none": Yielding.name, "60": YieldingDeclared.name}


@contextlib.contextmanager
def code_of(root: Path | None) -> Iterator[Path]:
    """The directory the worker runs in: this checkout, or ``root``'s packages with our module.

    For another checkout, a directory of links: its ``activities`` and ``transport``, and
    this checkout's ``benchmarks`` (which the worker imports this module from).
    """
    if root is None:
        yield ROOT
        return
    with tempfile.TemporaryDirectory(prefix="bench-heartbeats-") as farm:
        for package, home in (("activities", root), ("transport", root), ("benchmarks", ROOT)):
            (Path(farm) / package).symlink_to(home.resolve() / package)
        yield Path(farm)


def start_worker(endpoint: Endpoint, code: Path, threads: int) -> subprocess.Popen[bytes]:
    """``activities worker benchmarks.heartbeats --threads N`` in ``code``, its polls open."""
    from benchmarks.faults import start  # noqa: PLC0415 - the worker imports this module too

    command = ("activities", "worker", "benchmarks.heartbeats", "--threads", str(threads))
    return start(endpoint, *command, root=code)


def measure(
    activity: str, *, code: Path, tasks: int, seconds: float, every: float, window: float
) -> dict[str, float]:
    """Heartbeats a second (mean and busiest second) once ``tasks`` tasks of ``activity`` run."""
    from benchmarks.faults import Endpoint  # noqa: PLC0415 - the worker imports this module too

    endpoint = Endpoint()
    try:
        worker = start_worker(endpoint, code, tasks)
        try:
            data = json.dumps({"seconds": seconds, "every": every})
            endpoint.call("Load", {"activity": activity, "count": tasks, "input": data})
            loaded = time.monotonic()
            while endpoint.call("Stats").get("handed_out", 0) < tasks:
                if time.monotonic() - loaded > seconds - window:
                    msg = "the tasks did not all start in time: raise --seconds"
                    raise RuntimeError(msg)
                time.sleep(0.05)
            began, first = time.monotonic(), endpoint.call("Stats")
            time.sleep(window)
            ended, last = time.monotonic(), endpoint.call("Stats", {"rates": True})
        finally:
            os.killpg(worker.pid, signal.SIGKILL)  # its tasks' outcomes are not measured
            worker.wait()
    finally:
        endpoint.close()
    if last.get("succeeded", 0) or last.get("failed", 0):
        msg = "tasks ended within the window: raise --seconds"
        raise RuntimeError(msg)
    sent = last.get("heartbeats", 0) - first.get("heartbeats", 0)
    rate = sent / (ended - began)
    # The endpoint counts by whole seconds of the same monotonic clock: those inside the window.
    seconds_in = range(math.ceil(began), math.floor(ended))
    rates = last.get("rates", {})
    busiest = max(
        (rates.get(str(at), {}).get("SendTaskHeartbeat", [0, 0])[0] for at in seconds_in),
        default=0,
    )
    return {"rate": rate, "per_task_minute": rate / tasks * 60, "busiest": busiest}


def main() -> int:
    """Measure each case; print the table."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.heartbeats")
    parser.add_argument("--tasks", type=int, default=500)
    parser.add_argument("--seconds", type=float, default=100, help="each task's length")
    parser.add_argument("--every", type=float, default=0.01, help="seconds between yields")
    parser.add_argument("--window", type=float, default=60, help="seconds measured")
    parser.add_argument("--root", type=Path, help="the checkout whose worker runs")
    parser.add_argument("--label", help="what the code measured is called in the table")
    parser.add_argument(
        "--cases", nargs="+", choices=list(CASES), default=list(CASES), help="heartbeat_seconds"
    )
    args = parser.parse_args()
    if args.window >= args.seconds:
        parser.error("--window must be shorter than --seconds")
    label = args.label or (str(args.root) if args.root else "this checkout")

    print(
        f"### Heartbeats: {args.tasks} tasks yielding every {args.every * 1000:g} ms, "
        f"`--threads {args.tasks}`, over {args.window:g} s once all run\n"
    )
    print("| code | heartbeat_seconds | heartbeats /s | per task a minute | busiest second |")
    print("|---|---|---|---|---|")
    with code_of(args.root) as code:
        for case in args.cases:
            row = measure(
                CASES[case],
                code=code,
                tasks=args.tasks,
                seconds=args.seconds,
                every=args.every,
                window=args.window,
            )
            print(
                f"| {label} | {case} | {row['rate']:.1f} | {row['per_task_minute']:.2f} | "
                f"{row['busiest']:.0f} |",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
