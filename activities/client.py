"""The low-level API: poll an activity, send outcomes and heartbeats, run one task.

For code that embeds task processing in a loop of its own instead of running the worker
pool; the pool is built on it. Every botocore ``ClientError`` is mapped to the
framework's :class:`~activities.ServiceError` tree here, and nowhere else, and every call
is retried here with the framework's one policy (see ``activities._aws.retry``).
"""

from __future__ import annotations

import logging
import os
import socket
import time
from typing import TYPE_CHECKING, Any

import botocore.exceptions

from activities import _runner
from activities._aws.outage import ALONE_AFTER, Hearing
from activities._aws.retry import Pacer, RetryPolicy
from activities._aws.sfnclient import CALL_TIMEOUT, make_client, set_call_timeout
from activities._aws.wire import Wire
from activities.errors import (
    ActivityDoesNotExist,
    InvalidOutput,
    ServiceError,
    TaskGone,
    Throttled,
)
from activities.outcome import (
    Failure,
    Success,
    failure_from_exception,
    success_from_result,
)
from activities.task import Task
from transport import JSONTransport

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from mypy_boto3_stepfunctions import SFNClient

    from activities._activity import Activity
    from activities.outcome import Outcome
    from transport import Transport

__all__ = ["ActivityClient", "default_worker_name", "make_client"]

logger = logging.getLogger(__name__)

#: The longest ``workerName`` Step Functions accepts.
MAX_WORKER_NAME_LENGTH = 80

_TASK_GONE = frozenset({"TaskTimedOut", "TaskDoesNotExist", "InvalidToken"})

#: Codes of throttling: every code botocore's retries take for throttling
#: (``botocore.retries.standard.ThrottledRetryableChecker``; its legacy mode's
#: ``_retry.json`` names fewer), and Step Functions' ``ActivityWorkerLimitExceeded``
#: (too many polls open on an activity).
_THROTTLING_CODES = frozenset(
    {
        "ActivityWorkerLimitExceeded",
        "BandwidthLimitExceeded",
        "EC2ThrottledException",
        "LimitExceededException",
        "PriorRequestNotComplete",
        "ProvisionedThroughputExceededException",
        "RequestLimitExceeded",
        "RequestThrottled",
        "RequestThrottledException",
        "SlowDown",
        "ThrottledException",
        "Throttling",
        "ThrottlingException",
        "TooManyRequestsException",
        "TransactionInProgressException",
    }
)

#: The HTTP status of throttling, whatever the answer's body says: a proxy's or a load
#: balancer's page that is not JSON (its code is then "429"), or a code of its own.
_THROTTLING_STATUS = 429

#: Codes of errors that pass, besides throttling and 5xx answers (botocore's transient ones).
_PASSING = frozenset({"RequestTimeout", "RequestTimeoutException", "PriorRequestNotComplete"})

#: botocore's errors of a call that got no answer, which another attempt may not meet.
_NETWORK_ERRORS = (botocore.exceptions.HTTPClientError, botocore.exceptions.ConnectionError)


def default_worker_name() -> str:
    """``<host>-<pid>``, cut to the 80 characters ``workerName`` allows (the pid is kept)."""
    pid = f"-{os.getpid()}"
    return socket.gethostname()[: MAX_WORKER_NAME_LENGTH - len(pid)] + pid


