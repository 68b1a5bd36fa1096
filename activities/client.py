"""The low-level API: poll an activity, send outcomes and heartbeats, run one task.

For code that embeds task processing in a loop of its own instead of running the worker
pool; the pool is built on it. Every botocore ``ClientError`` is mapped to the
framework's :class:`~activities.ServiceError` tree here, and nowhere else, and every call
is retried here with the framework's one policy (see ``activities._retry``).
"""

from __future__ import annotations

import logging
import os
import socket
import time
from typing import TYPE_CHECKING, Any, NoReturn

import boto3
import botocore.config
import botocore.exceptions
import botocore.loaders
import botocore.session

from activities import _runner
from activities._outage import Hearing
from activities._retry import Pacer, RetryPolicy
from activities.errors import (
    ActivityDoesNotExist,
    ConfigurationError,
    InvalidOutput,
    ServiceError,
    TaskGone,
    Throttled,
)
from activities.outcome import (
    Cancelled,
    Failure,
    Success,
    failure_from_exception,
    refused_output,
    success_from_result,
)
from activities.task import Task
from transport import JSONTransport

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from mypy_boto3_stepfunctions import SFNClient

    from activities.activity import Activity
    from activities.outcome import Outcome
    from transport import Transport

__all__ = ["ActivityClient", "default_worker_name", "make_client"]

logger = logging.getLogger(__name__)

#: Seconds to wait for a response. GetActivityTask holds a poll open for up to 60 s:
#: a client that gives up at 60 s (botocore's default) abandons tasks in flight.
READ_TIMEOUT = 70

#: Seconds to wait for the answer to a call that is not a long poll (an outcome, a
#: heartbeat, a registration): a hung call is retried instead of waited on for 70 s.
#: Needs botocore 1.43.68 or later (per-call timeouts); older ones wait READ_TIMEOUT.
CALL_TIMEOUT = 5.0

#: Seconds to wait for a connection to be set up.
CONNECT_TIMEOUT = 10

#: The operations that are not long polls, which CALL_TIMEOUT applies to.
SHORT_CALLS = (
    "CreateActivity",
    "SendTaskSuccess",
    "SendTaskFailure",
    "SendTaskHeartbeat",
    "DescribeActivity",
    "ListActivities",
)

#: The longest ``workerName`` Step Functions accepts.
MAX_WORKER_NAME_LENGTH = 80

_TASK_GONE = frozenset({"TaskTimedOut", "TaskDoesNotExist", "InvalidToken"})
_THROTTLED = frozenset({"ThrottlingException", "ActivityWorkerLimitExceeded"})

#: Codes of errors that pass, besides throttling and 5xx answers.
_PASSING = frozenset({"RequestTimeout", "RequestTimeoutException", "PriorRequestNotComplete"})

#: botocore's errors of a call that got no answer, which another attempt may not meet.
_NETWORK_ERRORS = (botocore.exceptions.HTTPClientError, botocore.exceptions.ConnectionError)


