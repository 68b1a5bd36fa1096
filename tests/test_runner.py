"""The runner, through activities.testing: every way a task can end; and process()."""

from __future__ import annotations

import contextlib
import json
import logging
from typing import TYPE_CHECKING, Any

import botocore.exceptions
import pytest
from botocore.stub import ANY

from activities import (
    Activity,
    ActivityError,
    Cancelled,
    Failure,
    InvalidInput,
    RetryPolicy,
    ServiceError,
    Success,
    TaskCancelled,
    TaskGone,
    _runner,
)
from activities._runner import execute
from activities.task import Task
from activities.testing import ActivityEnvironment

if TYPE_CHECKING:
    from collections.abc import Generator

    from botocore.stub import Stubber

    from activities import ActivityClient
    from activities.outcome import Outcome


class Echo(Activity):
    def run(self, value: Any) -> Any:
        return value


class Count(Activity):
    def run(self, n: int) -> Generator[int, None, int]:
        yield from range(n)
        return n


class Explicit(Activity):
    def run(self, n: int) -> int:
        for _ in range(n):
            self.heartbeat()
        return n


class NotFound(ActivityError):
    error = "NotFound"


def cause_of(report: Any) -> dict[str, Any]:
    return json.loads(report.cause)  # type: ignore[no-any-return]


class TestInput:
    def test_echo_round_trip(self, env: ActivityEnvironment) -> None:
        """The Echo of the README returns its input's value."""
        report = env.run(Echo, '{"value": {"nested": [1, "two"]}}')
        assert report.succeeded
        assert report.result == {"nested": [1, "two"]}

    @pytest.mark.parametrize(
        ("data", "message"),
        [
            ("not json", "not valid for JSONTransport"),
            ('{"valeu": 1}', "unexpected keyword arguments: 'valeu'"),
            ("[1, 2]", "too many positional arguments"),
            ("{}", "missing a required argument: 'value'"),
        ],
    )
    def test_bad_input_is_invalid_input(
        self, env: ActivityEnvironment, data: str, message: str
    ) -> None:
        """Input that is not JSON or does not fit run() fails as activities.InvalidInput."""
        report = env.run(Echo, data)
        assert report.error == "activities.InvalidInput"
        assert message in cause_of(report)["errorMessage"]

    def test_typed_input_that_does_not_fit_is_invalid_input(self, env: ActivityEnvironment) -> None:
        """cattrs' detail reaches the cause."""
        report = env.run(Count, '{"n": "3"}')
        assert report.error == "activities.InvalidInput"
        assert "argument 'n' does not fit int" in cause_of(report)["errorMessage"]

    def test_huge_input_is_handled(self, env: ActivityEnvironment) -> None:
        """A megabyte of input (newer limits allow it) is decoded, not refused."""
        big = "x" * 1_048_576
        report = env.run(Echo, json.dumps({"value": big[:200_000]}))
        assert report.result == big[:200_000]
        assert env.run(Count, json.dumps({"n": big})).error == "activities.InvalidInput"

    def test_custom_deserializer_errors_are_invalid_input(self, env: ActivityEnvironment) -> None:
        """An override of _deserialize_arguments that raises fails the task as InvalidInput."""

        class Strict(Echo):
            def _deserialize_arguments(self, data: str) -> tuple[tuple[Any, ...], dict[str, Any]]:
                raise ValueError("only XML here")

        report = env.run(Strict, "{}")
        assert report.error == "activities.InvalidInput"
        assert cause_of(report)["errorMessage"] == "only XML here"

    def test_custom_deserializer_may_choose_its_error(self, env: ActivityEnvironment) -> None:
        """An ActivityError from _deserialize_arguments keeps its own name."""

        class Picky(Echo):
            def _deserialize_arguments(self, data: str) -> tuple[tuple[Any, ...], dict[str, Any]]:
                raise NotFound("no such order")

        assert env.run(Picky, "{}").error == "NotFound"


