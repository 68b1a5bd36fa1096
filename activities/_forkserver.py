"""Where task processes come from: a forkserver that imported what they need, once.

Task processes are forked from a *forkserver*, a single-threaded process the worker
starts (:mod:`multiprocessing`'s ``forkserver`` start method). It imports, before it forks
anything, the framework, boto3 and botocore with the Step Functions model read
(:mod:`activities._preload`) and, unless told not to, the modules that define the
activities served (gunicorn's ``--preload``); then it freezes its heap. Every task
process, replacements of crashed or recycled ones included, starts as a copy of it: the
pages of those imports are shared instead of made again in every process.

What spawn gave is kept: the forkserver runs no thread, so none is copied into a child;
a child gets the worker's environment and working directory of the moment it starts (see
:class:`StartState`), not those of the moment the forkserver started. SIGINT and SIGTERM
(:data:`STOP_SIGNALS`) are blocked in the forkserver, which a Ctrl-C or a systemd stop
reaches with the rest of the process group: it would die of them, and the worker would
lose track of its children; a child starts with them blocked, and ignores them once it
has set itself up. A script's ``if __name__ == "__main__":`` block does not run in it.
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.forkserver
import os
import signal
from multiprocessing import spawn
from typing import TYPE_CHECKING

import attrs

from activities.errors import ConfigurationError

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping
    from multiprocessing.context import ForkServerContext

__all__ = [
    "FRAMEWORK_MODULES",
    "PRELOAD_MAIN",
    "STOP_SIGNALS",
    "StartState",
    "preload_modules",
    "task_process_context",
]

#: What the forkserver imports for every worker, last of all (it freezes the heap).
FRAMEWORK_MODULES = ("activities._process", "activities.cli", "activities._preload")

#: The environment variable that tells the forkserver the script to import as
#: ``__mp_main__``: the worker's own, when it defines activities.
PRELOAD_MAIN = "SFN_ACTIVITIES_PRELOAD_MAIN"

#: The signals that stop a worker; its children leave them to it.
STOP_SIGNALS = frozenset({signal.SIGINT, signal.SIGTERM})


def preload_modules(activity_modules: Iterable[str], *, preload: bool) -> list[str]:
    """What the forkserver imports: the activities' modules (if ``preload``), the framework."""
    modules = list(dict.fromkeys(activity_modules)) if preload else []
    return [*modules, *FRAMEWORK_MODULES]


def task_process_context(modules: list[str]) -> ForkServerContext:
    """The context task processes start in; starts its forkserver, importing ``modules``.

    The forkserver is one per process: a second worker in the same process shares the one
    the first started (its children import what is missing when they start).
    """
    context = multiprocessing.get_context("forkserver")
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