class ActivityClient:
    """Poll activities and report on tasks, with the framework's errors and limits.

    ::

        client = ActivityClient()
        arn = client.create_activity(Echo.name)
        task = client.poll(arn)          # long poll: up to 60 s
        if task is not None:
            client.process(Echo(), task)  # run, heartbeat, send the outcome

    Each call is retried when it fails for a reason that passes (throttling, a 5xx, a
    timeout, a lost connection), up to ``retry.attempts`` attempts; calls of an operation
    that Step Functions throttles are paced (see ``activities._aws.retry``). A client of
    your own should not retry on its own (``retries={"total_max_attempts": 1}``), or its
    retries stack under these. Each retry is logged at DEBUG; WARNINGs sum them up, on the
    ``activities.client`` logger: how many calls were throttled (once a burst is over, or
    every 10 s while it goes on), and when Step Functions has answered none of the
    client's calls for 15 s (again every minute while it lasts; an INFO line when it
    answers again; a worker says that itself, for all its processes).

    Args:
        client: a boto3 Step Functions client; :func:`make_client` by default.
        worker_name: the ``workerName`` of polls; :func:`default_worker_name` by default.
        retry: how failed calls are retried.
        call_timeout: seconds to wait for the answer to a call that is not a long poll
            (on the direct path; through botocore, set on ``client`` for those calls, which
            botocore 1.43.68 or later honours).
    """

    def __init__(
        self,
        client: SFNClient | None = None,
        *,
        worker_name: str | None = None,
        retry: RetryPolicy | None = None,
        call_timeout: float = CALL_TIMEOUT,
    ) -> None:
        self.client = client if client is not None else make_client()
        self.retry = retry if retry is not None else RetryPolicy()
        self.call_timeout = call_timeout
        #: Spaces this client's calls of an operation while it is throttled.
        self.pacer = Pacer()
        #: What this client's calls heard from Step Functions (see activities._aws.outage);
        #: with no worker, it warns by itself when they hear nothing for a while.
        self.hearing = Hearing(warn_after=ALONE_AFTER)
        set_call_timeout(self.client, call_timeout)
        #: The direct path of the activity calls (see activities._aws.wire), or None: botocore's.
        self._wire = Wire.of(self.client)
        self.worker_name = worker_name if worker_name is not None else default_worker_name()
        if not 1 <= len(self.worker_name) <= MAX_WORKER_NAME_LENGTH:
            msg = (
                f"worker_name must be 1 to {MAX_WORKER_NAME_LENGTH} characters, "
                f"got {self.worker_name!r}"
            )
            raise ValueError(msg)

    def close(self) -> None:
        """Close the client's idle connections, botocore's and the direct path's.

        Calls made afterwards open new ones. A process about to fork closes them, so that
        its copy holds none. Throttled calls the pacer has not summarised yet are logged.
        """
        self.pacer.flush()
        if self._wire is not None:
            self._wire.close()
        close = getattr(self.client, "close", None)  # a stand-in in tests may have none
        if close is not None:
            close()

    def create_activity(self, name: str, *, tags: Mapping[str, str] | None = None) -> str:
        """Create the activity ``name`` (or find it: the call is idempotent); return its ARN."""
        kwargs: dict[str, Any] = {"name": name}
        if tags:
            kwargs["tags"] = [{"key": key, "value": value} for key, value in tags.items()]
        response = self._call("CreateActivity", self.client.create_activity, **kwargs)
        return str(response["activityArn"])

    def poll(
        self,
        activity_arn: str,
        *,
        attempts: int | None = None,
        keep_trying: Callable[[], bool] | None = None,
    ) -> Task | None:
        """Long-poll ``activity_arn`` once for a task; ``None`` when none came within 60 s.

        Only poll when the task can be run at once: its timeouts start when it is handed
        out. ``attempts`` (``retry.attempts`` by default) bounds the retries of a poll that
        failed for a passing reason; ``keep_trying``, asked before each, ends them sooner
        (e.g. when the worker stops: a poll retried then could bring a task nobody runs).

        Raises:
            ActivityDoesNotExist: the ARN is unknown.
            Throttled: too many polls or calls; back off and poll again.
            ServiceError: any other error from Step Functions.
        """
        response = self._call(
            "GetActivityTask",
            self._method("GetActivityTask", self.client.get_activity_task),
            attempts=attempts,
            keep_trying=keep_trying,
            activityArn=activity_arn,
            workerName=self.worker_name,
        )
        token = response.get("taskToken")
        if not token:
            return None
        return Task(
            token=token,
            activity_arn=activity_arn,
            worker_name=self.worker_name,
            input=response.get("input", ""),
        )

    def send_heartbeat(self, token: str) -> None:
        """Send a heartbeat for the task ``token``.

        Raises:
            TaskGone: the task timed out, finished or never existed: stop working on it.
        """
        self._call(
            "SendTaskHeartbeat",
            self._method("SendTaskHeartbeat", self.client.send_task_heartbeat),
            taskToken=token,
        )

    def send_success(self, token: str, result: Any, *, transport: Transport | None = None) -> None:
        """Report success with ``result`` encoded by ``transport`` (JSON by default).

        Raises:
            SerializationError: ``result`` cannot be encoded.
            ResultTooLarge: the encoded result is over Step Functions' limit.
            TaskGone: the task is no longer known.
        """
        encoder = transport if transport is not None else JSONTransport()
        self.send_outcome(token, success_from_result(encoder.serialize_result, result))

    def send_failure(self, token: str, error: str | BaseException, cause: str = "") -> None:
        """Report failure: an exception (mapped as run() errors are) or an error name.

        ``error`` and ``cause`` are cut to Step Functions' limits.

        Raises:
            ValueError: ``error`` is a name reserved by Step Functions (``States.*``).
            TaskGone: the task is no longer known.
        """
        if isinstance(error, BaseException):
            failure = failure_from_exception(error)
        else:
            failure = Failure(error, cause)
        self.send_outcome(token, failure)

    def send_outcome(self, token: str, outcome: Outcome, *, attempts: int | None = None) -> None:
        """Send an :data:`~activities.Outcome` as it is; a ``Cancelled`` sends nothing.

        ``attempts`` (``retry.attempts`` by default) bounds the retries.

        Raises:
            TaskGone: the task is no longer known.
            InvalidOutput: Step Functions refused the output.
        """
        if isinstance(outcome, Success):
            self._call(
                "SendTaskSuccess",
                self._method("SendTaskSuccess", self.client.send_task_success),
                attempts=attempts,
                taskToken=token,
                output=outcome.output,
            )
        elif isinstance(outcome, Failure):
            self._call(
                "SendTaskFailure",
                self._method("SendTaskFailure", self.client.send_task_failure),
                attempts=attempts,
                taskToken=token,
                error=outcome.error,
                cause=outcome.cause,
            )

    def process(self, activity: Activity, task: Task) -> Outcome:
        """Run ``task`` on ``activity``, heartbeating, then send its outcome.

        Returns the outcome sent, or :class:`~activities.Cancelled` when Step Functions
        said (to a heartbeat or to the outcome) that the task is gone; the outcome when
        it said so only after an earlier attempt that got no answer, or that botocore
        retried (that attempt may have delivered it, a warning says so). An output Step
        Functions refuses as invalid is replaced by an ``activities.SerializationError``
        failure, so the task never hangs until its timeout.
        """
        return _runner.process(self, activity, task)

    def _method(self, operation: str, method: Any) -> Any:
        """``operation``'s callable: on the direct path if the client has one, else ``method``."""
        if self._wire is None:
            return method
        polling = operation == "GetActivityTask"
        timeout = self._wire.read_timeout if polling else self.call_timeout
        return self._wire.method(operation, timeout=timeout)

    def _call(
        self,
        operation: str,
        method: Any,
        *,
        attempts: int | None = None,
        keep_trying: Callable[[], bool] | None = None,
        **kwargs: Any,
    ) -> Any:
        """Call ``method``, retried with the policy while it fails for a passing reason.

        ``keep_trying`` is asked before each retry: no more attempts once it says no.
        """
        most = self.retry.attempts if attempts is None else attempts
        failed = 0
        unanswered = False  # an attempt before was sent but got no answer
        while True:
            self.pacer.wait(operation)
            try:
                response = self._attempt(operation, method, kwargs)
            except ServiceError as exc:
                exc.earlier_unanswered = unanswered
                unanswered = unanswered or exc.unanswered
                failed += 1
                if not exc.transient or failed >= most:
                    raise
                if keep_trying is not None and not keep_trying():
                    raise
                pause = self.retry.pause(failed)
                logger.debug("%s; attempt %d in %.3f s", exc, failed + 1, pause)
                time.sleep(pause)
                continue
            return response

    def _attempt(self, operation: str, method: Any, kwargs: dict[str, Any]) -> Any:
        """One attempt of a call; what Step Functions said goes to the pacer and ``hearing``.

        An error is an answer, but for one that passes and is not throttling (a 5xx, a
        request timeout): like no answer, it says nothing of the call.
        """
        attempt = self.hearing.started(operation)
        try:
            response = method(**kwargs)
        except botocore.exceptions.ClientError as exc:
            error = _service_error(operation, exc)
            if error.transient and not isinstance(error, Throttled):
                self.hearing.unanswered(attempt)
            else:
                self.hearing.answered(attempt)
            if isinstance(error, Throttled):
                self.pacer.throttled(operation)
            else:
                self.pacer.taken(operation)  # not throttled: TaskGone, a 5xx, ...
            raise error from exc
        except botocore.exceptions.BotoCoreError as exc:
            transient = isinstance(exc, _NETWORK_ERRORS)
            if transient:
                self.hearing.unanswered(attempt)
            else:
                self.hearing.forget(attempt)  # never sent: credentials, parameters
            code = type(exc).__name__
            msg = f"{operation}: {code}: {exc}"
            raise ServiceError(msg, code=code, operation=operation, transient=transient) from exc
        except BaseException:
            self.hearing.forget(attempt)
            raise
        self.hearing.answered(attempt)
        self.pacer.taken(operation)
        return response


def _service_error(operation: str, exc: botocore.exceptions.ClientError) -> ServiceError:
    """The framework's exception for a botocore ``ClientError``.

    Throttling is what botocore takes for it: a code of ``_THROTTLING_CODES``, or the
    HTTP status 429 whatever the code, so that a proxy's page that is not JSON (its code is
    then ``"429"``, on both paths) is retried and paced too.
    """
    error = exc.response.get("Error", {})
    code = str(error.get("Code", ""))
    message = f"{operation}: {code}: {error.get('Message', '')}"
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
    throttled = code in _THROTTLING_CODES or status == _THROTTLING_STATUS
    transient = throttled or code in _PASSING or status >= 500  # noqa: PLR2004 - 5xx
    kind: type[ServiceError] = ServiceError
    if code in _TASK_GONE:
        kind = TaskGone
    elif throttled:
        kind = Throttled
    elif code == "ActivityDoesNotExist":
        kind = ActivityDoesNotExist
    elif code == "InvalidOutput":
        kind = InvalidOutput
    return kind(message, code=code, operation=operation, transient=transient)
