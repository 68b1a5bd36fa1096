"""The command line (also ``python -m activities``).

::

    activities worker myproject.activities --processes 4
    activities list myproject.activities --prefix dev-
    activities check myproject.activities statemachine.asl.json --prefix dev-
    activities register myproject.activities --prefix dev- --tag team=data
    activities local
    activities invoke Echo --input '{"value": 1}' --module myproject.activities

What each command does is here; its arguments are in :mod:`activities._cli.arguments`.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import importlib.util
import io
import json
import logging
import os
import signal
import sys
import threading
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING

import boto3
import botocore.exceptions

from activities._cli.arguments import EXIT_USAGE, command_line, parse
from activities._cli.invoke import LOCAL_ROLE_ARN, invoke
from activities._cli.usermodules import check_findable, pointed, put_on_import_path
from activities._ops.endpoint import count_before_imports
from activities.check import _run as run_check
from activities.client import ActivityClient, make_client
from activities.errors import ActivitiesError, ConfigurationError
from activities.jsonlog import JsonFormatter
from activities.local import LocalStepFunctions
from activities.registry import discover, register, task_lists
from activities.worker import Worker
from activities.worker._childlog import PlainFormatter
from activities.worker._settings import async_tasks_for
from activities.worker._taskprocess import task_process_connections

if TYPE_CHECKING:
    import argparse
    from collections.abc import Sequence

    from mypy_boto3_stepfunctions import SFNClient

    from activities._activity import Activity

__all__ = ["main"]

logger = logging.getLogger(__name__)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit code."""
    parser = command_line()
    argv = sys.argv[1:] if argv is None else list(argv)
    args = _parse(parser, argv)
    _configure_logging(args)
    as_json = args.log_format == "json"
    try:
        return _command(args)
    except ActivitiesError as exc:
        _error(f"{parser.prog} {args.command}: error: {pointed(exc)}", as_json=as_json)
        return EXIT_USAGE
    except Exception:
        if not as_json:
            raise
        logger.critical("%s %s: failed", parser.prog, args.command, exc_info=True)
        return 1


def _configure_logging(args: argparse.Namespace) -> None:
    handler = logging.StreamHandler()
    # JSON, or one line a record with control characters escaped. Only the handler made
    # here: a logging already set up (an application's, pytest's) keeps its own formats.
    handler.setFormatter(JsonFormatter() if args.log_format == "json" else PlainFormatter())
    logging.basicConfig(level=args.log_level, handlers=[handler])
    if args.log_level != "DEBUG":
        # botocore says "Found credentials ..." at INFO on every client.
        logging.getLogger("botocore").setLevel(logging.WARNING)


def _command(args: argparse.Namespace) -> int:
    """Run the subcommand ``args`` name; its exit code."""
    if args.command == "local":
        return _local(args)
    if args.command == "invoke":
        return _invoke(args)
    early = None
    if args.command == "worker" and args.metrics_port is not None:
        # Before the user's modules are imported: metrics they make then count too.
        early = count_before_imports()
    try:
        return _serve(args)
    finally:
        if early is not None:
            early.remove()  # the worker removed it at its stop, unless it never started


def _serve(args: argparse.Namespace) -> int:
    """``list``, ``register`` or ``worker``: import the modules, then do it."""
    definition = _definition(args.definition) if args.command == "check" else None
    put_on_import_path(args.path)
    check_findable(args.modules, args.path)
    activities = discover(*args.modules)
    if not activities:
        msg = f"no activities found in {', '.join(args.modules)}"
        raise ConfigurationError(msg)
    if definition is not None:
        return _check(args, definition, activities)
    served = task_lists(activities, prefix=args.prefix, overrides=args.task_list)
    if args.command == "list":
        return _list(served)
    _check_region(args)
    if args.command == "register":
        return _register(args, served)
    return _worker(args, activities)


def _parse(parser: argparse.ArgumentParser, argv: list[str]) -> argparse.Namespace:
    """Parse ``argv``; with ``--log-format json``, a usage error is a JSON line too."""
    if not _wants_json(argv):
        return parse(parser, argv)
    said = io.StringIO()
    try:
        with contextlib.redirect_stderr(said):
            return parse(parser, argv)
    except SystemExit:
        for line in said.getvalue().splitlines():
            _error(line, as_json=True)
        raise


def _wants_json(argv: Sequence[str]) -> bool:
    """Whether ``argv`` asks for JSON log lines (read before it is parsed)."""
    pairs = zip(argv, [*argv[1:], ""], strict=True)
    return any(
        first == "--log-format=json" or (first, second) == ("--log-format", "json")
        for first, second in pairs
    )


def _error(line: str, *, as_json: bool) -> None:
    """Write an error of the command itself: the line, or a JSON log line holding it."""
    if as_json:
        record = logging.makeLogRecord(
            {"name": logger.name, "levelno": logging.ERROR, "levelname": "ERROR", "msg": line}
        )
        line = JsonFormatter().format(record)
    print(line, file=sys.stderr)


def _invoke(args: argparse.Namespace) -> int:
    """Run one task of one activity through Step Functions and print what it reports."""
    serve = None
    name = args.name if args.name.startswith("arn:") else args.prefix + args.name
    if args.module:
        put_on_import_path(args.path)
        check_findable(args.module, args.path)
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


def _definition(path: str) -> object:
    """The parsed state machine definition in file ``path``: JSON, or YAML by its suffix."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        msg = f"cannot read the definition {path}: {exc.strerror}"
        raise ConfigurationError(msg) from None
    except UnicodeDecodeError as exc:
        msg = f"cannot read the definition {path}: not UTF-8 text ({exc.reason})"
        raise ConfigurationError(msg) from None
    if Path(path).suffix.lower() in {".yaml", ".yml"}:
        try:
            yaml = importlib.import_module("yaml")
        except ImportError:
            msg = f"reading {path} needs PyYAML: python3 -m pip install pyyaml (or give JSON)"
            raise ConfigurationError(msg) from None
        try:
            return yaml.safe_load(text)
        except yaml.YAMLError as exc:
            msg = f"{path} is not YAML: {' '.join(str(exc).split())}"
            raise ConfigurationError(msg) from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        msg = f"{path} is not JSON: {exc}"
        raise ConfigurationError(msg) from None


def _check(args: argparse.Namespace, definition: object, activities: list[type[Activity]]) -> int:
    """Print what :func:`check_definition` finds, then a summary; 1 when it fails."""
    if not isinstance(definition, dict):
        msg = f"{args.definition} has no States: it is not an Amazon States Language definition"
        raise ConfigurationError(msg)
    findings, checked = run_check(
        definition,
        activities,
        prefix=args.prefix,
        task_lists=args.task_list,
        heartbeat_intervals=args.heartbeat_interval,
    )
    for finding in findings:
        print(finding)
    counts = Counter(finding.severity for finding in findings)
    summary = (
        f"{_counted(counts['error'], 'error')}, {_counted(counts['warning'], 'warning')} "
        f"in {_counted(checked, 'activity state')}"
    )
    if counts["info"]:
        summary += f"; {_counted(counts['info'], 'state')} not checked"
    print(summary)
    failed = counts["error"] or (args.strict and counts["warning"])
    return 1 if failed else 0


def _counted(number: int, thing: str) -> str:
    return f"{number} {thing}{'' if number == 1 else 's'}"


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
    print(
        "Local Step Functions stopped; the activities, state machines and executions made "
        "on it are gone.",
        flush=True,
    )
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
