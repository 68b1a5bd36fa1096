"""The command line (also ``python -m activities``).

::

    activities worker myproject.activities --processes 4
    activities list myproject.activities --prefix dev-
    activities register myproject.activities --prefix dev- --tag team=data
    activities local
    activities invoke Echo --input '{"value": 1}' --module myproject.activities

What each command does is here; its arguments are in :mod:`activities._arguments`.
"""

from __future__ import annotations

import functools
import importlib.util
import logging
import os
import signal
import sys
import threading
from typing import TYPE_CHECKING

import boto3
import botocore.exceptions

from activities._arguments import EXIT_USAGE, command_line
from activities._child import task_process_connections
from activities._childlog import PlainFormatter
from activities._invoke import LOCAL_ROLE_ARN, invoke
from activities._operations import count_before_imports
from activities._settings import async_tasks_for
from activities.client import ActivityClient, make_client
from activities.errors import ActivitiesError, ConfigurationError
from activities.jsonlog import JsonFormatter
from activities.local import LocalStepFunctions
from activities.registry import discover, register, task_lists
from activities.worker import Worker

if TYPE_CHECKING:
    import argparse
    from collections.abc import Sequence

    from mypy_boto3_stepfunctions import SFNClient

    from activities._activity import Activity

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit code."""
    parser = command_line()
    args = parser.parse_args(argv)
    plain = logging.StreamHandler()
    plain.setFormatter(PlainFormatter())  # one line a record: control characters escaped
    logging.basicConfig(level=args.log_level, handlers=[plain])
    if args.log_format == "json":
        for handler in logging.getLogger().handlers:
            handler.setFormatter(JsonFormatter())
    if args.log_level != "DEBUG":
        # botocore says "Found credentials ..." at INFO on every client.
        logging.getLogger("botocore").setLevel(logging.WARNING)
    early = None
    try:
        if args.command == "local":
            return _local(args)
        if args.command == "invoke":
            return _invoke(args)
        if args.command == "worker" and args.metrics_port is not None:
            # Before the user's modules are imported: metrics they make then count too.
            early = count_before_imports()
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
    finally:
        if early is not None:
            early.remove()  # the worker removed it at its stop, unless it never started


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
    with local:
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, lambda *_: stop.set())
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
    async_tasks = async_tasks_for(activities, args.async_tasks)  # the worker's default too
    connections = task_process_connections(args.threads or 1, async_tasks)
    served = task_lists(activities, prefix=args.prefix, overrides=args.task_list)
    client = functools.partial(
        make_client,
        endpoint_url=args.endpoint_url,
        region_name=args.region,
        profile_name=args.profile,
        max_pool_connections=connections + len(served) + 8,
        direct=args.direct_calls,
    )
    worker = Worker(
        activities,
        processes=args.processes,
        threads=args.threads,
        async_tasks=args.async_tasks,
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
        metrics_port=args.metrics_port,
        metrics_host=args.metrics_host,
        call_timeout=args.call_timeout,
        silence_warning=args.silence_warning,
    )
    return worker.run()
