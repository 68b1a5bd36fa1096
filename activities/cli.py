"""The command line (also ``python -m activities``).

::

    activities worker myproject.activities --processes 4
    activities list myproject.activities --prefix dev-
    activities register myproject.activities --prefix dev- --tag team=data
    activities local
"""

from __future__ import annotations

import argparse
import functools
import importlib.util
import logging
import os
import signal
import sys
import threading
from typing import TYPE_CHECKING, Any, NoReturn

import boto3
import botocore.exceptions

from activities._invoke import LOCAL_ROLE_ARN, invoke
from activities._process import CONNECTIONS_PER_SLOT
from activities._settings import SHUTDOWN_GRACE
from activities.client import ActivityClient, make_client
from activities.errors import ActivitiesError, ConfigurationError
from activities.local import LocalStepFunctions
from activities.registry import discover, register, task_lists
from activities.worker import Worker

if TYPE_CHECKING:
    from collections.abc import Sequence

    from mypy_boto3_stepfunctions import SFNClient

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
        if args.command == "local":
            return _local(args)
        if args.command == "invoke":
            return _invoke(args)
        searched = _import_path(args.path)
        _check_findable(args.modules, searched)
        activities = discover(*args.modules)
        if not activities:
            msg = f"no activities found in {', '.join(args.modules)}"
            raise ConfigurationError(msg)
        served = task_lists(activities, prefix=args.prefix, overrides=args.task_list)
        if args.command == "list":
            return _list(served)
        _check_region(args)
        if args.command == "register":
            return _register(args, served)
        return _worker(args, activities)
    except ActivitiesError as exc:
        print(f"{parser.prog} {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE


def _import_path(extra: Sequence[str]) -> list[str]:
    """Put ``--path`` directories, then the current one, first on the import path.

    As ``python -m`` does for the current directory; task processes get the same path.
    The directories searched, in order.
    """
    for directory in reversed([*extra, os.curdir]):
        path = os.path.abspath(directory)
        if path in sys.path:
            sys.path.remove(path)
        sys.path.insert(0, path)
    return [entry or os.getcwd() for entry in sys.path if not entry.endswith(".zip")]


def _check_findable(modules: Sequence[str], searched: Sequence[str]) -> None:
    """Refuse a module found in none of the directories searched, naming them."""
    for module in modules:
        top = module.partition(".")[0]
        if importlib.util.find_spec(top) is None:
            where = "\n  ".join(entry for entry in searched if os.path.isdir(entry))
            msg = (
                f"cannot import {module!r}: no {top!r} in the directories searched:\n  {where}\n"
                "run the command where it is, or give its directory with --path DIR"
            )
            raise ConfigurationError(msg)


def _invoke(args: argparse.Namespace) -> int:
    """Run one task of one activity through Step Functions and print what it reports."""
    serve = None
    name = args.name if args.name.startswith("arn:") else args.prefix + args.name
    if args.module:
        _check_findable(args.module, _import_path(args.path))
        served = task_lists(discover(*args.module), prefix=args.prefix)
        serve = served.get(name.rpartition(":")[2])
        if serve is None:
            msg = f"no activity served as {name!r} in {', '.join(args.module)}"
            raise ConfigurationError(msg)
    elif args.local:
        msg = "--local needs --module: nothing else serves a Step Functions made for one task"
        raise ConfigurationError(msg)
    if args.local:
        with LocalStepFunctions() as local:
            return _invoke_on(args, ActivityClient(local.client()), name, serve, local=True)
    _check_region(args)
    return _invoke_on(args, ActivityClient(_client(args, connections=4)), name, serve)


def _invoke_on(
    args: argparse.Namespace,
    client: ActivityClient,
    name: str,
    serve: type[Activity] | None,
    *,
    local: bool = False,
) -> int:
    endpoint = local or args.endpoint_url or os.environ.get("AWS_ENDPOINT_URL_SFN")
    endpoint = endpoint or os.environ.get("AWS_ENDPOINT_URL")
    role_arn = args.role_arn or (LOCAL_ROLE_ARN if endpoint else None)
    if role_arn is None:
        msg = "give --role-arn: a role Step Functions can assume to run the one-state machine"
        raise ConfigurationError(msg)
    arn = name if name.startswith("arn:") else client.create_activity(name)
    ended = invoke(client, arn, args.input, role_arn=role_arn, timeout=args.timeout, serve=serve)
    print(ended.report())
    if ended.succeeded:
        return 0
    print(f"activities invoke: the execution ended {ended.status}", file=sys.stderr)
    return 1


def _list(served: dict[str, type[Activity]]) -> int:
    _table(
        [(task_list, f"{cls.__module__}.{cls.__qualname__}") for task_list, cls in served.items()]
    )
    return 0


def _register(args: argparse.Namespace, served: dict[str, type[Activity]]) -> int:
    client = ActivityClient(_client(args, connections=2))
    arns = register(client, served, tags=args.tag)
    _table([(task_list, arns[task_list]) for task_list in served])
    return 0


def _local(args: argparse.Namespace) -> int:
    local = LocalStepFunctions(port=args.port)
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    with local:
        print("Local Step Functions is ready. Point boto3 and workers at it with:")
        for name, value in local.environment().items():
            print(f"  export {name}={value}")
        print("Ctrl-C stops it.", flush=True)
        stop.wait()
    return 0


def _table(rows: list[tuple[str, str]]) -> None:
    width = max(len(first) for first, _ in rows)
    for first, second in rows:
        print(f"{first:<{width}}  {second}")


def _client(args: argparse.Namespace, connections: int) -> SFNClient:
    return make_client(
        endpoint_url=args.endpoint_url,
        region_name=args.region,
        profile_name=args.profile,
        max_pool_connections=connections,
    )


def _check_region(args: argparse.Namespace) -> None:
    """Refuse to start without an AWS Region, saying how a command-line user gives one."""
    if args.region or os.environ.get("AWS_REGION"):
        return
    try:
        region = boto3.Session(profile_name=args.profile).region_name
    except botocore.exceptions.ProfileNotFound as exc:
        raise ConfigurationError(str(exc)) from None
    if not region:
        msg = (
            "no AWS Region is configured: give --region, set AWS_REGION or "
            "AWS_DEFAULT_REGION, or use a profile that has one (--profile, AWS_PROFILE)"
        )
        raise ConfigurationError(msg)


def _worker(args: argparse.Namespace, activities: list[type[Activity]]) -> int:
    # A factory, not a client: each worker process makes its own with it. The worker's
    # own process keeps a poll open on every task list that has none.
    # The same factory makes the worker's client and those of the task processes: room
    # for the polls, outcomes and heartbeats of either.
    slots = args.threads or 1
    served = task_lists(activities, prefix=args.prefix, overrides=args.task_list)
    client = functools.partial(
        make_client,
        endpoint_url=args.endpoint_url,
        region_name=args.region,
        profile_name=args.profile,
        max_pool_connections=CONNECTIONS_PER_SLOT * slots + len(served) + 8,
    )
    worker = Worker(
        activities,
        processes=args.processes,
        threads=args.threads,
        pollers=args.pollers,
        buffer=args.buffer,
        client=client,
        worker_name=args.worker_name,
        prefix=args.prefix,
        task_lists=args.task_list,
        heartbeat_intervals=args.heartbeat_interval,
        max_concurrency=args.max_concurrency,
        shutdown_grace=args.shutdown_grace,
        max_tasks_per_process=args.max_tasks_per_process,
        max_memory_per_process=(
            args.max_memory_per_process * 2**20 if args.max_memory_per_process else None
        ),
        preload=args.preload,
    )
    return worker.run()


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="activities", description="Serve AWS Step Functions activities.")
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
    worker.add_argument("--processes", type=_positive, help="task processes (default: CPUs)")
    worker.add_argument(
        "--threads",
        type=_positive,
        help=(
            "task threads in each process with --processes; alone, threads of the worker's "
            "own process instead of processes (I/O-bound work)"
        ),
    )
    worker.add_argument(
        "--pollers", type=_positive, help="the most long polls open at once (default: no cap)"
    )
    worker.add_argument(
        "--buffer",
        type=_positive,
        metavar="N",
        help="tasks that may wait for a free slot (default: one per task list)",
    )
    worker.add_argument(
        "--max-concurrency",
        type=_pair,
        action=_Collect,
        default={},
        metavar="NAME=N",
        help="hold at most N tasks of activity NAME at once, overriding the class (repeatable)",
    )
    worker.add_argument(
        "--shutdown-grace",
        type=_seconds,
        default=SHUTDOWN_GRACE,
        metavar="SECONDS",
        help=f"time running tasks get to finish on stop (default: {SHUTDOWN_GRACE:.0f})",
    )
    worker.add_argument(
        "--max-tasks-per-process",
        type=_positive,
        metavar="N",
        help="replace a task process once it ran N tasks (default: never)",
    )
    worker.add_argument(
        "--max-memory-per-process",
        type=_positive,
        metavar="MIB",
        help="replace a task process whose resident memory exceeds MIB after a task",
    )
    worker.add_argument(
        "--heartbeat-interval",
        type=_pair,
        action=_Collect,
        default={},
        metavar="NAME=SECONDS",
        help="heartbeat activity NAME every SECONDS, overriding the class (repeatable)",
    )
    worker.add_argument(
        "--no-preload",
        dest="preload",
        action="store_false",
        help=(
            "import MODULES in each task process instead of once before they are forked "
            "(for modules with import-time side effects)"
        ),
    )
    worker.add_argument("--worker-name", help="the workerName of polls (default: host-pid)")
    _add_aws(worker)

    listing = commands.add_parser(
        "list", help="show the task lists a worker would serve, without calling AWS"
    )
    _add_common(listing)

    registering = commands.add_parser(
        "register",
        help="create the activities in Step Functions (idempotent) and print their ARNs",
    )
    _add_common(registering)
    registering.add_argument(
        "--tag",
        type=_pair,
        action=_Collect,
        metavar="KEY=VALUE",
        help="tag new activities (repeatable)",
    )
    _add_aws(registering)

    invoking = commands.add_parser(
        "invoke",
        help="run one task of an activity through Step Functions and print its outcome",
        description=(
            "Start an execution of a one-state state machine made for activity NAME, with "
            "--input, wait for it and print what Step Functions reports: the output, or the "
            "error and its cause (exit code 1). A worker elsewhere runs the task, or this "
            "command does with --module."
        ),
    )
    invoking.add_argument("name", metavar="NAME", help="the activity's name or ARN")
    invoking.add_argument(
        "--input", default="{}", metavar="JSON", help="the execution's input (default: {})"
    )
    invoking.add_argument(
        "--module",
        action="append",
        default=[],
        metavar="MODULE",
        help="serve NAME from this module (repeatable), in this process, for this one task",
    )
    invoking.add_argument(
        "--path",
        action="append",
        default=[],
        metavar="DIR",
        help="look for --module in DIR too (repeatable); the current directory is searched first",
    )
    invoking.add_argument("--prefix", default="", help="put before NAME, e.g. dev-")
    invoking.add_argument(
        "--local",
        action="store_true",
        help="on a local Step Functions started for this one task (needs --module)",
    )
    invoking.add_argument(
        "--role-arn",
        help="the role the state machine runs with (needed on AWS; any on a local endpoint)",
    )
    invoking.add_argument(
        "--timeout",
        type=_positive,
        default=60,
        metavar="SECONDS",
        help="the task's TimeoutSeconds (default: 60)",
    )
    _add_log_level(invoking, "WARNING")
    _add_aws(invoking)

    local = commands.add_parser(
        "local", help="run a local Step Functions (LocalStack) on 127.0.0.1 until Ctrl-C"
    )
    local.add_argument("--port", type=_positive, help="default: a free port")
    local.add_argument("--log-level", default="INFO", type=str.upper, help=argparse.SUPPRESS)
    return parser


