from __future__ import annotations

import json
import logging
import socket
from typing import TYPE_CHECKING, Any

import boto3
import botocore.config
import botocore.exceptions
import botocore.loaders
import botocore.session
import pytest
from botocore.awsrequest import AWSResponse
from botocore.retries import standard

from activities import (
    Activity,
    ActivityClient,
    ActivityDoesNotExist,
    Cancelled,
    Failure,
    InvalidOutput,
    ResultTooLarge,
    RetryPolicy,
    ServiceError,
    Success,
    Task,
    TaskGone,
    Throttled,
    default_worker_name,
    make_client,
)
from activities._aws.outage import ALONE_AFTER, Hearing
from activities._aws.retry import Pacer
from activities._aws.sfnclient import READ_TIMEOUT, set_call_timeout
from activities.local import free_port
from tests.test_runner import clock
from transport import CompressedTransport

if TYPE_CHECKING:
    from collections.abc import Generator

    from botocore.stub import Stubber

ARN = "arn:aws:states:us-east-1:123456789012:activity:Echo"
TOKEN = "AAAA-token-" + "t" * 100


def botocore_throttling_codes() -> list[str]:
    """The codes botocore's retries take for throttling, in standard mode and in legacy mode."""
    codes = set(standard.ThrottledRetryableChecker._THROTTLED_ERROR_CODES)
    retry = botocore.loaders.create_loader().load_data("_retry")
    for policy in retry["retry"]["__default__"]["policies"].values():
        response = retry["definitions"][policy["$ref"]]["applies_when"].get("response", {})
        if "service_error_code" in response:
            codes.add(response["service_error_code"])
    return sorted(codes)


#: Every code of throttling: botocore's, and Step Functions' own for too many polls.
THROTTLING_CODES = [*botocore_throttling_codes(), "ActivityWorkerLimitExceeded"]


@pytest.fixture(autouse=True)
def no_timers(monkeypatch: pytest.MonkeyPatch) -> None:
    """Throttled calls here are summed up now or never, not by a timer in a later test."""
    monkeypatch.setattr("activities._aws.retry._later", lambda delay, function: None)


class Echo(Activity):
    def run(self, value: Any) -> Any:
        return value


class Beats(Activity):
    def run(self, n: int) -> Generator[None, None, int]:
        for _ in range(n):
            yield
        return n


