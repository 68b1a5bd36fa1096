"""The boto3 Step Functions client the framework makes: fit for long polls, quick to make.

:func:`make_client` waits longer than a long poll for an answer and makes one attempt per
call (:class:`~activities.ActivityClient` retries); its sessions share one botocore data
loader per process, so the Step Functions model is read once (and, in task processes,
inherited from the process they are forked from). :func:`set_call_timeout` gives the
calls that are not long polls a read timeout of their own.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

import boto3
import botocore.config
import botocore.exceptions
import botocore.loaders
import botocore.session

from activities._aws.wire import allow_direct
from activities.errors import ConfigurationError

if TYPE_CHECKING:
    from mypy_boto3_stepfunctions import SFNClient

__all__ = [
    "CALL_TIMEOUT",
    "CONNECT_TIMEOUT",
    "READ_TIMEOUT",
    "SHORT_CALLS",
    "make_client",
    "new_session",
    "set_call_timeout",
    "shared_loader",
]

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


def make_client(
    *,
    endpoint_url: str | None = None,
    region_name: str | None = None,
    profile_name: str | None = None,
    max_pool_connections: int = 10,
    session: boto3.Session | None = None,
    max_attempts: int = 1,
    direct: bool = True,
) -> SFNClient:
    """Make a Step Functions client fit for long polls.

    Credentials, Region and endpoint come from boto3's usual chain (environment
    variables such as ``AWS_ENDPOINT_URL`` and ``AWS_DEFAULT_REGION``, the shared config
    files, instance roles) unless given here; ``AWS_REGION``, which other AWS SDKs read,
    is honoured too. The client waits ``READ_TIMEOUT`` (70) seconds for
    a response, longer than a long poll. It makes one attempt per call:
    :class:`~activities.ActivityClient` retries the activity calls with the framework's policy
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
        direct: let :class:`~activities.ActivityClient` make the activity API's four calls
            (polls, outcomes, heartbeats) over connections of its own, signed with this
            client's credentials, instead of through botocore: about four times less CPU
            per call (see ``activities._aws.wire``; connections, TLS and proxies as
            botocore sets them up, on urllib3's pool). ``False`` sends them through
            botocore, where event hooks and instrumentation (X-Ray, OpenTelemetry) see them.
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
        client = session.client("stepfunctions", endpoint_url=endpoint_url, config=config)
    except botocore.exceptions.NoRegionError:
        msg = (
            "no AWS Region is configured: set AWS_REGION or AWS_DEFAULT_REGION (or a "
            "profile's region), or pass region_name (--region on the command line)"
        )
        raise ConfigurationError(msg) from None
    except botocore.exceptions.ProfileNotFound as exc:
        raise ConfigurationError(str(exc)) from None
    if direct:
        allow_direct(client)
    return client


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
    from, see :mod:`activities.worker._forkserver`) keeps what it read.
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


#: The attribute of a client that says which call timeout :func:`set_call_timeout` set.
_CALL_TIMEOUT_SET = "_sfn_activities_call_timeout"


def set_call_timeout(client: SFNClient, seconds: float) -> None:
    """Make ``client`` wait ``seconds`` for the answer to a call that is not a long poll.

    botocore 1.43.68 and later take a read timeout per call from the request's context;
    older ones ignore it and wait the client's own read timeout.
    """
    events = getattr(getattr(client, "meta", None), "events", None)
    if events is None:  # a stand-in for a botocore client, in tests
        return
    if getattr(client, _CALL_TIMEOUT_SET, None) == seconds:
        # Set before the fork (see activities.worker._forkserver): registering again would be a
        # no-op that still inspects the handler's signature.
        return

    def set_timeout(context: dict[str, Any], **_: Any) -> None:
        context["read_timeout"] = seconds

    for operation in SHORT_CALLS:
        events.register(
            f"before-call.sfn.{operation}",
            set_timeout,
            unique_id=f"sfn-activities-timeout-{operation}-{seconds}",
        )
    setattr(client, _CALL_TIMEOUT_SET, seconds)
