"""The arguments of the ``activities`` command: its subcommands, options and their checks.

What the commands do is in :mod:`activities.cli`.
"""

from __future__ import annotations

import argparse
import difflib
from typing import TYPE_CHECKING, Any, NoReturn

from activities._aws.sfnclient import CALL_TIMEOUT
from activities.worker._settings import SHUTDOWN_GRACE, SILENCE_WARNING

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = ["EXIT_USAGE", "command_line", "parse"]

#: Exit code for bad usage or configuration, as argparse uses.
EXIT_USAGE = 2


def command_line() -> argparse.ArgumentParser:
    """The ``activities`` command's parser, with every subcommand."""
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
        "--async-tasks",
        type=_count,
        metavar="N",
        help=(
            "tasks of async def run() activities each task process (with --threads alone: the "
            "worker's process) runs at once on its event loop, besides its threads (default: "
            "100 when an activity served is async; 0: none, async tasks run on the threads)"
        ),
    )
    worker.add_argument(
        "--pollers",
        type=_positive,
        help="the most long polls open at once (default: one per task list, up to 64 more)",
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
    _add_heartbeat_intervals(worker)
    worker.add_argument(
        "--no-preload",
        dest="preload",
        action="store_false",
        help=(
            "import MODULES in each task process instead of once before they are forked "
            "(for modules with import-time side effects)"
        ),
    )
    worker.add_argument(
        "--no-direct-calls",
        dest="direct_calls",
        action="store_false",
        help=(
            "send polls, outcomes and heartbeats through botocore, where its event hooks "
            "and instrumentation see them, instead of the framework's own connections"
        ),
    )
    worker.add_argument(
        "--call-timeout",
        type=_some_seconds,
        default=CALL_TIMEOUT,
        metavar="SECONDS",
        help=(
            "time to wait for the answer to a call that is not a long poll (outcomes, "
            f"heartbeats) before retrying it (default: {CALL_TIMEOUT:.0f})"
        ),
    )
    worker.add_argument(
        "--silence-warning",
        type=_some_seconds,
        default=SILENCE_WARNING,
        metavar="SECONDS",
        help=(
            "warn when Step Functions has answered nothing for SECONDS while a call "
            f"waits (default: {SILENCE_WARNING:.0f})"
        ),
    )
    worker.add_argument("--worker-name", help="the workerName of polls (default: host-pid)")
    worker.add_argument(
        "--metrics-port",
        type=_port,
        metavar="PORT",
        help=(
            "serve Prometheus metrics at /metrics and the probes /healthz and /readyz on "
            "PORT (needs prometheus_client: python3 -m pip install prometheus_client)"
        ),
    )
    worker.add_argument(
        "--metrics-host",
        default="127.0.0.1",
        metavar="HOST",
        help="the address --metrics-port listens on (default: 127.0.0.1; 0.0.0.0 in a container)",
    )
    _add_aws(worker)

    listing = commands.add_parser(
        "list", help="show the task lists a worker would serve, without calling AWS"
    )
    _add_common(listing)

    checking = commands.add_parser(
        "check",
        help="hold a state machine definition against the activities MODULES serve",
        description=(
            "Read DEFINITION (Amazon States Language JSON, or YAML when it ends in .yaml or "
            ".yml and PyYAML is installed) and hold every Task state whose Resource is an "
            "activity ARN against the activities MODULES serve, named as a worker with the "
            "same --prefix and --task-list names them. Prints one line per finding and a "
            "summary; exit code 1 on an error (or a warning with --strict), 0 otherwise. "
            "Nothing is sent to AWS."
        ),
    )
    _add_common(checking)
    checking.add_argument(
        "definition",
        metavar="DEFINITION",
        help="the state machine definition file (the last positional argument)",
    )
    _add_heartbeat_intervals(checking)
    checking.add_argument(
        "--strict", action="store_true", help="exit with 1 on warnings too, not only on errors"
    )

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
        "local",
        help="run a local Step Functions (LocalStack) on 127.0.0.1 until Ctrl-C",
        description=(
            "Run LocalStack's Step Functions (and S3) on 127.0.0.1, installing it on first "
            "use, and print the environment variables that point boto3, workers and "
            "activities invoke at it. Ctrl-C stops it and removes what was created on it."
        ),
    )
    local.add_argument(
        "--port", type=_local_port, help="the port to listen on (default: a free one)"
    )
    local.add_argument("--log-level", default="INFO", type=str.upper, help=argparse.SUPPRESS)
    local.add_argument("--log-format", default="text", help=argparse.SUPPRESS)
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