class TestMakeClient:
    def test_read_timeout_outlasts_the_long_poll(self) -> None:
        """The client waits longer than GetActivityTask's 60 s, so no task is abandoned."""
        config = make_client(region_name="us-east-1").meta.config
        assert READ_TIMEOUT >= 65
        assert config.read_timeout == READ_TIMEOUT
        assert config.retries == {"mode": "standard", "total_max_attempts": 1}, (
            "retried by ActivityClient"
        )

    def test_endpoint_from_the_environment(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """AWS_ENDPOINT_URL is honoured, as everywhere in boto3."""
        monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:4566")
        assert make_client(region_name="us-east-1").meta.endpoint_url == "http://127.0.0.1:4566"

    def test_aws_region_is_honoured(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """AWS_REGION, which botocore alone ignores, gives the Region when nothing else does."""
        monkeypatch.delenv("AWS_DEFAULT_REGION", raising=False)
        monkeypatch.delenv("AWS_PROFILE", raising=False)
        monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
        monkeypatch.setenv("AWS_REGION", "eu-central-1")
        assert make_client().meta.region_name == "eu-central-1"

    def test_explicit_endpoint_and_pool_size(self) -> None:
        """Arguments win over the environment."""
        client = make_client(
            endpoint_url="http://127.0.0.1:9", region_name="eu-west-1", max_pool_connections=32
        )
        assert client.meta.endpoint_url == "http://127.0.0.1:9"
        assert client.meta.region_name == "eu-west-1"
        assert client.meta.config.max_pool_connections == 32


class TestWorkerName:
    def test_default_fits_and_ends_with_the_pid(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """A very long host name is cut so that host-pid fits 80 characters."""
        monkeypatch.setattr("socket.gethostname", lambda: "h" * 200)
        monkeypatch.setattr("os.getpid", lambda: 4242)
        name = default_worker_name()
        assert len(name) == 80
        assert name.endswith("-4242")

    @pytest.mark.parametrize("name", ["", "w" * 81])
    def test_bad_worker_names_are_refused(self, name: str) -> None:
        """A workerName Step Functions would refuse fails at construction."""
        with pytest.raises(ValueError, match="worker_name"):
            ActivityClient(make_client(region_name="us-east-1"), worker_name=name)


class TestPoll:
    def test_a_task_comes_back_with_its_context(
        self, stubbed: tuple[ActivityClient, Stubber]
    ) -> None:
        """GetActivityTask is called with the worker name; the task carries what it said."""
        client, stubber = stubbed
        stubber.add_response(
            "get_activity_task",
            {"taskToken": TOKEN, "input": '{"value": 1}'},
            {"activityArn": ARN, "workerName": "test-worker"},
        )
        task = client.poll(ARN)
        assert task is not None
        assert (task.token, task.input, task.activity_arn, task.worker_name) == (
            TOKEN,
            '{"value": 1}',
            ARN,
            "test-worker",
        )

    def test_an_empty_poll_is_none(self, stubbed: tuple[ActivityClient, Stubber]) -> None:
        """No task within the long poll is None, not an error."""
        client, stubber = stubbed
        stubber.add_response(
            "get_activity_task", {}, {"activityArn": ARN, "workerName": "test-worker"}
        )
        assert client.poll(ARN) is None

    @pytest.mark.parametrize(
        ("code", "kind"),
        [
            ("ActivityDoesNotExist", ActivityDoesNotExist),
            ("ActivityWorkerLimitExceeded", Throttled),
            ("ThrottlingException", Throttled),
            ("InvalidArn", ServiceError),
        ],
    )
    def test_errors_are_mapped(
        self, stubbed: tuple[ActivityClient, Stubber], code: str, kind: type[ServiceError]
    ) -> None:
        """botocore's ClientError becomes the framework's type, keeping code and operation."""
        client, stubber = stubbed
        stubber.add_client_error("get_activity_task", service_error_code=code, service_message="no")
        with pytest.raises(kind) as info:
            client.poll(ARN, attempts=1)
        assert type(info.value) is kind
        assert (info.value.code, info.value.operation) == (code, "GetActivityTask")
        assert str(info.value) == f"GetActivityTask: {code}: no"
        assert info.value.transient is (kind is Throttled)


class TestThrottling:
    """Throttling is what botocore takes for it: its codes, and the HTTP status 429."""

    def test_the_issues_codes_and_429_are_botocores(self) -> None:
        """The list the tests check against holds what botocore holds, and 429."""
        assert {
            "Throttling",
            "ThrottlingException",
            "TooManyRequestsException",
            "RequestLimitExceeded",
        } <= set(THROTTLING_CODES)
        assert standard.ThrottlingStatusCodeChecker._THROTTLING_STATUS_CODES == [429]

    @pytest.mark.parametrize("code", THROTTLING_CODES)
    def test_each_code_is_throttling(
        self, stubbed: tuple[ActivityClient, Stubber], code: str
    ) -> None:
        """Through botocore: Throttled, a failure that passes, and the operation is paced."""
        client, stubber = stubbed
        stubber.add_client_error("send_task_heartbeat", service_error_code=code)
        client.retry = RetryPolicy(attempts=1)
        with pytest.raises(Throttled) as caught:
            client.send_heartbeat(TOKEN)
        assert caught.value.transient
        assert caught.value.code == code
        assert client.pacer.gap("SendTaskHeartbeat") > 0

    @pytest.mark.parametrize("code", ["429", "SomeProxysOwnCode", ""])
    def test_a_429_is_throttling_whatever_its_code(
        self, stubbed: tuple[ActivityClient, Stubber], code: str
    ) -> None:
        client, stubber = stubbed
        stubber.add_client_error(
            "send_task_heartbeat", service_error_code=code, http_status_code=429
        )
        client.retry = RetryPolicy(attempts=1)
        with pytest.raises(Throttled) as caught:
            client.send_heartbeat(TOKEN)
        assert caught.value.transient
        assert client.pacer.gap("SendTaskHeartbeat") > 0

    def test_another_4xx_is_not(self, stubbed: tuple[ActivityClient, Stubber]) -> None:
        """Not every refusal is throttling: a 400 of another code stays, and paces nothing."""
        client, stubber = stubbed
        stubber.add_client_error(
            "send_task_heartbeat", service_error_code="400", http_status_code=400
        )
        with pytest.raises(ServiceError) as caught:
            client.send_heartbeat(TOKEN)
        assert type(caught.value) is ServiceError
        assert not caught.value.transient
        assert client.pacer.gap("SendTaskHeartbeat") == 0


class TestNetworkErrors:
    def test_connection_errors_are_service_errors(self) -> None:
        """A refused connection (after botocore's retries) is a ServiceError naming it."""
        session = boto3.Session(
            aws_access_key_id="test", aws_secret_access_key="test", region_name="us-east-1"
        )
        sfn = session.client(
            "stepfunctions",
            endpoint_url=f"http://127.0.0.1:{free_port()}",
            config=botocore.config.Config(retries={"total_max_attempts": 1}),
        )
        client = ActivityClient(sfn, worker_name="w")
        with pytest.raises(ServiceError) as info:
            client.send_heartbeat(TOKEN)
        assert info.value.code == "EndpointConnectionError"
        assert info.value.operation == "SendTaskHeartbeat"


class TestSend:
    @pytest.mark.parametrize("code", ["TaskTimedOut", "TaskDoesNotExist", "InvalidToken"])
    def test_every_gone_code_is_task_gone(
        self, stubbed: tuple[ActivityClient, Stubber], code: str
    ) -> None:
        """The three ways Step Functions says 'this task is over' mean the same."""
        client, stubber = stubbed
        stubber.add_client_error("send_task_heartbeat", service_error_code=code)
        with pytest.raises(TaskGone):
            client.send_heartbeat(TOKEN)

    def test_success_is_encoded_by_the_transport(
        self, stubbed: tuple[ActivityClient, Stubber]
    ) -> None:
        """send_success applies the transport to a Python value."""
        client, stubber = stubbed
        transport = CompressedTransport(threshold=0)
        stubber.add_response(
            "send_task_success",
            {},
            {"taskToken": TOKEN, "output": transport.serialize_result([1, 2])},
        )
        client.send_success(TOKEN, [1, 2], transport=transport)

    def test_oversized_success_is_refused_before_any_call(
        self, stubbed: tuple[ActivityClient, Stubber]
    ) -> None:
        """A result over the limit raises at once; nothing is sent (the stub has nothing queued)."""
        client, _ = stubbed
        with pytest.raises(ResultTooLarge):
            client.send_success(TOKEN, "x" * 300_000)

    def test_failure_from_an_exception(self, stubbed: tuple[ActivityClient, Stubber]) -> None:
        """An exception is mapped the same way run()'s exceptions are."""
        client, stubber = stubbed
        error = KeyError("id")
        stubber.add_response(
            "send_task_failure",
            {},
            {
                "taskToken": TOKEN,
                "error": "KeyError",
                "cause": json.dumps(
                    {"errorMessage": "'id'", "errorType": "KeyError", "stackTrace": []}
                ),
            },
        )
        client.send_failure(TOKEN, error)

    def test_failure_is_fitted_to_the_limits(self, stubbed: tuple[ActivityClient, Stubber]) -> None:
        """A long error name and cause are cut before they reach the API."""
        client, stubber = stubbed
        failure = Failure("E" * 500, "c" * 50_000)
        stubber.add_response(
            "send_task_failure",
            {},
            {"taskToken": TOKEN, "error": failure.error, "cause": failure.cause},
        )
        client.send_failure(TOKEN, "E" * 500, "c" * 50_000)

    def test_refused_output(self, stubbed: tuple[ActivityClient, Stubber]) -> None:
        """InvalidOutput has its own type."""
        client, stubber = stubbed
        stubber.add_client_error("send_task_success", service_error_code="InvalidOutput")
        with pytest.raises(InvalidOutput):
            client.send_outcome(TOKEN, Success("{"))

    def test_cancelled_sends_nothing(self, stubbed: tuple[ActivityClient, Stubber]) -> None:
        """A cancelled task has no outcome to send (the stub would fail on any call)."""
        client, _ = stubbed
        client.send_outcome(TOKEN, Cancelled())

    def test_create_activity_with_tags(self, stubbed: tuple[ActivityClient, Stubber]) -> None:
        """Tags are sent in the API's key/value list form; the ARN is returned."""
        client, stubber = stubbed
        stubber.add_response(
            "create_activity",
            {"activityArn": ARN, "creationDate": "2026-11-23T00:00:00Z"},
            {"name": "Echo", "tags": [{"key": "team", "value": "data"}]},
        )
        assert client.create_activity("Echo", tags={"team": "data"}) == ARN


def poll_task(client: ActivityClient, stubber: Stubber, data: str) -> Task:
    """Lay out one GetActivityTask returning ``data`` as input, and poll it."""
    stubber.add_response(
        "get_activity_task",
        {"taskToken": TOKEN, "input": data},
        {"activityArn": ARN, "workerName": "test-worker"},
    )
    task = client.poll(ARN)
    assert task is not None
    return task


class TestProcess:
    """The public process(); what it does with an outcome is tested in tests/test_runner.py."""

    def test_runs_heartbeats_and_sends_the_result(
        self, stubbed: tuple[ActivityClient, Stubber], monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """process() is the whole life of a task with the transport applied."""
        clock(monkeypatch, 60)  # every yield is a cadence after the one before
        client, stubber = stubbed
        task = poll_task(client, stubber, '{"n": 2}')
        stubber.add_response("send_task_heartbeat", {}, {"taskToken": TOKEN})
        stubber.add_response("send_task_heartbeat", {}, {"taskToken": TOKEN})
        stubber.add_response("send_task_success", {}, {"taskToken": TOKEN, "output": "2"})
        assert client.process(Beats(), task) == Success("2")


class TestRetry:
    """Each call is retried by ActivityClient, when its failure passes, with one policy."""

    @pytest.fixture(autouse=True)
    def no_pause(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setattr(RetryPolicy, "pause", lambda *_: 0.0)

    def test_throttled_calls_are_retried_and_paced(
        self, stubbed: tuple[ActivityClient, Stubber]
    ) -> None:
        """Throttled twice, then taken: one call for the caller; the gap opens, then narrows."""
        client, stubber = stubbed
        for _ in range(2):
            stubber.add_client_error(
                "send_task_heartbeat", service_error_code="ThrottlingException"
            )
        stubber.add_response("send_task_heartbeat", {}, {"taskToken": TOKEN})
        gaps = []
        original = client.pacer.taken
        client.pacer.taken = lambda operation: (  # type: ignore[method-assign]
            gaps.append(client.pacer.gap(operation)),
            original(operation),
        )
        client.send_heartbeat(TOKEN)
        assert gaps[0] > 0, "the throttled attempts opened a gap between calls"
        assert client.pacer.gap("SendTaskHeartbeat") < gaps[0], "a call taken narrows it"
        assert client.pacer.gap("GetActivityTask") == 0, "other operations are not paced"

    def test_server_errors_are_retried(self, stubbed: tuple[ActivityClient, Stubber]) -> None:
        client, stubber = stubbed
        stubber.add_client_error(
            "send_task_success", service_error_code="ServiceUnavailable", http_status_code=503
        )
        stubber.add_response("send_task_success", {}, {"taskToken": TOKEN, "output": "1"})
        client.send_success(TOKEN, 1)

    def test_errors_that_stay_are_not_retried(
        self, stubbed: tuple[ActivityClient, Stubber]
    ) -> None:
        """A 400 that is not throttling is raised at once: one attempt, no second stubbed."""
        client, stubber = stubbed
        stubber.add_client_error("get_activity_task", service_error_code="AccessDeniedException")
        with pytest.raises(ServiceError) as info:
            client.poll(ARN)
        assert not info.value.transient

    def test_the_last_error_is_raised_after_the_attempts(
        self, stubbed: tuple[ActivityClient, Stubber]
    ) -> None:
        client, stubber = stubbed
        client.retry = RetryPolicy(attempts=3)
        for _ in range(3):
            stubber.add_client_error("create_activity", service_error_code="ThrottlingException")
        with pytest.raises(Throttled):
            client.create_activity("Echo")

    def test_a_hung_call_times_out_after_the_call_timeout(self) -> None:
        """An outcome or heartbeat waits call_timeout for its answer, not the poll's 70 s."""
        with socket.socket() as server:
            server.bind(("127.0.0.1", 0))
            server.listen()  # accepts connections, never answers
            sfn = boto3.Session(
                aws_access_key_id="test", aws_secret_access_key="test", region_name="us-east-1"
            ).client(
                "stepfunctions",
                endpoint_url=f"http://127.0.0.1:{server.getsockname()[1]}",
                config=botocore.config.Config(
                    read_timeout=READ_TIMEOUT, retries={"total_max_attempts": 1}
                ),
            )
            client = ActivityClient(
                sfn, worker_name="w", retry=RetryPolicy(attempts=1), call_timeout=0.2
            )
            with pytest.raises(ServiceError) as info:
                client.send_heartbeat(TOKEN)
        assert info.value.code == "ReadTimeoutError"
        assert info.value.transient
        assert client.hearing.overdue_cells[0] > 0, "an attempt went unanswered"

    def test_the_call_timeout_is_not_set_on_polls(self) -> None:
        sfn = boto3.Session(
            aws_access_key_id="test", aws_secret_access_key="test", region_name="us-east-1"
        ).client("stepfunctions")
        client = ActivityClient(sfn, worker_name="w")
        seen: dict[str, object] = {}

        def answer(model: Any, context: dict[str, Any], **_: Any) -> tuple[AWSResponse, Any]:
            # After the client's own handlers: what they set is in the context now.
            seen[model.name] = context.get("read_timeout")
            return AWSResponse("", 200, {}, None), {}

        sfn.meta.events.register("before-call.sfn", answer)
        client.poll(ARN)
        client.send_heartbeat(TOKEN)
        assert seen == {"GetActivityTask": None, "SendTaskHeartbeat": client.call_timeout}

    def test_a_call_timeout_already_set_is_not_registered_again(self) -> None:
        """The client made before the fork has it: a task process only takes it.

        Registering again would be a no-op of botocore's that still inspects the handler,
        which in a forked process copies pages out of the shared heap; another value is
        registered.
        """
        sfn = boto3.Session(
            aws_access_key_id="test", aws_secret_access_key="test", region_name="us-east-1"
        ).client("stepfunctions")
        registered: list[str] = []
        register = sfn.meta.events.register

        def counting(event_name: str, *args: Any, **kwargs: Any) -> None:
            registered.append(event_name)
            register(event_name, *args, **kwargs)

        sfn.meta.events.register = counting  # type: ignore[method-assign]
        set_call_timeout(sfn, 3.0)
        first = len(registered)
        assert first > 0
        ActivityClient(sfn, worker_name="w", call_timeout=3.0)
        assert len(registered) == first
        ActivityClient(sfn, worker_name="w", call_timeout=4.0)
        assert len(registered) == 2 * first

    def test_answers_are_heard(self, stubbed: tuple[ActivityClient, Stubber]) -> None:
        """An error from the service is an answer too: nothing is overdue after it."""
        client, stubber = stubbed
        stubber.add_client_error("send_task_heartbeat", service_error_code="TaskTimedOut")
        with pytest.raises(TaskGone):
            client.send_heartbeat(TOKEN)
        assert client.hearing.answered_cells[0] > 0
        assert client.hearing.overdue_cells[0] == 0

    def test_answers_that_are_errors_narrow_the_gap_too(
        self, stubbed: tuple[ActivityClient, Stubber]
    ) -> None:
        """Answered, if not taken (the task is gone): not throttled, so pacing eases."""
        client, stubber = stubbed
        stubber.add_client_error("send_task_heartbeat", service_error_code="ThrottlingException")
        stubber.add_client_error("send_task_heartbeat", service_error_code="TaskTimedOut")
        with pytest.raises(TaskGone):
            client.send_heartbeat(TOKEN)
        assert client.pacer.gap("SendTaskHeartbeat") == 0

    def test_no_more_attempts_once_told_to_stop(
        self, stubbed: tuple[ActivityClient, Stubber]
    ) -> None:
        """A stopping worker's poll is not retried: the retry could bring a task nobody runs."""
        client, stubber = stubbed
        stubber.add_client_error("get_activity_task", service_error_code="ThrottlingException")
        with pytest.raises(Throttled):
            client.poll(ARN, keep_trying=lambda: False)

    def test_a_5xx_is_no_answer(self, stubbed: tuple[ActivityClient, Stubber]) -> None:
        """A 5xx says nothing of the call: it counts toward a silence, as a timeout does."""
        client, stubber = stubbed
        stubber.add_client_error(
            "send_task_heartbeat", service_error_code="InternalFailure", http_status_code=500
        )
        with pytest.raises(ServiceError):
            client.send_heartbeat(TOKEN)
        assert client.hearing.answered_cells[0] == 0
        assert client.hearing.overdue_cells[0] > 0

    def test_throttling_is_an_answer(self, stubbed: tuple[ActivityClient, Stubber]) -> None:
        client, stubber = stubbed
        client.retry = RetryPolicy(attempts=1)
        stubber.add_client_error("send_task_heartbeat", service_error_code="ThrottlingException")
        with pytest.raises(Throttled):
            client.send_heartbeat(TOKEN)
        assert client.hearing.answered_cells[0] > 0
        assert client.hearing.overdue_cells[0] == 0


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


class TestLogs:
    """A client alone: a line per attempt at DEBUG, and a WARNING that sums them up."""

    @pytest.fixture
    def clock(self, stubbed: tuple[ActivityClient, Stubber]) -> Clock:
        client, _ = stubbed
        clock = Clock()
        client.hearing = Hearing(clock=clock, warn_after=ALONE_AFTER)
        client.pacer = Pacer(clock=clock, sleep=clock.sleep)
        return clock

    def test_an_outage_is_one_warning(
        self,
        stubbed: tuple[ActivityClient, Stubber],
        clock: Clock,
        caplog: pytest.LogCaptureFixture,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        """Five attempts 5 s apart met by 503s: four DEBUG retries, one WARNING, then INFO."""
        client, stubber = stubbed
        monkeypatch.setattr(RetryPolicy, "pause", lambda *_: 0.0)
        for _ in range(5):
            stubber.add_client_error(
                "send_task_heartbeat",
                service_error_code="ServiceUnavailable",
                http_status_code=503,
            )
        stubber.add_response("send_task_heartbeat", {}, {"taskToken": TOKEN})
        taken = client.pacer.taken

        def five_seconds_each(operation: str) -> None:
            clock.now += 5
            taken(operation)

        client.pacer.taken = five_seconds_each  # type: ignore[method-assign]
        caplog.set_level(logging.DEBUG, "activities")
        with pytest.raises(ServiceError):
            client.send_heartbeat(TOKEN)
        client.send_heartbeat(TOKEN)
        said = [
            (record.levelno, record.getMessage())
            for record in caplog.records
            if record.name.startswith("activities")
        ]
        assert [level for level, _ in said] == [logging.DEBUG] * 3 + [
            logging.WARNING,
            logging.DEBUG,
            logging.INFO,
        ]
        assert said[0][1] == ("SendTaskHeartbeat: ServiceUnavailable: ; attempt 2 in 0.000 s")
        assert said[3][1] == (
            "Step Functions has answered none of this client's calls for 15 s; each is "
            "retried up to its attempts"
        )
        assert said[5][1] == "Step Functions answers again, after 25 s without an answer"

    def test_throttling_is_summed_up_when_the_client_closes(
        self,
        stubbed: tuple[ActivityClient, Stubber],
        clock: Clock,
        caplog: pytest.LogCaptureFixture,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        """Throttled twice, then taken at once: no WARNING until the burst is over, or closed."""
        client, stubber = stubbed
        monkeypatch.setattr(RetryPolicy, "pause", lambda *_: 0.0)
        for _ in range(2):
            stubber.add_client_error(
                "send_task_heartbeat", service_error_code="ThrottlingException"
            )
        stubber.add_response("send_task_heartbeat", {}, {"taskToken": TOKEN})
        caplog.set_level(logging.DEBUG, "activities")
        client.send_heartbeat(TOKEN)
        assert {record.levelno for record in caplog.records} == {logging.DEBUG}
        client.close()
        warnings = [
            record.getMessage() for record in caplog.records if record.levelno > logging.DEBUG
        ]
        assert len(warnings) == 1
        assert warnings[0].startswith(
            "Step Functions throttled 2 calls in 0.0 s: SendTaskHeartbeat 2"
        )
