"""Peer libraries serving the benchmark's tasks, each run in a virtualenv of its own.

    python -m benchmarks.peers stefuna --activity bench-Nothing --processes 2 --work zero

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


def serve_heaviside(activity: str, processes: int, work: str) -> None:
    """The ActivityProcess of heaviside: polls, and starts a process for every task."""
    from heaviside.activities import ActivityProcess  # noqa: PLC0415 - the peer's venv only

    poller = ActivityProcess(
        activity,
        target=zero if work == "zero" else cpu,
        region="us-east-1",
        account_id="123456789012",
    )
    poller.max_concurrent = processes
    poller.run()


def serve_stefuna(activity: str, processes: int, work: str) -> None:
    """The Server of stefuna: one poller feeding a multiprocessing pool."""
    from stefuna import Server, Worker  # noqa: PLC0415 - the peer's venv only

    class Bench(Worker):  # type: ignore[misc]
        def run_task(self, task_token: str, input_data: Any) -> str:
            return json.dumps(zero(input_data) if work == "zero" else cpu(input_data))

    Server.worker_class = Bench
    Server(name="bench", activity_arn=ARN_PREFIX + activity, processes=processes).run()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("peer", choices=sorted(REQUIREMENTS))
    parser.add_argument("--activity", required=True)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--work", choices=["zero", "cpu"], default="zero")
    args = parser.parse_args()
    serve = serve_heaviside if args.peer == "heaviside" else serve_stefuna
    serve(args.activity, args.processes, args.work)
