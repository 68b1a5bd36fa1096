"""The demo: the ``examples`` package served by a worker pool against real state machines.

::

    python -m examples.demo                  # a local Step Functions, installed on first use
    python -m examples.demo --role-arn arn:aws:iam::123456789012:role/StepFunctions
                                             # real AWS, credentials from boto3's chain

It registers the activities of ``examples`` (Echo, CountWords, Reserve), creates a state
machine that uses them with a ``Retry`` and a ``Catch``, starts a worker pool, runs a batch
of executions and prints what became of them: each outcome with the state that decided it
and the path of states the executions took, read from their histories; then what to try
next.
"""

from __future__ import annotations

import argparse
import functools
import json
import logging
import sys
import time
import uuid
from collections import Counter
from typing import TYPE_CHECKING, Any, NamedTuple

from activities import ActivityClient, Worker, make_client
from activities.local import LocalStepFunctions
from activities.registry import discover, register, task_lists

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping, Sequence

    from mypy_boto3_stepfunctions import SFNClient

#: Put before the examples' activity names, so the demo does not touch your own.
PREFIX = "sfn-activities-demo-"

#: Any role does for LocalStack; on AWS, pass one Step Functions can assume.
LOCAL_ROLE_ARN = "arn:aws:iam::000000000000:role/sfn-activities-demo"

DOCUMENTS = ["the quick brown fox", "jumps over", "the lazy dog", "again and again"]

#: Every this many executions, one needs a retry.
RETRY_EVERY = 3

#: Every this many executions, one orders a quantity of 0, which Reserve refuses.
REFUSE_EVERY = 5


def definition(arns: dict[str, str]) -> dict[str, Any]:
    """Echo the order, count the words of its documents, reserve stock.

    Reserve fails with ``Inventory.Busy`` on early attempts (retried) and with
    ``ValueError`` for a quantity that is not positive (caught).
    """
    return {
        "Comment": "sfn-activities demo",
        "StartAt": "Echo",
        "States": {
            "Echo": {
                "Type": "Task",
                "Resource": arns[PREFIX + "Echo"],
                "Parameters": {"value.$": "$"},
                "HeartbeatSeconds": 30,
                "Next": "CountWords",
            },
            "CountWords": {
                "Type": "Task",
                "Resource": arns[PREFIX + "CountWords"],
                "Parameters": {"documents.$": "$.documents"},
                "ResultPath": "$.words",
                "HeartbeatSeconds": 30,
                "Next": "Reserve",
            },
            "Reserve": {
                "Type": "Task",
                "Resource": arns[PREFIX + "Reserve"],
                "Parameters": {
                    "item.$": "$.item",
                    "quantity.$": "$.quantity",
                    "succeed_on_attempt.$": "$.succeed_on_attempt",
                    "attempt.$": "$$.State.RetryCount",
                },
                "ResultPath": "$.reservation",
                "HeartbeatSeconds": 30,
                "Retry": [
                    {
                        "ErrorEquals": ["Inventory.Busy"],
                        "IntervalSeconds": 1,
                        "MaxAttempts": 3,
                        "BackoffRate": 1.0,
                    }
                ],
                "Catch": [
                    {"ErrorEquals": ["ValueError"], "ResultPath": "$.rejected", "Next": "Rejected"}
                ],
                "End": True,
            },
            "Rejected": {"Type": "Pass", "End": True},
        },
    }


def order(number: int) -> dict[str, Any]:
    """The input of execution ``number``: every third needs a retry, every fifth is refused."""
    return {
        "item": f"item-{number}",
        "quantity": 0 if number % REFUSE_EVERY == REFUSE_EVERY - 1 else 1 + number % 3,
        "succeed_on_attempt": 1 if number % RETRY_EVERY == RETRY_EVERY - 1 else 0,
        "documents": DOCUMENTS[: 1 + number % len(DOCUMENTS)],
    }


#: What to try after the demo: the tutorial, these activities served by hand, the docs.
NEXT = (
    "What next:",
    "  your own activity, step by step: docs/tutorial.md",
    "  serve these yourself: activities local, its exports, then: activities worker examples",
    "  all the docs: docs/index.md (python3 -m nox -s docs builds them)",
)


class Outcome(NamedTuple):
    """What became of an execution, the state that decided it, and the states it took."""

    name: str
    state: str
    path: str


class Route(NamedTuple):
    """The states an execution entered, in order, and what happened in them."""

    #: Each state once per entry, in order.
    states: list[str]
    #: How many times each state scheduled its activity: more than once is a Retry.
    attempts: Counter[str]
    #: The state whose activity failed last, if one did.
    failed_in: str | None

    def path(self) -> str:
        """The states joined by arrows; a state that ran its activity N > 1 times: ``xN``."""
        return " -> ".join(
            f"{state} x{self.attempts[state]}" if self.attempts[state] > 1 else state
            for state in self.states
        )


def route(events: Iterable[Mapping[str, Any]]) -> Route:
    """The route of an execution, from its history's events in order."""
    states: list[str] = []
    attempts: Counter[str] = Counter()
    failed_in = None
    for event in events:
        entered = event.get("stateEnteredEventDetails")
        if entered:
            states.append(entered["name"])
        elif states and event["type"] == "ActivityScheduled":
            attempts[states[-1]] += 1
        elif states and event["type"] == "ActivityFailed":
            failed_in = states[-1]
    return Route(states, attempts, failed_in)


