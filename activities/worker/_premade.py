"""A Step Functions client made before task processes fork, for each of them to take.

Making a botocore client allocates a few megabytes (the service model, the client's
class, its event handlers, its endpoint); made in every task process, that is a few
megabytes of private memory each. Made once in the worker, before the process task
processes are forked from is forked itself (:mod:`activities.worker._forkserver`), its pages
are shared instead, and each task process takes its copy.

Only a client that is safe to copy is made this way:

- the one a task process would make anyway: :func:`~activities.make_client` by default,
  or a ``functools.partial`` of it (what ``activities worker`` passes); a factory of the
  user's own may do anything (open a connection, start a thread), so each task process
  calls it;
- never used before it is copied: its connection pool is empty, so no socket is shared;
- its credentials are not resolved before the copy: :class:`ProcessCredentials` lets each
  process that uses the client resolve them by boto3's usual chain at its first call,
  so that no process shares another's credential refreshes (an instance role's, say) or
  the connections they use;
- taken only by a task process that starts with the environment and working directory it
  was made in (:class:`~activities.worker._forkserver.StartState`), and by one only: a process
  whose environment differs (a test that changed it, a second worker) makes its own.
"""

from __future__ import annotations

import contextlib
import functools
import os
from typing import TYPE_CHECKING, Any

import botocore.credentials
import botocore.exceptions

from activities._aws.sfnclient import CALL_TIMEOUT, make_client, new_session, set_call_timeout
from activities.worker._forkserver import StartState

if TYPE_CHECKING:
    from collections.abc import Callable

    from mypy_boto3_stepfunctions import SFNClient

__all__ = ["ProcessCredentials", "premake", "take"]


class ProcessCredentials:
    """Credentials that each process resolves by boto3's chain when it first signs a call.

    Args:
        resolver: botocore's chain (``botocore.credentials.create_credential_resolver``).
    """

    method = "sfn-activities-per-process"

    def __init__(self, resolver: botocore.credentials.CredentialResolver) -> None:
        self._resolver = resolver
        self._pid: int | None = None
        self._found: botocore.credentials.Credentials | None = None

    def resolved(self) -> botocore.credentials.Credentials:
        """This process's credentials, found by the chain the first time it asks.

        Raises:
            botocore.exceptions.NoCredentialsError: the chain found none.
        """
        if self._pid != os.getpid():
            found = self._resolver.load_credentials()
            if found is None:
                raise botocore.exceptions.NoCredentialsError
            self._found, self._pid = found, os.getpid()
        assert self._found is not None  # noqa: S101 - set with _pid, above
        return self._found

    def get_frozen_credentials(self) -> botocore.credentials.ReadOnlyCredentials:
        """What botocore signs a request with."""
        return self.resolved().get_frozen_credentials()

    def get_deferred_property(self, name: str) -> Callable[[], Any]:
        """A property read when botocore needs it (the account ID of endpoint rules)."""
        return lambda: getattr(self.resolved(), name, None)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self.resolved(), name)


class _PerProcess:
    """botocore's ``credential_provider`` component, handing out :class:`ProcessCredentials`."""

    def __init__(self, credentials: ProcessCredentials) -> None:
        self._credentials = credentials

    def load_credentials(self) -> ProcessCredentials:
        return self._credentials


def _make_client_arguments(
    factory: Callable[[], SFNClient] | None, connections: int
) -> dict[str, Any] | None:
    """The arguments of the :func:`make_client` call a task process would make, if known."""
    if factory is None:
        return {"max_pool_connections": connections}
    if (
        isinstance(factory, functools.partial)
        and factory.func is make_client
        and not factory.args
        and "session" not in factory.keywords
    ):
        return dict(factory.keywords)
    return None


#: The premade client, with the arguments and the start state it was made with.
_premade: tuple[dict[str, Any], StartState, SFNClient] | None = None


def premake(
    factory: Callable[[], SFNClient] | None,
    *,
    connections: int,
    call_timeout: float = CALL_TIMEOUT,
) -> bool:
    """Make, in the worker before the fork, the client its task processes would make.

    ``factory`` and ``connections`` as a task process has them (``connections`` is used
    when there is no factory). Nothing is made for a factory of the user's own, and
    nothing when making it fails: each task process then makes its own and says why.
    The client waits ``call_timeout`` for short calls already (see
    :func:`~activities._aws.sfnclient.set_call_timeout`): registered in a task process, the
    handlers would copy the pages of botocore's event tables out of the shared heap.
    Returns whether a client was made.
    """
    global _premade  # noqa: PLW0603 - one per process, taken by the first task process
    arguments = _make_client_arguments(factory, connections)
    if arguments is None:
        return False
    with contextlib.suppress(Exception):
        session = new_session(arguments.get("profile_name"), arguments.get("region_name"))
        core = session._session
        resolver = botocore.credentials.create_credential_resolver(core)
        core.register_component("credential_provider", _PerProcess(ProcessCredentials(resolver)))
        others = {
            key: value
            for key, value in arguments.items()
            if key not in {"profile_name", "region_name"}  # the session's, above
        }
        client = make_client(session=session, **others)
        set_call_timeout(client, call_timeout)
        _premade = (arguments, StartState.now(), client)
        return True
    return False


def take(
    factory: Callable[[], SFNClient] | None, start: StartState, *, connections: int
) -> SFNClient | None:
    """The premade client, if it is the one this task process would make; once only."""
    global _premade  # noqa: PLW0603 - taken once
    if _premade is None:
        return None
    arguments, made_in, client = _premade
    _premade = None
    if arguments != _make_client_arguments(factory, connections) or made_in != start:
        return None
    return client
