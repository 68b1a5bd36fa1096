"""The worker's units: what it starts for each set of positions, in threads or processes.

The worker starts one *unit* per set of positions that :meth:`WorkerSettings.units
<activities.worker._settings.WorkerSettings.units>` gives, and a new one in the place of one that
ended. :func:`thread_units` makes them in the worker's own process (``threads`` alone): a
:class:`~activities.worker._threadslots.ThreadSlot` per thread, and an
:class:`~activities.worker._threadslots.AsyncUnit` for the async positions;
:func:`process_units` makes a :class:`~activities.worker._process.TaskProcess` per process,
with its slots and its async positions, forked from the forkserver :func:`start_forkserver`
starts. What the slots share
with the worker (:class:`~activities.worker._control.Control`, each unit's
:class:`~activities.worker._slotstate.Cells`) is made in the context :func:`thread_context`
gives for the first, the forkserver's for the second.
"""

from __future__ import annotations

import functools
import multiprocessing
from typing import TYPE_CHECKING

from activities.worker._forkserver import can_fork, preload_modules, premake, task_process_context
from activities.worker._heartbeats import Heartbeats
from activities.worker._loop import outcome_sender
from activities.worker._process import TaskProcess
from activities.worker._serving import GraceWatch
from activities.worker._taskprocess import task_process_connections
from activities.worker._threadslots import AsyncUnit, ThreadSlot, thread_heartbeats

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable
    from multiprocessing.context import BaseContext, ForkServerContext

    from mypy_boto3_stepfunctions import SFNClient

    from activities._ops.metrics import Metrics
    from activities.client import ActivityClient
    from activities.worker._control import Control
    from activities.worker._loop import SlotSettings
    from activities.worker._settings import WorkerSettings
    from activities.worker._slot import SlotOwner, Unit

__all__ = ["process_units", "start_forkserver", "thread_context", "thread_units"]


def thread_context() -> BaseContext:
    """The context of what thread slots share: one that starts no resource tracker.

    Nothing of it leaves the worker's process. The ``spawn`` and ``forkserver`` contexts
    name their semaphores, so that a new process can open them, and so start
    multiprocessing's resource tracker, a process of about 7 MiB, to remove the names
    should the worker die; the ``fork`` context's semaphores are unnamed as they are made.
    No process is forked from it. Where there is no ``fork`` (Windows), ``spawn``.
    """
    method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
    return multiprocessing.get_context(method)


def thread_units(
    pool: WorkerSettings,
    settings: SlotSettings,
    control: Control,
    owner: SlotOwner,
    context: BaseContext,
    *,
    client: ActivityClient,
    metrics: Metrics,
) -> tuple[Callable[[list[int]], Unit], Heartbeats]:
    """The units of the worker's own process, and the heartbeats their tasks share."""
    heartbeats = thread_heartbeats(client, pool.concurrency, metrics=metrics)
    shared = (settings, control, owner, context)
    grace = GraceWatch(control)
    sender = outcome_sender(pool.threads or 1)

    def make(at: list[int]) -> Unit:
        if pool.is_async_position(at[0]):
            return AsyncUnit(
                *shared, client=client, heartbeats=heartbeats, grace=grace, positions=at
            )
        return ThreadSlot(
            *shared,
            client=client,
            heartbeats=heartbeats,
            grace=grace,
            sender=sender,
            position=at[0],
        )

    return make, heartbeats


def process_units(
    pool: WorkerSettings,
    settings: SlotSettings,
    control: Control,
    owner: SlotOwner,
    forkserver: ForkServerContext,
    *,
    client: ActivityClient,
    metrics: Metrics,
) -> tuple[Callable[[list[int]], Unit], Heartbeats]:
    """The task processes, and the heartbeats of the tasks waiting in the worker's buffer."""
    heartbeats = Heartbeats(client, on_stuck=lambda _: None, metrics=metrics)
    process = functools.partial(TaskProcess, settings, control, owner, forkserver)

    def make(at: list[int]) -> Unit:
        return process(
            positions=[each for each in at if not pool.is_async_position(each)],
            async_positions=[each for each in at if pool.is_async_position(each)],
        )

    return make, heartbeats


def start_forkserver(
    pool: WorkerSettings,
    activity_modules: Iterable[str],
    *,
    preload: bool,
    client: ActivityClient,
    factory: Callable[[], SFNClient] | None,
) -> ForkServerContext:
    """Start the process task processes are forked from (see :mod:`activities.worker._forkserver`).

    A copy of the worker's process when it can be: then ``client`` is closed first (the
    copy must hold none of its connections) and the task processes' client is made.
    """
    modules = preload_modules(activity_modules, preload=preload)
    fork = preload and can_fork()
    if fork:
        # A copy of the worker's process must hold none of its connections; its
        # client opens new ones as it needs them.
        client.close()
        premake(
            factory,
            connections=task_process_connections(pool.slots_per_unit, pool.async_tasks or 0),
            call_timeout=client.call_timeout,
        )
    return task_process_context(modules, fork=fork)
