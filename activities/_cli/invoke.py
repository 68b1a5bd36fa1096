"""One task of one activity, run through Step Functions: what ``activities invoke`` does.

A state machine of one Task state is made for the activity, an execution of it started
with the input given, and its end awaited: what it reports (the output, or the error and
its cause) is what a real state machine's next state would get. The task is run by
whatever serves the activity (a worker elsewhere), or here, in this process, by an
instance of its class (``serve``); the state machine is deleted after.

Serving here never abandons a poll: the loop polls while the execution's task waits for a
worker, runs what it gets (another execution's task of the same activity included: it is
served as a worker would), and ends only once its poll has returned. It opens no poll once
the execution's history shows its task handed out (``ActivityStarted``), by this poll or
any other: Step Functions may still report the execution running for a moment after the
task's outcome was sent, and a poll opened then would wait its full 60 s for a task that
will not come. Watching the execution takes ``states:DescribeExecution`` and, when serving
here, ``states:GetExecutionHistory``.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from typing import TYPE_CHECKING, Any

from activities.errors import ConfigurationError

if TYPE_CHECKING:
    from activities._activity import Activity
    from activities.client import ActivityClient

__all__ = ["Ended", "invoke"]

logger = logging.getLogger(__name__)

#: Seconds between two looks at the execution, when nothing is served here.
WATCH_INTERVAL = 0.2

#: Seconds to wait, after serving a task, for the execution's history to show its own task
#: handed out (it is written just after the poll returns) before taking the task served
#: for another execution's and polling again.
HANDED_OUT_WAIT = 5.0

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
        handed_out = instance is None  # nothing to serve here: only watch
        served_at: float | None = None  # when a task was last served here
        while True:
            description = dict(sfn.describe_execution(executionArn=execution))
            if description["status"] != "RUNNING":
                return Ended(description)
            handed_out = handed_out or _handed_out(client, execution)
            if handed_out or (
                served_at is not None and time.monotonic() - served_at < HANDED_OUT_WAIT
            ):
                time.sleep(WATCH_INTERVAL)
                continue
            assert instance is not None  # noqa: S101 - handed_out otherwise
            task = client.poll(activity_arn)
            if task is not None:
                outcome = client.process(instance, task)
                served_at = time.monotonic()
                logger.info("task %s: %s", task.token_prefix, type(outcome).__name__.lower())
    finally:
        sfn.delete_state_machine(stateMachineArn=machine)


def _handed_out(client: ActivityClient, execution: str) -> bool:
    """Whether the execution's task was handed to a worker: its history shows it started."""
    events = client.client.get_execution_history(
        executionArn=execution, maxResults=100, reverseOrder=True
    )["events"]
    return any(event["type"] == "ActivityStarted" for event in events)
