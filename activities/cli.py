"""The command line: ``activities worker``, ``activities list`` (also ``python -m activities``).

::

    activities worker myproject.activities --processes 4
    activities list myproject.activities
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from typing import TYPE_CHECKING

from activities.client import make_client
from activities.errors import ActivitiesError
from activities.registry import discover
from activities.worker import SHUTDOWN_GRACE, Worker

if TYPE_CHECKING:
    from collections.abc import Sequence

    from activities.activity import Activity

__all__ = ["main"]

#: How log lines look: time, level, process, logger, message.
LOG_FORMAT = "%(asctime)s %(levelname)-7s %(processName)s %(name)s: %(message)s"

#: Exit code for bad usage or configuration, as argparse uses.
EXIT_USAGE = 2


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit code."""
    parser = _parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level, format=LOG_FORMAT)
    if args.log_level != "DEBUG":
        # botocore says "Found credentials ..." at INFO on every client.
        logging.getLogger("botocore").setLevel(logging.WARNING)
    try:
        activities = discover(*args.modules)
        if not activities:
            parser.error(f"no activities found in {', '.join(args.modules)}")
        if args.command == "list":
            return _list(activities)
        return _worker(args, activities)
    except ActivitiesError as exc:
        print(f"activities: error: {exc}", file=sys.stderr)
        return EXIT_USAGE


def _list(activities: list[type[Activity]]) -> int:
    width = max(len(activity.name) for activity in activities)
    for activity in activities:
        print(f"{activity.name:<{width}}  {activity.__module__}.{activity.__qualname__}")
    return 0


def _worker(args: argparse.Namespace, activities: list[type[Activity]]) -> int:
    slots = args.processes or args.threads or os.cpu_count() or 1
    client = make_client(
        endpoint_url=args.endpoint_url,
        region_name=args.region,
        profile_name=args.profile,
        max_pool_connections=(args.pollers or slots) + slots + 2,
    )
    worker = Worker(
        activities,
        processes=args.processes,
        threads=args.threads,
        pollers=args.pollers,
        client=client,
        worker_name=args.worker_name,
        prefix=args.prefix,
        shutdown_grace=args.shutdown_grace,
        max_tasks_per_process=args.max_tasks_per_process,
        max_memory_per_process=(
            args.max_memory_per_process * 2**20 if args.max_memory_per_process else None
        ),
    )
    return worker.run()


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="activities", description="Serve AWS Step Functions activities."
    )
    commands = parser.add_subparsers(dest="command", required=True)

    worker = commands.add_parser(
        "worker",
        help="poll Step Functions and run tasks until SIGINT/SIGTERM",
        description=(
            "Serve the activities defined in MODULES (and their submodules). The first "
            "SIGINT/SIGTERM drains gracefully, a second stops at once. Endpoint, Region and "
            "credentials come from boto3's usual chain (AWS_ENDPOINT_URL, AWS_REGION, "
            "AWS_PROFILE, ...) unless given."
        ),
    )
    _add_common(worker)
    pool = worker.add_mutually_exclusive_group()
    pool.add_argument("--processes", type=_positive, help="task processes (default: CPUs)")
    pool.add_argument("--threads", type=_positive, help="run tasks in threads instead (I/O-bound)")
    worker.add_argument(
        "--pollers", type=_positive, help="long polls open at once (default: slots)"
    )
    worker.add_argument(
        "--shutdown-grace",
        type=_seconds,
        default=SHUTDOWN_GRACE,
        metavar="SECONDS",
        help=f"time running tasks get to finish on stop (default: {SHUTDOWN_GRACE:.0f})",
    )
    worker.add_argument("--max-tasks-per-process", type=_positive, metavar="N")
    worker.add_argument("--max-memory-per-process", type=_positive, metavar="MIB")
    worker.add_argument("--worker-name", help="the workerName of polls (default: host-pid)")
    worker.add_argument(
        "--prefix", default="", help="put before every activity name, e.g. dev- to serve dev-Echo"
    )
    worker.add_argument("--endpoint-url", help="Step Functions endpoint (default: boto3's)")
    worker.add_argument("--region", help="AWS Region (default: boto3's)")
    worker.add_argument("--profile", help="AWS profile (default: boto3's)")

    listing = commands.add_parser(
        "list", help="show the activities a worker would serve, without calling AWS"
    )
    _add_common(listing)
    return parser


def _add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("modules", nargs="+", metavar="MODULE", help="modules or packages to serve")
    parser.add_argument(
        "--log-level",
        default="INFO",
        type=str.upper,
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        help="default: INFO",
    )


def _seconds(text: str) -> float:
    value = float(text)
    if not value >= 0:
        msg = f"must be a number of seconds >= 0, not {text}"
        raise argparse.ArgumentTypeError(msg)
    return value


def _positive(text: str) -> int:
    value = int(text)
    if value <= 0:
        msg = f"must be a positive integer, not {text}"
        raise argparse.ArgumentTypeError(msg)
    return value
