"""Delivering an outcome: retried until taken, dropped when the task is gone."""

from __future__ import annotations

import logging
import multiprocessing
from typing import TYPE_CHECKING

import pytest
from botocore.stub import ANY

from activities import RetryPolicy
from activities.errors import ServiceError, TaskGone, Throttled
from activities.outcome import Cancelled, Failure, Success
from activities.task import Task
from activities.worker import _delivery
from activities.worker._control import Flag
from activities.worker._delivery import BackgroundDelivery, deliver

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


def test_a_failure_of_a_task_whose_outcome_was_sent_is_no_news_when_refused(
    stubbed: tuple[ActivityClient, Stubber], give_up: Flag, caplog: pytest.LogCaptureFixture
) -> None:
    """The worker fails a task its dead process was reporting: "closed" means it landed."""
    client, stubber = stubbed
    stubber.add_client_error("send_task_failure", service_error_code="TaskTimedOut")
    failure = Failure("activities.WorkerCrashed", "its process died")
    with caplog.at_level(logging.INFO):
        assert not deliver(client, TASK, failure, give_up=give_up, sent=True)
    [record] = [r for r in caplog.records if "closed already" in r.getMessage()]
    assert record.levelno == logging.INFO
    assert "closed by Step Functions before its outcome arrived" not in caplog.text


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


ORIGINAL_PAUSE = RetryPolicy.pause


class Waits:
    """Stands in for the give-up flag: counts the pauses instead of sleeping them."""

    def __init__(self, *, set_: bool = False) -> None:
        self.waited: list[float] = []
        self._set = set_

    def is_set(self) -> bool:
        return self._set

    def wait(self, timeout: float) -> bool:
        self.waited.append(timeout)
        return self._set


class FailsFirst:
    """A client whose first ``failures`` outcomes raise ``error``; the next is taken."""

    retry = RetryPolicy()

    def __init__(self, error: Exception, failures: int) -> None:
        self.calls = 0
        self._error = error
        self._failures = failures

    def send_outcome(self, token: str, outcome: object, *, attempts: int | None = None) -> None:
        self.calls += 1
        if self.calls <= self._failures:
            raise self._error


UNAVAILABLE = ServiceError(
    "SendTaskSuccess: ServiceUnavailable: down", code="ServiceUnavailable", operation="x"
)


