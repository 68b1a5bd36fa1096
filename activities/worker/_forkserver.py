"""Where task processes come from: a forkserver that imported what they need, once.

Task processes are forked from a *forkserver*, a single-threaded process that forks one on
each request (:mod:`multiprocessing`'s ``forkserver`` start method). Every task process,
replacements of crashed or recycled ones included, starts as a copy of it: the pages of
what it imported are shared instead of made again in every process. It comes about in one
of two ways:

- **a copy of the worker's process** (by default, on Linux): as the worker starts, once it
  has created its activities and closed its connections, before it starts a thread, it
  makes the client its task processes would make (:mod:`activities.worker._forkserver`), freezes its
  heap (:func:`gc.freeze`) and forks the forkserver, and multiprocessing's resource
  tracker with it (gunicorn's ``--preload``).
  What the worker imported (the framework, boto3, the activities' modules) is then shared
  by all its processes, the worker's own included; the modules are imported once, by the
  worker alone, so ``if __name__ == "__main__":`` blocks never run twice.
- **a new interpreter** that imports the framework and, unless preloading is off
  (``Worker(preload=False)``, ``--no-preload``), the activities' modules
  (:mod:`activities.worker._preload`): when preloading is off, when threads already run in the
  worker's process as it starts (a fork would copy their locks, not them), and off Linux.

What spawn gave is kept either way: the forkserver runs no thread, so none is copied into
a child; a child gets the worker's environment and working directory of the moment it
starts (see :class:`StartState`), not those of the moment the forkserver started. SIGINT
and SIGTERM (:data:`STOP_SIGNALS`) are blocked in the forkserver, which a Ctrl-C or a
systemd stop reaches with the rest of the process group: it would die of them, and the
worker would lose track of its children; a child starts with them blocked, and ignores
them once it has set itself up.

**The client made before the fork** (:func:`premake`, :func:`take`): a Step Functions
client made before task processes fork, for each of them to take.

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
import gc
import importlib
import logging
import multiprocessing
import multiprocessing.connection
import multiprocessing.forkserver
import multiprocessing.resource_tracker
import multiprocessing.util
import os
import signal
import socket
import sys
import traceback
from multiprocessing import spawn
from typing import TYPE_CHECKING, Any

import attrs
import botocore.credentials
import botocore.exceptions

from activities._aws.sfnclient import CALL_TIMEOUT, make_client, new_session, set_call_timeout
from activities._aws.wire import Wire
from activities.errors import ConfigurationError

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping
    from multiprocessing.context import ForkServerContext

    from mypy_boto3_stepfunctions import SFNClient

__all__ = [
    "FRAMEWORK_MODULES",
    "PRELOAD_MAIN",
    "STOP_SIGNALS",
    "ProcessCredentials",
    "StartState",
    "can_fork",
    "preload_modules",
    "premake",
    "rename",
    "take",
    "task_process_context",
]

logger = logging.getLogger(__name__)

#: The names a forked forkserver and resource tracker go by (``ps -o comm``, ``top``);
#: task processes, forked from the forkserver, rename themselves.
FORKSERVER_NAME = "sfn-forkserver"
TRACKER_NAME = "sfn-tracker"

#: The modules of multiprocessing that a task process needs to unpickle what it is started
#: with (its pipes, the shared flags and their locks), which the worker's process has not
#: imported yet when it forks the forkserver: imported by each task process instead, they
#: would cost it about 1 MB of pages of its own (the import writes to the shared heap).
UNPICKLING_MODULES = (
    "multiprocessing.heap",
    "multiprocessing.popen_forkserver",
    "multiprocessing.sharedctypes",
    "multiprocessing.synchronize",
)

#: What the forkserver imports for every worker, last of all (it freezes the heap).
FRAMEWORK_MODULES = (
    *UNPICKLING_MODULES,
    "activities.worker._process",
    "activities.cli",
    "activities.worker._preload",
)

#: The environment variable that tells the forkserver the script to import as
#: ``__mp_main__``: the worker's own, when it defines activities.
PRELOAD_MAIN = "SFN_ACTIVITIES_PRELOAD_MAIN"

#: The signals that stop a worker; its children leave them to it.
STOP_SIGNALS = frozenset({signal.SIGINT, signal.SIGTERM})


def preload_modules(activity_modules: Iterable[str], *, preload: bool) -> list[str]:
    """What the forkserver imports: the activities' modules (if ``preload``), the framework."""
    modules = list(dict.fromkeys(activity_modules)) if preload else []
    return [*modules, *FRAMEWORK_MODULES]


#: multiprocessing's own state, which a forkserver forked from this process sets up as
#: its ``ensure_running`` would (private: as of Python 3.11 to 3.13; 3.14 adds an
#: authentication key to the forkserver, and gets new interpreters until this is checked
#: against it). What no public API does: tests/test_forkserver.py holds every attribute
#: of it against the running Python's, and fails when a release changes one.
_SERVER: Any = multiprocessing.forkserver._forkserver
_TRACKER: Any = multiprocessing.resource_tracker._resource_tracker
_ARBITRARY_ADDRESS: Callable[[str], str] = multiprocessing.connection.arbitrary_address  # type: ignore[attr-defined]


def can_fork() -> bool:
    """Whether the forkserver can be a copy of this process: Linux, and no other thread.

    Not once a forkserver runs (a second worker in the process shares it).
    """
    if sys.platform != "linux" or sys.version_info >= (3, 14) or _SERVER._forkserver_pid:
        return False
    try:
        return len(os.listdir("/proc/self/task")) == 1  # threads of C libraries included
    except OSError:
        return False