class TestFailures:
    def test_exception_class_name_is_the_error(self, env: ActivityEnvironment) -> None:
        """ErrorEquals: ["ValueError"] catches a ValueError."""

        class Fails(Activity):
            def run(self) -> None:
                raise ValueError("bad value")

        report = env.run(Fails)
        assert report.error == "ValueError"
        assert cause_of(report)["errorMessage"] == "bad value"
        assert cause_of(report)["errorType"] == "ValueError"

    @pytest.mark.parametrize("generator", [False, True])
    def test_stack_trace_starts_in_user_code(
        self, env: ActivityEnvironment, generator: bool
    ) -> None:
        """The framework's own frames are not in the cause: the first frame is run()'s."""

        def fail() -> None:
            raise KeyError("k")

        class Plain(Activity):
            def run(self) -> None:
                fail()

        class Generating(Activity):
            def run(self) -> Generator[None, None, None]:
                yield
                fail()

        stack = cause_of(env.run(Generating if generator else Plain))["stackTrace"]
        assert "in run" in stack[0]
        assert "in fail" in stack[-1]
        assert not any(_runner.__file__ in frame for frame in stack)

    def test_activity_error_names_the_failure(self, env: ActivityEnvironment) -> None:
        """A subclass of ActivityError reports its error attribute."""

        class Missing(Activity):
            def run(self) -> None:
                raise NotFound("order 7")

        assert env.run(Missing).error == "NotFound"

    def test_megabyte_exception_messages_fit(self, env: ActivityEnvironment) -> None:
        """An exception with a huge message still gives a sendable failure."""

        class Loud(Activity):
            def run(self) -> None:
                raise RuntimeError("y" * 5_000_000)

        report = env.run(Loud)
        assert report.error == "RuntimeError"
        assert len(report.cause or "") <= 32_768
        assert "truncated" in cause_of(report)["errorMessage"]

    def test_unserializable_result_is_serialization_error(self, env: ActivityEnvironment) -> None:
        """A result JSON cannot hold fails the task instead of hanging it."""

        class Odd(Activity):
            def run(self) -> object:
                return object()

        report = env.run(Odd)
        assert report.error == "activities.SerializationError"
        assert "result of type object cannot be serialized" in cause_of(report)["errorMessage"]

    def test_oversized_result_is_result_too_large(self, env: ActivityEnvironment) -> None:
        """A result over 256 KiB fails with a name Catch can match, not States.DataLimitExceeded."""

        class Big(Activity):
            def run(self) -> str:
                return "z" * 300_000

        report = env.run(Big)
        assert report.error == "activities.ResultTooLarge"
        assert "262,144 bytes" in cause_of(report)["errorMessage"]

    def test_custom_serializer_errors_are_serialization_errors(
        self, env: ActivityEnvironment
    ) -> None:
        """An override of _serialize_result that raises is reported, not crashed on."""

        class Broken(Echo):
            def _serialize_result(self, result: Any) -> str:
                raise RuntimeError("disk full")

        report = env.run(Broken, "[1]")
        assert report.error == "activities.SerializationError"
        assert "disk full" in cause_of(report)["errorMessage"]


