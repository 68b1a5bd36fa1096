"""CPU per task: what the worker's whole process tree spends on a task, against a bare loop.

``nox -s cost`` (``python -m benchmarks.cost``) runs the ``activities worker`` command as
users run it (its defaults: one task process per CPU, INFO logs written) and bare boto3
loops (:mod:`benchmarks.bare`) against the benchmarks' endpoint, each serving the same
zero-work tasks, and reads from ``/proc`` the CPU time (user and system) every process of
each tree used between the first task queued and the last outcome taken: start-up
excluded. The endpoint runs in a process of its own and is not counted. Rounds alternate
the contenders; the median of the rounds is reported, with the worker's figure as a
multiple of the cheapest bare configuration's. Linux only (``/proc``).

Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

from benchmarks.faults import ACTIVITY, Endpoint, start, stop_worker
from benchmarks.run import process_tree

#: The contenders: a name and the command after ``python -m``.
CONTENDERS = {
    "sfn-activities (the command's defaults)": [
        "activities",
        "worker",
        "benchmarks.workloads.nothing",
    ],
    "bare boto3, 1 process": ["benchmarks.bare", "--activity", ACTIVITY, "--work", "zero"],
    "bare boto3, 2 processes": [
        *("benchmarks.bare", "--activity", ACTIVITY, "--work", "zero", "--processes", "2"),
    ],
    "bare boto3, 2 processes x 2 threads": [
        *("benchmarks.bare", "--activity", ACTIVITY, "--work", "zero"),
        *("--processes", "2", "--threads", "2"),
    ],
}

_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def cpu_seconds(pid: int) -> float:
    """User and system CPU seconds process ``pid`` has used (its threads included)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / _TICKS


def measure(command: list[str], tasks: int) -> tuple[float, float]:
    """CPU milliseconds per task of ``command``'s tree, and its tasks per second."""
    endpoint = Endpoint()
    try:
        process = start(endpoint, *command)
    except BaseException:
        endpoint.close()
        raise
    try:
        time.sleep(0.5)  # every process up and polling
        pids = process_tree(process.pid)
        before = {pid: cpu_seconds(pid) for pid in pids}
        endpoint.call("Load", {"activity": ACTIVITY, "count": tasks, "input": "null"})
        started = time.monotonic()
        while endpoint.call("Stats").get("succeeded", 0) < tasks:
            if time.monotonic() - started > 600:  # noqa: PLR2004 - a broken run
                msg = f"{command} did not serve {tasks} tasks in 600 s"
                raise RuntimeError(msg)
            time.sleep(0.02)
        took = time.monotonic() - started
        used = sum(cpu_seconds(pid) - before[pid] for pid in pids)
        return 1000 * used / tasks, tasks / took
    finally:
        stop_worker(process)
        endpoint.close()


def main() -> int:
    """Measure every contender, rounds in turn; print the table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tasks", type=int, default=6000, help="tasks per round")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    figures: dict[str, list[tuple[float, float]]] = {name: [] for name in CONTENDERS}
    for _ in range(args.rounds):
        for name, command in CONTENDERS.items():
            figures[name].append(measure(command, args.tasks))
    medians = {
        name: (
            statistics.median(cost for cost, _ in rounds),
            statistics.median(rate for _, rate in rounds),
        )
        for name, rounds in figures.items()
    }
    cheapest = min(cost for name, (cost, _) in medians.items() if name.startswith("bare"))
    print(f"{args.tasks} zero-work tasks a round, median of {args.rounds} rounds\n")
    print("| contender | CPU per task | against the cheapest bare loop | tasks/s |")
    print("|---|---|---|---|")
    for name, (cost, rate) in medians.items():
        print(f"| {name} | {cost:.3f} ms | {cost / cheapest:.2f}x | {rate:,.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
