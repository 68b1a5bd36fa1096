"""Helpers for integration tests against a real (local) Step Functions endpoint."""

from __future__ import annotations

import itertools
import json
import time
import uuid
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mypy_boto3_stepfunctions import SFNClient

ROLE_ARN = "arn:aws:iam::000000000000:role/sfn-activities-tests"

_counter = itertools.count()


def unique(name: str) -> str:
    """A name no other test uses: LocalStack keeps everything for the whole session."""
    return f"{name}-{next(_counter)}-{uuid.uuid4().hex[:8]}"


def task_state(activity_arn: str, **fields: Any) -> dict[str, Any]:
    """A Task state for ``activity_arn``, ending the machine unless ``Next`` is given."""
    state: dict[str, Any] = {"Type": "Task", "Resource": activity_arn, **fields}
    if "Next" not in state:
        state["End"] = True
    return state


def create_machine(client: SFNClient, states: dict[str, Any], start: str) -> str:
    """Create a state machine from ``states``; return its ARN."""
    definition = {"StartAt": start, "States": states}
    response = client.create_state_machine(
        name=unique("machine"), definition=json.dumps(definition), roleArn=ROLE_ARN
    )
    return response["stateMachineArn"]


def start(client: SFNClient, machine_arn: str, data: Any) -> str:
    """Start an execution with ``data`` as JSON input; return its ARN."""
    return client.start_execution(stateMachineArn=machine_arn, input=json.dumps(data))[
        "executionArn"
    ]


def wait_for(client: SFNClient, execution_arn: str, timeout: float = 60) -> dict[str, Any]:
    """Wait until the execution ends; return ``describe_execution``'s answer.

    The timeout only bounds a broken test; nothing is asserted about time.
    """
    deadline = time.monotonic() + timeout
    while True:
        description: dict[str, Any] = dict(client.describe_execution(executionArn=execution_arn))
        if description["status"] != "RUNNING" or time.monotonic() > deadline:
            return description
        time.sleep(0.1)


def history(client: SFNClient, execution_arn: str) -> list[dict[str, Any]]:
    """The execution's events, oldest first."""
    events = client.get_execution_history(executionArn=execution_arn, maxResults=1000)
    return [dict(event) for event in events["events"]]