class TestHeartbeats:
    def test_every_yield_is_a_heartbeat(self, env: ActivityEnvironment) -> None:
        """A generator's yields send heartbeats; its return value is the result."""
        report = env.run(Count, '{"n": 4}')
        assert (report.result, report.heartbeats) == (4, 4)

    def test_explicit_heartbeats(self, env: ActivityEnvironment) -> None:
        """self.heartbeat() sends one each call."""
        report = env.run(Explicit, '{"n": 3}')
        assert (report.result, report.heartbeats) == (3, 3)

    @pytest.mark.parametrize("activity", [Count, Explicit])
    def test_cancellation_stops_the_work_and_sends_nothing(self, activity: type[Activity]) -> None:
        """When the task is gone, TaskCancelled ends run() and no outcome is sent."""
        report = ActivityEnvironment(cancel_after_heartbeats=2).run(activity, '{"n": 10}')
        assert report.cancelled
        assert report.heartbeats == 2
        assert report.error is None

    def test_generator_yielding_after_cancellation(self) -> None:
        """A generator swallowing TaskCancelled gets it again at each yield, and ends cancelled."""
        seen: list[int] = []

        class Stubborn(Activity):
            def run(self) -> Generator[None, None, str]:
                for i in range(5):
                    try:
                        yield
                    except TaskCancelled:
                        seen.append(i)
                return "finished anyway"

        report = ActivityEnvironment(cancel_after_heartbeats=1).run(Stubborn)
        assert report.cancelled
        assert seen == [1, 2, 3, 4]
        assert report.heartbeats == 1

    def test_swallowed_cancellation_still_sends_nothing(self) -> None:
        """run() that catches TaskCancelled and returns does not resurrect the task."""

        class Ignores(Activity):
            def run(self) -> str:
                with contextlib.suppress(TaskCancelled):
                    self.heartbeat()
                return "done"

        assert ActivityEnvironment(cancel_after_heartbeats=0).run(Ignores).cancelled

    def test_heartbeat_errors_other_than_gone_do_not_fail_the_task(
        self, caplog: pytest.LogCaptureFixture
    ) -> None:
        """A network blip on a heartbeat is logged and the work goes on."""

        def flaky() -> None:
            raise ServiceError("blip", code="InternalFailure", operation="SendTaskHeartbeat")

        task = Task(token="t" * 20, activity_arn="arn", worker_name="w", input='{"n": 2}')
        with caplog.at_level(logging.WARNING):
            outcome = execute(Count(), task, flaky)
        assert outcome.output == "2"  # type: ignore[union-attr]
        assert "heartbeat for task tttttttttttt failed" in caplog.text
        # Step Functions' answer, retried by the client already: said in one line.
        assert all(record.exc_info is None for record in caplog.records)
        assert "blip" in caplog.text

    def test_a_bug_in_a_heartbeat_is_logged_with_its_traceback(
        self, caplog: pytest.LogCaptureFixture
    ) -> None:
        def broken() -> None:
            raise RuntimeError("a bug")

        task = Task(token="t" * 20, activity_arn="arn", worker_name="w", input='{"n": 2}')
        with caplog.at_level(logging.WARNING):
            execute(Count(), task, broken)
        assert any(record.exc_info is not None for record in caplog.records)

    def test_gone_on_heartbeat_is_cancelled(self) -> None:
        """TaskGone from the client becomes TaskCancelled in the activity."""

        def gone() -> None:
            raise TaskGone("gone", code="InvalidToken", operation="SendTaskHeartbeat")

        task = Task(token="t", activity_arn="arn", worker_name="w", input='{"n": 2}')
        assert isinstance(execute(Explicit(), task, gone), Cancelled)

    def test_invalid_input_is_reported_before_run_starts(self, env: ActivityEnvironment) -> None:
        """No heartbeat is sent for a task whose input does not bind."""
        report = env.run(Count, '{"m": 1}')
        assert report.error == InvalidInput.error
        assert report.heartbeats == 0


ARN = "arn:aws:states:us-east-1:123456789012:activity:Echo"
TOKEN = "AAAA-token-" + "t" * 100


class Clock:
    """``time.monotonic`` for :mod:`activities._runner`: ``step`` seconds later at each look."""

    def __init__(self, step: float) -> None:
        self.now = 1000.0
        self.step = step

    def monotonic(self) -> float:
        self.now += self.step
        return self.now


def clock(monkeypatch: pytest.MonkeyPatch, step: float) -> None:
    monkeypatch.setattr(_runner, "time", Clock(step))


class Heartbeats:
    def __init__(self) -> None:
        self.sent: list[str] = []

    def send_heartbeat(self, token: str) -> None:
        self.sent.append(token)

    def send_outcome(self, token: str, outcome: Outcome) -> None:
        pass


