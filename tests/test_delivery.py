"""Delivering an outcome: retried until taken, dropped when the task is gone."""

from __future__ import annotations

import multiprocessing
from typing import TYPE_CHECKING

import pytest
from botocore.stub import ANY

from activities import RetryPolicy
from activities._control import Flag
from activities._delivery import BackgroundDelivery, deliver
from activities.errors import ServiceError, TaskGone, Throttled
from activities.outcome import Cancelled, Failure, Success
from activities.task import Task

if TYPE_CHECKING:
    from botocore.stub import Stubber

    from activities import ActivityClient

TOKEN = "AAAA-token-" + "t" * 100
TASK = Task(
    token=TOKEN, activity_arn="arn:aws:states:us-east-1:1:activity:Echo", worker_name="w", input=""
)
SUCCESS = {"taskToken": TOKEN, "output": "1"}


@pytest.fixture(autouse=True)
def no_pause(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(RetryPolicy, "pause", lambda *_: 0.0)


@pytest.fixture
def give_up() -> Flag:
    return Flag(multiprocessing.get_context("spawn"))


def test_service_errors_are_retried_until_the_outcome_is_taken(
    stubbed: tuple[ActivityClient, Stubber], give_up: Flag
) -> None:
    client, stubber = stubbed
    stubber.add_client_error("send_task_success", service_error_code="ServiceUnavailable")
    stubber.add_client_error("send_task_success", service_error_code="InternalFailure")
    stubber.add_response("send_task_success", {}, SUCCESS)
    assert deliver(client, TASK, Success("1"), give_up=give_up)


def test_an_outcome_of_a_gone_task_is_dropped(
    stubbed: tuple[ActivityClient, Stubber], give_up: Flag, caplog: pytest.LogCaptureFixture
) -> None:
    client, stubber = stubbed
    stubber.add_client_error("send_task_success", service_error_code="TaskTimedOut")
    assert not deliver(client, TASK, Success("1"), give_up=give_up)
    assert "closed by Step Functions before its outcome arrived" in caplog.text


def test_a_refused_output_becomes_a_serialization_error(
    stubbed: tuple[ActivityClient, Stubber], give_up: Flag
) -> None:
    """The task fails at once rather than hang until its timeout."""
    client, stubber = stubbed
    stubber.add_client_error("send_task_success", service_error_code="InvalidOutput")
    stubber.add_response(
        "send_task_failure",
        {},
        {"taskToken": TOKEN, "error": "activities.SerializationError", "cause": ANY},
    )
    assert deliver(client, TASK, Success("1"), give_up=give_up)


def test_after_giving_up_an_outcome_gets_one_more_attempt(
    stubbed: tuple[ActivityClient, Stubber], give_up: Flag
) -> None:
    client, stubber = stubbed
    give_up.set()
    stubber.add_client_error("send_task_failure", service_error_code="ServiceUnavailable")
    assert not deliver(client, TASK, Failure("Custom.Error", ""), give_up=give_up)


def test_a_cancelled_task_sends_nothing(
    stubbed: tuple[ActivityClient, Stubber], give_up: Flag
) -> None:
    client, _ = stubbed
    assert not deliver(client, TASK, Cancelled("gone"), give_up=give_up)


def test_background_deliveries_are_waited_for(
    stubbed: tuple[ActivityClient, Stubber], give_up: Flag
) -> None:
    client, stubber = stubbed
    stubber.add_response(
        "send_task_failure", {}, {"taskToken": TOKEN, "error": "Custom.Error", "cause": ""}
    )
    background = BackgroundDelivery(client, give_up)
    background.send(TASK, Failure("Custom.Error", ""))
    assert background.wait(timeout=10)


class Unanswered:
    """A client whose first outcome gets no answer, and whose second finds the task gone."""

    retry = RetryPolicy()

    def __init__(self, first: Exception) -> None:
        self.calls: list[str] = []
        self._first = first

    def send_outcome(self, token: str, outcome: object, *, attempts: int | None = None) -> None:
        self.calls.append(token)
        if len(self.calls) == 1:
            raise self._first
        raise TaskGone(
            "SendTaskSuccess: TaskDoesNotExist: gone",
            code="TaskDoesNotExist",
            operation="SendTaskSuccess",
        )


def test_gone_after_an_unanswered_attempt_says_it_may_have_been_delivered(
    give_up: Flag, caplog: pytest.LogCaptureFixture
) -> None:
    timed_out = ServiceError(
        "SendTaskSuccess: ReadTimeoutError: read timeout",
        code="ReadTimeoutError",
        operation="SendTaskSuccess",
    )
    client = Unanswered(timed_out)
    assert not deliver(client, TASK, Success("1"), give_up=give_up)  # type: ignore[arg-type]
    assert len(client.calls) == 2
    assert "an earlier attempt of its outcome, unanswered or retried, may have" in caplog.text
    assert "closed by Step Functions before its outcome arrived" not in caplog.text


def test_gone_after_a_throttled_attempt_is_closed_before_it_arrived(
    give_up: Flag, caplog: pytest.LogCaptureFixture
) -> None:
    """A throttled call was refused, not lost: the task was closed before the outcome came."""
    throttled = Throttled(
        "SendTaskSuccess: ThrottlingException: slow down",
        code="ThrottlingException",
        operation="SendTaskSuccess",
    )
    assert not deliver(Unanswered(throttled), TASK, Success("1"), give_up=give_up)  # type: ignore[arg-type]
    assert "closed by Step Functions before its outcome arrived" in caplog.text
    assert "may have delivered" not in caplog.text


def test_gone_after_botocores_own_retries_may_have_been_delivered(
    stubbed: tuple[ActivityClient, Stubber], give_up: Flag, caplog: pytest.LogCaptureFixture
) -> None:
    client, stubber = stubbed
    stubber.add_client_error(
        "send_task_success",
        service_error_code="TaskDoesNotExist",
        response_meta={"RetryAttempts": 1},
    )
    assert not deliver(client, TASK, Success("1"), give_up=give_up)
    assert "may have delivered it" in caplog.text
