"""One task of one activity, run through Step Functions: what ``activities invoke`` does.

A state machine of one Task state is made for the activity, an execution of it started
with the input given, and its end awaited: what it reports (the output, or the error and
its cause) is what a real state machine's next state would get. The task is run by
whatever serves the activity (a worker elsewhere), or here, in this process, by an
instance of its class (``serve``); the state machine is deleted after.

Serving here never abandons a poll: the loop polls while the execution runs, runs what it
gets (another execution's task of the same activity included: it is served as a worker
would), and ends only once its poll has returned.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from typing import TYPE_CHECKING, Any

from activities.errors import ConfigurationError

if TYPE_CHECKING:
    from activities.activity import Activity
    from activities.client import ActivityClient

__all__ = ["Ended", "invoke"]

logger = logging.getLogger(__name__)

#: Seconds between two looks at the execution, when nothing is served here.
WATCH_INTERVAL = 0.2

#: The role a local Step Functions (LocalStack) is given: it assumes none.
LOCAL_ROLE_ARN = "arn:aws:iam::000000000000:role/sfn-activities-invoke"


class Ended:
    """How an execution ended, as Step Functions reports it.

    Attributes:
        status: ``SUCCEEDED``, ``FAILED``, ``TIMED_OUT`` or ``ABORTED``.
        output: the output's JSON text, if it succeeded.
        error: the error's name, if it failed (``States.Timeout`` if timed out).
        cause: the error's cause, if any.
    """

    def __init__(self, description: dict[str, Any]) -> None:
        self.status: str = description["status"]
        self.output: str | None = description.get("output")
        self.error: str | None = description.get("error")
        self.cause: str | None = description.get("cause")

    @property
    def succeeded(self) -> bool:
        """Whether the execution succeeded."""
        return self.status == "SUCCEEDED"

    def report(self) -> str:
        """The output's JSON, or a JSON object of the status, error and cause."""
        if self.succeeded and self.output is not None:
            return self.output
        failure = {"status": self.status, "error": self.error, "cause": self.cause}
        return json.dumps({key: value for key, value in failure.items() if value is not None})


def invoke(
    client: ActivityClient,
    activity_arn: str,
    data: str,
    *,
    role_arn: str,
    timeout: int,
    serve: type[Activity] | None = None,
) -> Ended:
    """Run one task of ``activity_arn`` with input ``data`` (JSON) through Step Functions.

    Args:
        client: the client to make the state machine, start and watch the execution with
            (and to serve the task with, if ``serve``).
        activity_arn: the activity's ARN (created beforehand).
        data: the execution's input, a JSON text.
        role_arn: the role the state machine runs with.
        timeout: the Task state's ``TimeoutSeconds``: the execution ends by then.
        serve: run the task here with an instance of this class, instead of waiting for a
            worker elsewhere to.

    Raises:
        ConfigurationError: ``data`` is not JSON.
    """
    try:
        json.loads(data)
    except ValueError as exc:
        msg = f"--input is not JSON: {exc}"
        raise ConfigurationError(msg) from None
    sfn = client.client
    name = f"sfn-activities-invoke-{activity_arn.rpartition(':')[2]}"[:70]
    definition = {
        "StartAt": "Invoke",
        "States": {
            "Invoke": {
                "Type": "Task",
                "Resource": activity_arn,
                "TimeoutSeconds": timeout,
                "End": True,
            }
        },
    }
    machine = sfn.create_state_machine(
        name=f"{name}-{uuid.uuid4().hex[:8]}", definition=json.dumps(definition), roleArn=role_arn
    )["stateMachineArn"]
    try:
        execution = sfn.start_execution(stateMachineArn=machine, input=data)["executionArn"]
        logger.info("started %s", execution)
        instance = serve() if serve is not None else None
        while True:
            description = dict(sfn.describe_execution(executionArn=execution))
            if description["status"] != "RUNNING":
                return Ended(description)
            if instance is None:
                time.sleep(WATCH_INTERVAL)
                continue
            task = client.poll(activity_arn)
            if task is not None:
                outcome = client.process(instance, task)
                logger.info("task %s: %s", task.token_prefix, type(outcome).__name__.lower())
    finally:
        sfn.delete_state_machine(stateMachineArn=machine)