def task_process_context(modules: list[str], *, fork: bool) -> ForkServerContext:
    """The context task processes start in; starts its forkserver.

    With ``fork`` (see :func:`can_fork`), the forkserver is a copy of this process, which
    has imported ``modules`` already; otherwise it is a new interpreter that imports them.
    The forkserver is one per process: a second worker in the same process shares the one
    the first started (its children import what is missing when they start).
    """
    context = multiprocessing.get_context("forkserver")
    if fork:
        _fork_forkserver()
        logger.debug("task processes are forked from a copy of this process")
        _check(context, modules)
        return context
    main_path = None
    if "__main__" in modules:
        # A script run by path: multiprocessing (3.11) would not preload it; ours does.
        modules = [module for module in modules if module != "__main__"]
        main_path = spawn.get_preparation_data("preload").get("init_main_from_path")
    context.set_forkserver_preload(modules)
    if main_path is not None:
        os.environ[PRELOAD_MAIN] = main_path  # what the forkserver starts with
    try:
        multiprocessing.forkserver.ensure_running()
    finally:
        os.environ.pop(PRELOAD_MAIN, None)
    _check(context, modules)
    return context


def _check(context: ForkServerContext, modules: list[str]) -> None:
    """Fork a process that does nothing: the forkserver imported ``modules`` and forks.

    Raises:
        ConfigurationError: it did not: an import failed there (its traceback is on the
            worker's standard error).
    """
    probe = context.Process(target=_nothing, name="sfn-activities-forkserver-check")
    try:
        probe.start()
        probe.join()
    except (OSError, EOFError):
        pass
    if probe.exitcode == 0:
        return
    msg = (
        "the process task processes are forked from could not start: importing "
        f"{', '.join(modules)} failed there (its error is above); a module that cannot be "
        "imported twice, or only in the worker's process, needs --no-preload "
        "(Worker(preload=False))"
    )
    raise ConfigurationError(msg)


def _nothing() -> None:
    """What the forkserver's first child does."""


@attrs.frozen
class StartState:
    """The worker's environment and working directory when it started a task process."""

    environ: Mapping[str, str]
    cwd: str

    @classmethod
    def now(cls) -> StartState:
        """This process's, now."""
        return cls(environ=dict(os.environ), cwd=os.getcwd())

    def apply(self) -> None:
        """Make them this process's (a forked child has the forkserver's)."""
        if dict(os.environ) != self.environ:
            os.environ.clear()
            os.environ.update(self.environ)
        if os.getcwd() != self.cwd:
            os.chdir(self.cwd)


def _fork_forkserver() -> None:
    """Start the resource tracker and the forkserver as copies of this process.

    In place of :meth:`multiprocessing.forkserver.ForkServer.ensure_running`, which would
    start them as new interpreters: the same state is set up (the tracker's pipe, the
    forkserver's listening socket and "alive" pipe), so that multiprocessing's
    ``forkserver`` context then works as it always does.
    """
    for module in FRAMEWORK_MODULES[:-1]:  # the last one readies a new interpreter
        importlib.import_module(module)
    # No need to read botocore's data: the worker's own client and the premade one did,
    # into the loader make_client shares (a factory that does not call it would not use it).
    gc.collect()
    gc.freeze()  # kept off by the collector, the pages stay shared, the worker's too
    tracker = _TRACKER
    with tracker._lock:
        if tracker._fd is None:
            tracked, tracker_w = os.pipe()

            def track() -> None:
                os.close(tracker_w)
                multiprocessing.resource_tracker.main(tracked)

            tracker._pid = _fork(track, TRACKER_NAME)
            os.close(tracked)
            tracker._fd = tracker_w
    server = _SERVER
    with server._lock:
        if server._forkserver_pid is not None:
            return
        address = _ARBITRARY_ADDRESS("AF_UNIX")
        with socket.socket(socket.AF_UNIX) as listener:
            listener.bind(address)
            if not multiprocessing.util.is_abstract_socket_namespace(address):
                os.chmod(address, 0o600)
            listener.listen()
            # Every client holds the write end of the "alive" pipe: the forkserver ends
            # when the last of them has gone.
            alive_r, alive_w = os.pipe()

            def serve() -> None:
                os.close(alive_w)
                multiprocessing.forkserver.main(listener.fileno(), alive_r, [])

            server._forkserver_pid = _fork(serve, FORKSERVER_NAME)
            os.close(alive_r)
        server._forkserver_address = address
        server._forkserver_alive_fd = alive_w


def _fork(run: Callable[[], None], name: str) -> int:
    """Fork a child that runs ``run`` with the stop signals blocked, then exits; its pid.

    The signals are blocked before the fork, so that none reaches the child before it
    blocks them (it would run the worker's handlers). The child never returns here.
    """
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    pid = os.fork()
    if pid:
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        return pid
    code = 1
    try:
        rename(name)
        run()
        code = 0
    except SystemExit as exc:  # the forkserver's way out, when the worker has gone
        code = exc.code if isinstance(exc.code, int) else 0
    except BaseException:  # noqa: BLE001 - said on stderr, never raised into the worker's code
        traceback.print_exc()
    finally:
        os._exit(code)


def rename(name: str) -> None:
    """Give this process the name ``ps -o comm`` and ``top`` show (Linux; else nothing)."""
    with contextlib.suppress(OSError), open("/proc/self/comm", "w") as comm:
        comm.write(name)


# -- the client made before the fork ----------------------------------------------------


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
    handlers would copy the pages of botocore's event tables out of the shared heap. Its
    direct path (:meth:`Wire.of <activities._aws.wire.Wire.of>`, with its connection pool,
    still empty) is made too, for the same reason. Returns whether a client was made.
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
        Wire.of(client)  # its direct path too, which ActivityClient takes from the client
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