class TestProcessHeartbeats:
    """process() heartbeats at yields when one is due, at the activity's cadence."""

    def test_a_yield_between_two_due_times_sends_nothing(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """10 yields 4 s apart, the default cadence of 10 s: due at 10 s, then 10 s after each."""
        clock(monkeypatch, 4)  # made at 4 s: yields at 8, 12 (sent), 16, 20, 24 (sent), ...
        client = Heartbeats()
        task = Task(token="t", activity_arn=ARN, worker_name="w", input='{"n": 10}')
        assert _runner.process(client, Count(), task) == Success("10")
        assert client.sent == ["t"] * 3  # at 12, 24, 36 s of 40

    def test_a_third_of_heartbeat_seconds(self, monkeypatch: pytest.MonkeyPatch) -> None:
        class Declared(Count):
            heartbeat_seconds = 9  # a heartbeat every 3 s: each yield 4 s apart sends

        clock(monkeypatch, 4)
        client = Heartbeats()
        task = Task(token="t", activity_arn=ARN, worker_name="w", input='{"n": 10}')
        _runner.process(client, Declared(), task)
        assert len(client.sent) == 10

    def test_a_task_that_ends_before_its_first_due_time_sends_none(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        clock(monkeypatch, 0.001)
        client = Heartbeats()
        task = Task(token="t", activity_arn=ARN, worker_name="w", input='{"n": 100}')
        _runner.process(client, Count(), task)
        assert client.sent == []


class TestProcess:
    """process(): a task run, then its outcome sent (``ActivityClient.process``)."""

    def test_heartbeat_timeout_cancels_without_sending(
        self, stubbed: tuple[ActivityClient, Stubber], monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """After TaskTimedOut on a heartbeat, no success or failure is sent."""
        clock(monkeypatch, 60)  # every yield is a cadence after the one before
        client, stubber = stubbed
        task = Task(token=TOKEN, activity_arn=ARN, worker_name="w", input='{"n": 5}')
        stubber.add_client_error("send_task_heartbeat", service_error_code="TaskTimedOut")
        assert isinstance(_runner.process(client, Count(), task), Cancelled)

    def test_refused_output_fails_the_task_instead_of_hanging_it(
        self, stubbed: tuple[ActivityClient, Stubber]
    ) -> None:
        """A transport writing what Step Functions refuses still ends the task, as a failure."""

        class NotJSON(Echo):
            def _serialize_result(self, result: Any) -> str:
                return "not json"

        client, stubber = stubbed
        stubber.add_client_error("send_task_success", service_error_code="InvalidOutput")
        stubber.add_response(
            "send_task_failure",
            {},
            {"taskToken": TOKEN, "error": "activities.SerializationError", "cause": ANY},
        )
        task = Task(token=TOKEN, activity_arn=ARN, worker_name="w", input="[1]")
        outcome = _runner.process(client, NotJSON(), task)
        assert isinstance(outcome, Failure)
        assert "refused the output" in outcome.cause

    def test_an_exception_whose_str_raises_fails_with_its_own_name(
        self, stubbed: tuple[ActivityClient, Stubber]
    ) -> None:
        """str() raising inside the exception sends the failure anyway, named by its class."""

        class Unprintable(Exception):
            def __str__(self) -> str:
                return self.missing  # type: ignore[attr-defined, no-any-return]

        class Raises(Activity):
            def run(self) -> None:
                raise Unprintable

        client, stubber = stubbed
        stubber.add_response(
            "send_task_failure", {}, {"taskToken": TOKEN, "error": "Unprintable", "cause": ANY}
        )
        task = Task(token=TOKEN, activity_arn=ARN, worker_name="w", input="")
        outcome = _runner.process(client, Raises(), task)
        assert isinstance(outcome, Failure)
        assert outcome.error == "Unprintable"
        assert json.loads(outcome.cause)["errorMessage"] == "<unprintable Unprintable object>"

    def test_outcome_refused_as_gone_is_cancelled(
        self, stubbed: tuple[ActivityClient, Stubber], caplog: pytest.LogCaptureFixture
    ) -> None:
        """A task closed while it ran is reported as Cancelled, with the client's warning."""
        client, stubber = stubbed
        task = Task(token=TOKEN, activity_arn=ARN, worker_name="w", input="[1]")
        stubber.add_client_error("send_task_success", service_error_code="TaskDoesNotExist")
        assert isinstance(_runner.process(client, Echo(), task), Cancelled)
        [record] = [each for each in caplog.records if "closed it" in each.getMessage()]
        assert record.name == "activities.client"
        assert "ended after Step Functions closed it" in record.getMessage()

    def test_gone_after_an_unanswered_attempt_is_not_called_dropped(
        self,
        stubbed: tuple[ActivityClient, Stubber],
        caplog: pytest.LogCaptureFixture,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        """The first attempt timed out waiting for its answer, the retry hears TaskTimedOut:
        the first may have delivered the outcome, so process() does not report it lost."""
        monkeypatch.setattr(RetryPolicy, "pause", lambda *_: 0.0)
        client, stubber = stubbed
        task = Task(token=TOKEN, activity_arn=ARN, worker_name="w", input="[1]")
        stubber.add_client_error("send_task_success", service_error_code="TaskTimedOut")
        calls = []
        send = client.client.send_task_success

        def timed_out_first(**kwargs: Any) -> Any:
            calls.append(kwargs)
            if len(calls) == 1:
                raise botocore.exceptions.ReadTimeoutError(endpoint_url="https://states")
            return send(**kwargs)

        monkeypatch.setattr(client.client, "send_task_success", timed_out_first)
        assert _runner.process(client, Echo(), task) == Success("1")
        assert len(calls) == 2
        assert "may have delivered it" in caplog.text
        assert "was dropped" not in caplog.text