def _add_heartbeat_intervals(parser: argparse.ArgumentParser) -> None:
    """``--heartbeat-interval NAME=SECONDS``: the worker's, and what ``check`` holds against."""
    parser.add_argument(
        "--heartbeat-interval",
        type=_pair,
        action=_Collect,
        default={},
        metavar="NAME=SECONDS",
        help="heartbeat activity NAME every SECONDS, overriding the class (repeatable)",
    )


def _add_log_level(parser: argparse.ArgumentParser, default: str) -> None:
    parser.add_argument(
        "--log-level",
        default=default,
        type=str.upper,
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        help=f"log lines of this level and above (default: {default})",
    )
    parser.add_argument(
        "--log-format",
        default="text",
        choices=["text", "json"],
        help="text lines, or one JSON object per line (default: text)",
    )


def parse(parser: argparse.ArgumentParser, argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parse ``argv`` with :func:`command_line`'s ``parser``; exit code 2 on an error.

    Arguments the subcommand does not know are its error, not the command's: the message
    names its help (``activities worker --help``) and the option closest to each unknown
    one (``--procesess``: did you mean ``--processes``?).
    """
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        command = _subcommands(parser).get(args.command, parser)
        command.error(_unrecognized(command, unknown))
    return args


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    """The parsers of ``parser``'s subcommands, by name."""
    return {
        name: command
        for action in parser._actions
        if isinstance(action, argparse._SubParsersAction)
        for name, command in action.choices.items()
    }


def _unrecognized(parser: argparse.ArgumentParser, unknown: list[str]) -> str:
    """Say which arguments ``parser`` does not know, and the options they look like."""
    known = [option for action in parser._actions for option in action.option_strings]
    guesses = []
    for argument in unknown:
        if argument.startswith("--"):
            option = argument.partition("=")[0]
            guesses += difflib.get_close_matches(option, known, n=1, cutoff=0.6)
    message = f"unrecognized arguments: {' '.join(unknown)}"
    if guesses:
        message += f"; did you mean {' or '.join(dict.fromkeys(guesses))}?"
    return message


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


def _some_seconds(text: str) -> float:
    value = float(text)
    if not value > 0:
        msg = f"must be a number of seconds > 0, not {text}"
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


def _port(text: str) -> int:
    value = int(text)
    if not 0 <= value <= 65535:  # noqa: PLR2004 - the range of TCP ports
        msg = f"must be a port from 0 to 65535, not {text}"
        raise argparse.ArgumentTypeError(msg)
    return value


def _local_port(text: str) -> int:
    value = int(text)
    if not 1 <= value <= 65535:  # noqa: PLR2004 - the range of TCP ports one can connect to
        msg = f"must be a port from 1 to 65535, not {text}"
        raise argparse.ArgumentTypeError(msg)
    return value


def _positive(text: str) -> int:
    value = int(text)
    if value <= 0:
        msg = f"must be a positive integer, not {text}"
        raise argparse.ArgumentTypeError(msg)
    return value


def _count(text: str) -> int:
    value = int(text)
    if value < 0:
        msg = f"must be a whole number >= 0, not {text}"
        raise argparse.ArgumentTypeError(msg)
    return value