def make_client(
    *,
    endpoint_url: str | None = None,
    region_name: str | None = None,
    profile_name: str | None = None,
    max_pool_connections: int = 10,
    session: boto3.Session | None = None,
    max_attempts: int = 1,
) -> SFNClient:
    """Make a Step Functions client fit for long polls.

    Credentials, Region and endpoint come from boto3's usual chain (environment
    variables such as ``AWS_ENDPOINT_URL`` and ``AWS_DEFAULT_REGION``, the shared config
    files, instance roles) unless given here; ``AWS_REGION``, which other AWS SDKs read,
    is honoured too. The client waits ``READ_TIMEOUT`` (70) seconds for
    a response, longer than a long poll. It makes one attempt per call:
    :class:`ActivityClient` retries the activity calls with the framework's policy
    (:class:`~activities.RetryPolicy`), and botocore's retries would stack under it.

    Raises:
        ConfigurationError: no Region is configured, or the profile does not exist.

    Args:
        endpoint_url: e.g. a local Step Functions endpoint.
        region_name: the AWS Region.
        profile_name: a profile of the shared AWS config files.
        max_pool_connections: HTTP connections kept; at least the polls plus the sends
            that run at once.
        session: the boto3 session to use instead of a new one (``profile_name`` and
            ``region_name`` are then ignored).
        max_attempts: botocore's attempts per call (its "standard" retry mode), the first
            included; more than 1 for a client used for other calls than the activity
            API's (``StartExecution``, ...).
    """
    config = botocore.config.Config(
        read_timeout=READ_TIMEOUT,
        connect_timeout=CONNECT_TIMEOUT,
        retries={"mode": "standard", "total_max_attempts": max_attempts},
        max_pool_connections=max_pool_connections,
    )
    try:
        if session is None:
            session = new_session(profile_name, region_name)
        return session.client("stepfunctions", endpoint_url=endpoint_url, config=config)
    except botocore.exceptions.NoRegionError:
        msg = (
            "no AWS Region is configured: set AWS_REGION or AWS_DEFAULT_REGION (or a "
            "profile's region), or pass region_name (--region on the command line)"
        )
        raise ConfigurationError(msg) from None
    except botocore.exceptions.ProfileNotFound as exc:
        raise ConfigurationError(str(exc)) from None


def new_session(profile_name: str | None, region_name: str | None) -> boto3.Session:
    """A new boto3 session of :func:`make_client`'s, sharing the botocore data it reads.

    ``AWS_REGION`` is the Region when neither ``region_name`` nor botocore's own chain
    (``AWS_DEFAULT_REGION``, the profile) gives one.

    Raises:
        botocore.exceptions.ProfileNotFound: the profile does not exist.
    """
    session = _session(profile_name, region_name)
    if not session.region_name and os.environ.get("AWS_REGION"):
        # botocore reads AWS_DEFAULT_REGION only; the other SDKs use AWS_REGION.
        session = _session(profile_name, os.environ["AWS_REGION"])
    return session


def _session(profile_name: str | None, region_name: str | None) -> boto3.Session:
    """A new boto3 session whose botocore data (service models, endpoints) is shared.

    Every session reads and parses botocore's data files again unless it shares a loader:
    the loader of this process (and, in task processes, of the process they were forked
    from, see :mod:`activities._forkserver`) keeps what it read.
    """
    loader = shared_loader()
    core = botocore.session.Session()
    core.register_component("data_loader", loader)
    session = boto3.Session(
        profile_name=profile_name, region_name=region_name, botocore_session=core
    )
    paths = loader.search_paths  # boto3 adds its own to them, for each session
    paths[:] = dict.fromkeys(paths)
    return session


_loader: botocore.loaders.Loader | None = None


