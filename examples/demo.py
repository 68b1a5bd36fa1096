"""The demo: the ``examples`` package served by a worker pool against real state machines.

::

    python -m examples.demo                  # a local Step Functions, installed on first use
    python -m examples.demo --role-arn arn:aws:iam::123456789012:role/StepFunctions
                                             # real AWS, credentials from boto3's chain

It registers the activities of ``examples`` (Echo, CountWords, Reserve), creates a state
machine that uses them with a ``Retry`` and a ``Catch``, starts a worker pool, runs a batch
of executions and prints what became of them.
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
from typing import TYPE_CHECKING, Any

from activities import ActivityClient, Worker, make_client
from activities.local import LocalStepFunctions
from activities.registry import discover, register, task_lists

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

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


def outcome(sfn: SFNClient, execution_arn: str) -> str:
    """What became of an execution: succeeded, retried, caught, or its failure."""
    description = sfn.describe_execution(executionArn=execution_arn)
    if description["status"] != "SUCCEEDED":
        return f"{description['status'].lower()} ({description.get('error', '?')})"
    output = json.loads(description["output"])
    if "rejected" in output:
        return f"caught {output['rejected']['Error']}"
    events = sfn.get_execution_history(executionArn=execution_arn, maxResults=1000)["events"]
    if any(event["type"] == "ActivityFailed" for event in events):
        return "retried, then succeeded"
    return "succeeded"


def run_batch(sfn: SFNClient, machine_arn: str, count: int) -> Counter[str]:
    """Start ``count`` executions, show a progress bar until they end, count the outcomes."""
    running = {
        sfn.start_execution(stateMachineArn=machine_arn, input=json.dumps(order(number)))[
            "executionArn"
        ]
        for number in range(count)
    }
    outcomes: Counter[str] = Counter()
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
    print("\n  outcome                          executions")
    for name, number in sorted(outcomes.items()):
        print(f"  {name:<32} {number:>10}")
    failed = sum(
        number
        for name, number in outcomes.items()
        if not name.startswith(("succ", "retried", "caught"))
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