def _add_aws(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--endpoint-url", help="Step Functions endpoint (default: boto3's)")
    parser.add_argument("--region", help="AWS Region (default: boto3's)")
    parser.add_argument("--profile", help="AWS profile (default: boto3's)")


def _add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("modules", nargs="+", metavar="MODULE", help="modules or packages to serve")
    parser.add_argument(
        "--path",
        action="append",
        default=[],
        metavar="DIR",
        help=(
            "look for MODULES in DIR too (repeatable); the current directory is searched "
            "first, as with python -m"
        ),
    )
    parser.add_argument(
        "--prefix", default="", help="put before every activity name, e.g. dev- to serve dev-Echo"
    )
    parser.add_argument(
        "--task-list",
        type=_pair,
        action=_Collect,
        default={},
        metavar="NAME=LIST",
        help=(
            "serve activity NAME on this activity name or ARN instead of its own "
            "(repeatable: Resize=resize-gpu --task-list Resize=resize-cpu)"
        ),
    )
    _add_log_level(parser, "INFO")


def _add_log_level(parser: argparse.ArgumentParser, default: str) -> None:
    parser.add_argument(
        "--log-level",
        default=default,
        type=str.upper,
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        help=f"default: {default}",
    )


class _Parser(argparse.ArgumentParser):
    """Every error in one format: ``activities worker: error: ...``, no usage block."""

    def error(self, message: str) -> NoReturn:
        """Say what is wrong and where the help is; exit code 2."""
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _seconds(text: str) -> float:
    value = float(text)
    if not value >= 0:
        msg = f"must be a number of seconds >= 0, not {text}"
        raise argparse.ArgumentTypeError(msg)
    return value


def _pair(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key or not value:
        msg = f"expected KEY=VALUE, not {text!r}"
        raise argparse.ArgumentTypeError(msg)
    return key, value


class _Collect(argparse.Action):
    """Collect repeated KEY=VALUE options: a dict of lists for task lists, of values for tags."""

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: Any,
        option_string: str | None = None,
    ) -> None:
        key, value = values
        collected = dict(getattr(namespace, self.dest) or {})
        if self.dest == "task_list":
            collected[key] = [*collected.get(key, []), value]
        elif self.dest == "max_concurrency":
            try:
                collected[key] = None if value.lower() == "none" else _positive(value)
            except (ValueError, argparse.ArgumentTypeError):
                parser.error(f"{option_string}: {value!r} is not a whole number >= 1")
        elif self.dest == "heartbeat_interval":
            try:
                collected[key] = None if value.lower() == "none" else float(value)
            except ValueError:
                parser.error(f"{option_string}: {value!r} is not a number of seconds")
        else:
            collected[key] = value
        setattr(namespace, self.dest, collected)


def _positive(text: str) -> int:
    value = int(text)
    if value <= 0:
        msg = f"must be a positive integer, not {text}"
        raise argparse.ArgumentTypeError(msg)
    return value