def shared_loader() -> botocore.loaders.Loader:
    """The botocore data loader of this process's clients made by :func:`make_client`."""
    global _loader  # noqa: PLW0603 - one per process, made when first needed
    if _loader is None:
        _loader = botocore.loaders.create_loader()
    return _loader


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
    that Step Functions throttles are paced (see ``activities._retry``). A client of
    your own should not retry on its own (``retries={"total_max_attempts": 1}``), or its
    retries stack under these.

    Args:
        client: a boto3 Step Functions client; :func:`make_client` by default.
        worker_name: the ``workerName`` of polls; :func:`default_worker_name` by default.
        retry: how failed calls are retried.
        call_timeout: seconds to wait for the answer to a call that is not a long poll
            (set on ``client`` for those calls; botocore 1.43.68 or later).
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
        #: What this client's calls heard from Step Functions (see activities._outage).
        self.hearing = Hearing()
        _set_call_timeout(self.client, call_timeout)
        self.worker_name = worker_name if worker_name is not None else default_worker_name()
        if not 1 <= len(self.worker_name) <= MAX_WORKER_NAME_LENGTH:
            msg = (
                f"worker_name must be 1 to {MAX_WORKER_NAME_LENGTH} characters, "
                f"got {self.worker_name!r}"
            )
            raise ValueError(msg)

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
            self.client.get_activity_task,
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
        self._call("SendTaskHeartbeat", self.client.send_task_heartbeat, taskToken=token)

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
                self.client.send_task_success,
                attempts=attempts,
                taskToken=token,
                output=outcome.output,
            )
        elif isinstance(outcome, Failure):
            self._call(
                "SendTaskFailure",
                self.client.send_task_failure,
                attempts=attempts,
                taskToken=token,
                error=outcome.error,
                cause=outcome.cause,
            )

    def process(self, activity: Activity, task: Task) -> Outcome:
        """Run ``task`` on ``activity``, heartbeating, then send its outcome.

        Returns the outcome sent, or :class:`~activities.Cancelled` when Step Functions
        said (to a heartbeat or to the outcome) that the task is gone. An output Step
        Functions refuses as invalid is replaced by an ``activities.SerializationError``
        failure, so the task never hangs until its timeout.
        """
        outcome = _runner.execute(activity, task, lambda: self.send_heartbeat(task.token))
        try:
            try:
                self.send_outcome(task.token, outcome)
            except InvalidOutput as exc:
                outcome = refused_output(exc)
                self.send_outcome(task.token, outcome)
        except TaskGone as exc:
            logger.warning(
                "task %s ended after Step Functions closed it; its outcome was dropped: %s",
                task.token_prefix,
                exc,
            )
            return Cancelled(str(exc))
        return outcome

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
        while True:
            self.pacer.wait(operation)
            try:
                response = self._attempt(operation, method, kwargs)
            except ServiceError as exc:
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
        """One attempt of a call; what Step Functions said goes to the pacer and ``hearing``."""
        attempt = self.hearing.started(operation)
        try:
            response = method(**kwargs)
        except botocore.exceptions.ClientError as exc:
            self.hearing.answered(attempt)
            if exc.response.get("Error", {}).get("Code") in _THROTTLED:
                self.pacer.throttled(operation)
            else:
                self.pacer.taken(operation)  # answered, throttled or not: TaskGone, ...
            _raise_service_error(operation, exc)
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


def _set_call_timeout(client: SFNClient, seconds: float) -> None:
    """Make ``client`` wait ``seconds`` for the answer to a call that is not a long poll.

    botocore 1.43.68 and later take a read timeout per call from the request's context;
    older ones ignore it and wait the client's own read timeout.
    """
    events = getattr(getattr(client, "meta", None), "events", None)
    if events is None:  # a stand-in for a botocore client, in tests
        return

    def set_timeout(context: dict[str, Any], **_: Any) -> None:
        context["read_timeout"] = seconds

    for operation in SHORT_CALLS:
        events.register(
            f"before-call.sfn.{operation}",
            set_timeout,
            unique_id=f"sfn-activities-timeout-{operation}-{seconds}",
        )


def _raise_service_error(operation: str, exc: botocore.exceptions.ClientError) -> NoReturn:
    """Raise the framework's exception for a botocore ``ClientError``."""
    error = exc.response.get("Error", {})
    code = str(error.get("Code", ""))
    message = f"{operation}: {code}: {error.get('Message', '')}"
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
    transient = code in _THROTTLED or code in _PASSING or status >= 500  # noqa: PLR2004 - 5xx
    kind: type[ServiceError] = ServiceError
    if code in _TASK_GONE:
        kind = TaskGone
    elif code in _THROTTLED:
        kind = Throttled
    elif code == "ActivityDoesNotExist":
        kind = ActivityDoesNotExist
    elif code == "InvalidOutput":
        kind = InvalidOutput
    raise kind(message, code=code, operation=operation, transient=transient) from exc
