"""One task through Step Functions (activities._cli.invoke): served here, and the end awaited."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import pytest
from botocore.stub import ANY

from activities import Activity, ActivityClient
from activities._cli import invoke as invoke_module
from activities._cli.invoke import invoke

if TYPE_CHECKING:
    from botocore.stub import Stubber

ARN = "arn:aws:states:us-east-1:123456789012:activity:Double"
MACHINE = "arn:aws:states:us-east-1:123456789012:stateMachine:m"
EXECUTION = "arn:aws:states:us-east-1:123456789012:execution:m:e"
DATE = {"creationDate": "2026-01-01T00:00:00Z"}
START = {"startDate": "2026-01-01T00:00:00Z"}


class Double(Activity):
    def run(self, value: int) -> int:
        return value * 2


class SecondPollOpened(AssertionError):
    """A poll was opened after the execution's task had been served."""


class LaggingStepFunctions:
    """One execution of one Task state, which Step Functions reports ended a little late.

    As a real endpoint may: after the task's outcome is sent, ``DescribeExecution`` says
    RUNNING ``lag`` more times, and the history shows the task started only ``lag``
    reads after it was handed out. ``stale`` tasks of other executions wait in the queue
    before the execution's own. A poll that finds the queue empty would wait 60 s for a task
    that never comes: it raises instead, so that a test fails at once rather than waits.
    """

    def __init__(self, *, lag: int, stale: int = 0) -> None:
        self.lag = lag
        self.queue = [
            (f"stale-{n}-" + "x" * 20, json.dumps({"value": 100 + n})) for n in range(stale)
        ]
        self.queue.append(("ours-" + "x" * 20, json.dumps({"value": 21})))
        self.polls = 0
        self.outputs: dict[str, str] = {}
        self.ended_describes = 0  # RUNNING answers left once the execution's task is done
        self.started_reads: int | None = None  # history reads before ActivityStarted shows
        self.deleted = False

    def create_state_machine(self, **_: Any) -> dict[str, Any]:
        return {"stateMachineArn": MACHINE, **DATE}

    def start_execution(self, **_: Any) -> dict[str, Any]:
        return {"executionArn": EXECUTION, **START}

    def delete_state_machine(self, **_: Any) -> dict[str, Any]:
        self.deleted = True
        return {}

    def get_activity_task(self, **_: Any) -> dict[str, Any]:
        self.polls += 1
        if not self.queue:
            raise SecondPollOpened
        token, data = self.queue.pop(0)
        if token.startswith("ours-"):
            self.started_reads = self.lag
        return {"taskToken": token, "input": data}

    def send_task_success(self, taskToken: str, output: str) -> dict[str, Any]:  # noqa: N803 - boto3's names
        self.outputs[taskToken] = output
        if taskToken.startswith("ours-"):
            self.ended_describes = self.lag
        return {}

    def describe_execution(self, **_: Any) -> dict[str, Any]:
        ours = next((output for token, output in self.outputs.items() if "ours" in token), None)
        description = {"executionArn": EXECUTION, "stateMachineArn": MACHINE, **START}
        if ours is None or self.ended_describes > 0:
            self.ended_describes -= ours is not None
            return {**description, "status": "RUNNING"}
        return {**description, "status": "SUCCEEDED", "output": ours}

    def get_execution_history(self, **_: Any) -> dict[str, Any]:
        events = [{"type": "ExecutionStarted"}, {"type": "ActivityScheduled"}]
        if self.started_reads is not None:
            if self.started_reads <= 0:
                events.append({"type": "ActivityStarted"})
            self.started_reads -= 1
        return {"events": events[::-1]}


@pytest.fixture(autouse=True)
def quick_watch(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(invoke_module, "WATCH_INTERVAL", 0.001)


class TestServedHere:
    @pytest.mark.parametrize("lag", [0, 1, 5])
    def test_no_poll_after_the_task_was_served(self, lag: int) -> None:
        """The execution still reported running after the outcome was sent opens no poll
        (one would wait its full 60 s): the outcome is returned when the execution ends."""
        sfn = LaggingStepFunctions(lag=lag)
        client = ActivityClient(sfn, worker_name="test-worker")  # type: ignore[arg-type]
        ended = invoke(client, ARN, '{"value": 21}', role_arn="arn:r", timeout=60, serve=Double)
        assert (ended.status, ended.output) == ("SUCCEEDED", "42")
        assert sfn.polls == 1
        assert sfn.deleted

    def test_another_executions_task_is_served_and_the_poll_goes_on(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A task of another execution of the activity is run as a worker would; then the
        execution's own task, whose hand-out its history has not shown, is polled for."""
        monkeypatch.setattr(invoke_module, "HANDED_OUT_WAIT", 0)
        sfn = LaggingStepFunctions(lag=0, stale=1)
        client = ActivityClient(sfn, worker_name="test-worker")  # type: ignore[arg-type]
        ended = invoke(client, ARN, '{"value": 21}', role_arn="arn:r", timeout=60, serve=Double)
        assert (ended.status, ended.output) == ("SUCCEEDED", "42")
        assert sfn.polls == 2
        assert sfn.outputs == {"stale-0-" + "x" * 20: "200", "ours-" + "x" * 20: "42"}


class Unprintable(Exception):
    def __str__(self) -> str:
        return self.missing  # type: ignore[attr-defined, no-any-return]


class RaisesUnprintable(Activity):
    def run(self) -> None:
        raise Unprintable


def test_a_task_whose_error_cannot_be_printed_is_failed(
    stubbed: tuple[ActivityClient, Stubber],
) -> None:
    """Serving here sends the failure, named by the exception's class, instead of hanging."""
    client, stubber = stubbed
    running = {
        "executionArn": EXECUTION,
        "stateMachineArn": MACHINE,
        "status": "RUNNING",
        "startDate": "2026-01-01T00:00:00Z",
    }
    scheduled = {"id": 2, "timestamp": "2026-01-01T00:00:00Z", "type": "ActivityScheduled"}
    started = {**scheduled, "id": 3, "type": "ActivityStarted"}
    stubber.add_response("create_state_machine", {"stateMachineArn": MACHINE, **DATE})
    stubber.add_response("start_execution", {"executionArn": EXECUTION, **START})
    stubber.add_response("describe_execution", running)
    stubber.add_response("get_execution_history", {"events": [scheduled]})
    stubber.add_response("get_activity_task", {"taskToken": "t" * 10, "input": "{}"})
    stubber.add_response(
        "send_task_failure", {}, {"taskToken": "t" * 10, "error": "Unprintable", "cause": ANY}
    )
    stubber.add_response("describe_execution", running)
    stubber.add_response("get_execution_history", {"events": [started, scheduled]})
    failed = {**running, "status": "FAILED", "error": "Unprintable", "cause": "..."}
    stubber.add_response("describe_execution", failed)
    stubber.add_response("delete_state_machine", {})
    ended = invoke(client, ARN, "{}", role_arn="arn:r", timeout=60, serve=RaisesUnprintable)
    assert (ended.status, ended.error) == ("FAILED", "Unprintable")
