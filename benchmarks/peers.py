"""Peer libraries serving the benchmark's tasks, each run in a virtualenv of its own.

    python -m benchmarks.peers stefuna --activity bench-Nothing --processes 2 --work zero
    python -m benchmarks.peers heaviside --activity bench-Many-00 bench-Many-01 --work zero

heaviside serves one activity per poller process; given several activities, it runs its
ActivityManager, a poller process for each.

Only the peer, boto3 and :mod:`benchmarks.work` are imported here: this module runs under
the peer's interpreter, where sfn-activities is not installed.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from benchmarks.endpoint import ARN_PREFIX
from benchmarks.work import burn

#: What each peer is installed from, in its own virtualenv.
REQUIREMENTS = {"heaviside": "heaviside==2.2.5", "stefuna": "stefuna==1.0.1"}


def zero(value: Any) -> Any:
    """Zero work: echo the input."""
    return value


def cpu(value: Any) -> Any:
    """20 ms of pure-Python CPU work."""
    return burn()


def serve_heaviside(activities: list[str], processes: int, work: str) -> None:
    """The ActivityProcess of heaviside: polls, and starts a process for every task.

    With one activity, the poller runs in this process, with at most ``processes`` task
    processes at once. With several, heaviside's ActivityManager starts a poller process
    for each (task processes unbounded, its default) and restarts those that die.
    """
    from heaviside.activities import (  # noqa: PLC0415 - the peer's venv only
        ActivityManager,
        ActivityProcess,
    )

    target = zero if work == "zero" else cpu
    if len(activities) > 1:
        manager = ActivityManager(region="us-east-1", account_id="123456789012")
        manager.activities = dict.fromkeys(activities, target)
        manager.run()
        return
    poller = ActivityProcess(
        activities[0], target=target, region="us-east-1", account_id="123456789012"
    )
    poller.max_concurrent = processes
    poller.run()


def serve_stefuna(activities: list[str], processes: int, work: str) -> None:
    """The Server of stefuna: one poller feeding a multiprocessing pool (one activity)."""
    from stefuna import Server, Worker  # noqa: PLC0415 - the peer's venv only

    class Bench(Worker):  # type: ignore[misc]
        def run_task(self, task_token: str, input_data: Any) -> str:
            return json.dumps(zero(input_data) if work == "zero" else cpu(input_data))

    Server.worker_class = Bench
    (activity,) = activities
    Server(name="bench", activity_arn=ARN_PREFIX + activity, processes=processes).run()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("peer", choices=sorted(REQUIREMENTS))
    parser.add_argument("--activity", required=True, nargs="+")
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--work", choices=["zero", "cpu"], default="zero")
    args = parser.parse_args()
    serve = serve_heaviside if args.peer == "heaviside" else serve_stefuna
    serve(args.activity, args.processes, args.work)