def outcome(sfn: SFNClient, execution_arn: str) -> Outcome:
    """What became of an execution: succeeded, retried, caught, or its failure."""
    description = sfn.describe_execution(executionArn=execution_arn)
    pages = sfn.get_paginator("get_execution_history").paginate(executionArn=execution_arn)
    taken = route(event for page in pages for event in page["events"])
    last = taken.states[-1] if taken.states else "-"
    if description["status"] != "SUCCEEDED":
        name = f"{description['status'].lower()} ({description.get('error', '?')})"
        return Outcome(name, taken.failed_in or last, taken.path())
    output = json.loads(description["output"])
    if "rejected" in output:
        name = f"caught {output['rejected']['Error']}"
        return Outcome(name, taken.failed_in or last, taken.path())
    if taken.failed_in:
        return Outcome("retried, then succeeded", taken.failed_in, taken.path())
    return Outcome("succeeded", last, taken.path())


def table(outcomes: Counter[Outcome]) -> list[str]:
    """The lines of the outcome table: outcome, state, path and how many executions."""
    header = Outcome("outcome", "state", "path")
    rows = [header, *sorted(outcomes)]
    widths = [max(len(row[column]) for row in rows) for column in range(len(header))]
    lines = []
    for row in rows:
        count = "executions" if row is header else str(outcomes[row])
        cells = "  ".join(f"{cell:<{width}}" for cell, width in zip(row, widths, strict=True))
        lines.append(f"  {cells}  {count:>10}")
    if any(" x" in row.path for row in outcomes):
        lines.append("  (xN: the state ran its activity N times: its Retry)")
    return lines


def run_batch(sfn: SFNClient, machine_arn: str, count: int) -> Counter[Outcome]:
    """Start ``count`` executions, show a progress bar until they end, count the outcomes."""
    running = {
        sfn.start_execution(stateMachineArn=machine_arn, input=json.dumps(order(number)))[
            "executionArn"
        ]
        for number in range(count)
    }
    outcomes: Counter[Outcome] = Counter()
    # A bar redrawn in place on a terminal; in a file or a pipe, a line every tenth done.
    on_terminal = sys.stdout.isatty()
    said = 0
    while running:
        for execution_arn in list(running):
            if sfn.describe_execution(executionArn=execution_arn)["status"] != "RUNNING":
                running.discard(execution_arn)
                outcomes[outcome(sfn, execution_arn)] += 1
        done = count - len(running)
        if on_terminal:
            bar = "#" * (30 * done // count)
            print(f"\r  executions [{bar:<30}] {done}/{count}", end="", flush=True)
        elif done == count or done >= said + max(1, count // 10):
            said = done
            print(f"  executions ended: {done}/{count}", flush=True)
        time.sleep(0.2)
    if on_terminal:
        print()
    return outcomes


def demo(
    connect: Callable[[], SFNClient], *, role_arn: str, executions: int, processes: int
) -> int:
    """Register, create the state machine, serve, run the batch, clean up; the exit code.

    ``connect`` makes a client; each worker process calls it too.
    """
    sfn = connect()
    activities = discover("examples")
    served = task_lists(activities, prefix=PREFIX)
    arns = register(ActivityClient(sfn), served)
    print(f"Registered {len(arns)} activities:")
    for task_list, activity_arn in arns.items():
        print(f"  {served[task_list].__qualname__:<11} {activity_arn}")
    machine_arn = sfn.create_state_machine(
        name=f"{PREFIX}{uuid.uuid4().hex[:8]}",
        definition=json.dumps(definition(arns)),
        roleArn=role_arn,
    )["stateMachineArn"]
    print(f"Created state machine {machine_arn}")
    worker = Worker(activities, processes=processes, prefix=PREFIX, client=connect)
    worker.start()
    print(f"Started a worker with {processes} processes; running {executions} executions:")
    try:
        outcomes = run_batch(sfn, machine_arn, executions)
    finally:
        # Every execution has ended: no task can be in flight, so the worker need not
        # wait out its open polls (a graceful stop waits up to 60 s for them).
        worker.terminate()
        sfn.delete_state_machine(stateMachineArn=machine_arn)
    print()
    print("\n".join(table(outcomes)))
    print()
    print("\n".join(NEXT))
    failed = sum(
        number
        for ended, number in outcomes.items()
        if not ended.name.startswith(("succ", "retried", "caught"))
    )
    return 1 if failed else 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the demo; the exit code is 0 when every execution ended as designed."""
    parser = argparse.ArgumentParser(
        prog="python -m examples.demo", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--executions", type=int, default=24, help="how many (default: 24)")
    parser.add_argument(
        "--processes",
        type=int,
        default=3,
        help="worker processes (default: 3, one per activity, so each always has a poll open)",
    )
    parser.add_argument(
        "--endpoint-url", help="a Step Functions endpoint to use instead of a local one"
    )
    parser.add_argument(
        "--role-arn", help="the state machine's role: with it and no endpoint, real AWS is used"
    )
    parser.add_argument("--verbose", action="store_true", help="show the worker's log")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING)
    if args.endpoint_url or args.role_arn:
        return demo(
            functools.partial(make_client, endpoint_url=args.endpoint_url),
            role_arn=args.role_arn or LOCAL_ROLE_ARN,
            executions=args.executions,
            processes=args.processes,
        )
    print("Starting a local Step Functions (the first run installs it: about a minute)...")
    with LocalStepFunctions() as local:
        print(f"Local Step Functions at {local.endpoint_url}")
        return demo(
            local.client_factory(),
            role_arn=LOCAL_ROLE_ARN,
            executions=args.executions,
            processes=args.processes,
        )


if __name__ == "__main__":
    sys.exit(main())