def test_an_outage_of_thousands_of_attempts_keeps_pausing_until_delivered(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """1,100 failures in a row (hours at the cap) still pause, then the outcome is taken."""
    monkeypatch.setattr(RetryPolicy, "pause", ORIGINAL_PAUSE)
    client, waits = FailsFirst(UNAVAILABLE, 1_100), Waits()
    assert deliver(client, TASK, Success("1"), give_up=waits)  # type: ignore[arg-type]
    assert client.calls == 1_101
    assert len(waits.waited) == 1_100
    assert all(0 <= pause <= client.retry.cap for pause in waits.waited)


def test_errors_that_pass_are_debug_lines_until_an_outcome_fails_a_minute(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The outage watch says a silence of every call; one call failing alone says itself."""
    clock = iter(range(0, 10_000, 20))  # each attempt 20 s after the one before
    monkeypatch.setattr(_delivery.time, "monotonic", lambda: float(next(clock)))
    passes = ServiceError(
        "SendTaskSuccess: 502", code="502", operation="SendTaskSuccess", transient=True
    )
    client = FailsFirst(passes, 5)
    with caplog.at_level(logging.DEBUG, "activities.worker._delivery"):
        assert deliver(client, TASK, Success("1"), give_up=Waits())  # type: ignore[arg-type]
    levels = [record.levelno for record in caplog.records if "not delivered" in record.message]
    # Failing since 0 s: 0, 20 and 40 s are quiet; 60 and 80 s are said.
    assert levels == [logging.DEBUG] * 3 + [logging.WARNING] * 2


def test_an_unexpected_error_is_retried_with_pauses_and_logged_once_with_its_traceback(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Not Step Functions' answer: the outcome is not dropped, the thread does not die."""
    client, waits = FailsFirst(RuntimeError("a bug"), 3), Waits()
    with caplog.at_level(logging.DEBUG, "activities.worker._delivery"):
        assert deliver(client, TASK, Success("1"), give_up=waits)  # type: ignore[arg-type]
    assert client.calls == 4
    assert len(waits.waited) == 3, "a pause before each new attempt"
    errors = [record for record in caplog.records if record.levelno == logging.ERROR]
    assert len(errors) == 1
    assert errors[0].exc_info is not None
    warnings = [record for record in caplog.records if record.levelno == logging.WARNING]
    assert len(warnings) == 2
    assert all("a bug" in record.getMessage() for record in warnings)


def test_an_unexpected_error_at_an_immediate_stop_gives_up_with_its_traceback(
    caplog: pytest.LogCaptureFixture,
) -> None:
    client = FailsFirst(RuntimeError("a bug"), 1)
    assert not deliver(client, TASK, Success("1"), give_up=Waits(set_=True))  # type: ignore[arg-type]
    assert client.calls == 1
    (record,) = [record for record in caplog.records if record.levelno == logging.ERROR]
    assert "giving up" in record.getMessage()
    assert record.exc_info is not None


def test_a_background_delivery_survives_an_unexpected_error(give_up: Flag) -> None:
    client = FailsFirst(RuntimeError("a bug"), 2)
    background = BackgroundDelivery(client, give_up)  # type: ignore[arg-type]
    background.send(TASK, Success("1"))
    assert background.wait(timeout=10)
    assert client.calls == 3, "retried until taken"


class TestErrorsThatDoNotPass:
    """AccessDenied (a policy without states:SendTaskSuccess), a bug: retried, then given up."""

    @pytest.fixture(autouse=True)
    def short_window(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setattr(_delivery, "PERSISTENT_ERROR_WINDOW", 0.0)

    def test_access_denied_is_given_up_after_its_attempts_and_said(
        self,
        stubbed: tuple[ActivityClient, Stubber],
        give_up: Flag,
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        client, stubber = stubbed
        for _ in range(_delivery.PERSISTENT_ERROR_ATTEMPTS):
            stubber.add_client_error(
                "send_task_success",
                service_error_code="AccessDeniedException",
                http_status_code=400,
            )
        assert not deliver(client, TASK, Success("1"), give_up=give_up)
        given_up = [record for record in caplog.records if "given up" in record.getMessage()]
        assert len(given_up) == 1
        assert given_up[0].levelno == logging.ERROR
        message = given_up[0].getMessage()
        assert f"{_delivery.PERSISTENT_ERROR_ATTEMPTS} attempts" in message
        assert "AccessDeniedException" in message
        assert TASK.token_prefix in message

    def test_a_bug_is_given_up_too(self, give_up: Flag, caplog: pytest.LogCaptureFixture) -> None:
        calls = []

        class Broken:
            retry = RetryPolicy()

            def send_outcome(self, *_: object, **__: object) -> None:
                calls.append(1)
                msg = "a bug"
                raise RuntimeError(msg)

        assert not deliver(Broken(), TASK, Success("1"), give_up=give_up)  # type: ignore[arg-type]
        assert len(calls) == _delivery.PERSISTENT_ERROR_ATTEMPTS
        assert "outcome given up" in caplog.text

    def test_errors_that_pass_are_retried_past_the_window(
        self, stubbed: tuple[ActivityClient, Stubber], give_up: Flag
    ) -> None:
        client, stubber = stubbed
        for _ in range(_delivery.PERSISTENT_ERROR_ATTEMPTS * 2):
            stubber.add_client_error(
                "send_task_success", service_error_code="ServiceUnavailable", http_status_code=503
            )
        stubber.add_response("send_task_success", {}, SUCCESS)
        assert deliver(client, TASK, Success("1"), give_up=give_up)

    def test_the_window_holds_a_few_attempts_open(
        self,
        stubbed: tuple[ActivityClient, Stubber],
        give_up: Flag,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        """Inside the window, an error that does not pass is still retried: a fix may land."""
        monkeypatch.setattr(_delivery, "PERSISTENT_ERROR_WINDOW", 3600.0)
        client, stubber = stubbed
        for _ in range(_delivery.PERSISTENT_ERROR_ATTEMPTS + 2):
            stubber.add_client_error(
                "send_task_success",
                service_error_code="AccessDeniedException",
                http_status_code=400,
            )
        stubber.add_response("send_task_success", {}, SUCCESS)
        assert deliver(client, TASK, Success("1"), give_up=give_up)
