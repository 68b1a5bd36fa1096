"""The worker: a supervisor that polls activities, and a pool of slots that run their tasks.

::

    Worker([Echo, Resize], processes=4).run()   # blocks; SIGTERM/SIGINT drain it

:class:`Worker` is this package's one public name. Its modules, in the order a task
travels:

1. ``_poll``: the supervisor's polls (the worker's own process makes every
   ``GetActivityTask``): a poll on every task list, more on busy ones, within the room;
2. ``_handoff``: each task a poll brings goes to a free slot, or waits in a bounded buffer,
   heartbeated; it owns the record of which slot runs which task (``_slotstate``) and the
   activities' ``max_concurrency``;
3. ``_process`` (the supervisor's side) and ``_taskprocess`` (inside): a task process
   receives the tasks handed to its slots; ``_threadslots`` holds the slots of the worker's
   own process instead (``threads`` alone), ``_slot`` what both promise the worker;
4. ``_loop`` (a slot's thread) and ``_asyncslots`` (async positions on the process's
   ``_eventloop``) run a task; ``_serving`` is what each does around it (its lines, who
   reports it), ``_heartbeats`` keeps it alive;
5. ``_delivery``: its outcome, retried until Step Functions takes it;
6. ``_stop``: a graceful drain, the shutdown grace, a stop at once; and this module, the
   supervisor, which starts the units (``_pool``; task processes are forked from
   ``_forkserver``, with the client made before the fork and what ``_preload`` read),
   replaces one that dies, fails the tasks it took with it, and recycles them
   (``_recycling``).

Beside them: ``_settings`` (the pool's shape), ``_control`` (the flags the supervisor
sets and task processes read), ``_childlog`` (how task processes log).
"""

from __future__ import annotations

import logging
import threading
import time
from typing import TYPE_CHECKING

from activities import registry
from activities._aws.outage import Hearing, OutageWatch
from activities._aws.sfnclient import CALL_TIMEOUT
from activities._ops import tracing
from activities._ops.endpoint import Operations
from activities._ops.metrics import NO_METRICS
from activities.client import ActivityClient
from activities.errors import WorkerCrashed, WorkerShutdown
from activities.outcome import failure_from_exception
from activities.worker._childlog import log_plan
from activities.worker._control import Control
from activities.worker._delivery import BackgroundDelivery
from activities.worker._handoff import HandOff
from activities.worker._loop import SlotSettings
from activities.worker._pool import process_units, start_forkserver, thread_context, thread_units
from activities.worker._process import TaskProcess, restart_reason
from activities.worker._settings import (
    SHUTDOWN_GRACE,
    SILENCE_WARNING,
    WorkerSettings,
    async_tasks_for,
    client_and_factory,
    plural,
)
from activities.worker._settings import concurrency_limits as concurrency_limits_of
from activities.worker._settings import heartbeat_intervals as heartbeat_intervals_of
from activities.worker._slot import take_all
from activities.worker._stop import Stop, stop_on_signals
from activities.worker._taskprocess import async_connections

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping, Sequence
    from multiprocessing.context import BaseContext

    from mypy_boto3_stepfunctions import SFNClient

    from activities._activity import Activity
    from activities._aws.retry import RetryPolicy
    from activities.task import Task
    from activities.worker._heartbeats import Heartbeats
    from activities.worker._slot import Slot, Unit
    from activities.worker._slotstate import Held

__all__ = ["Worker"]

logger = logging.getLogger(__name__)

#: Seconds to wait before replacing a process that died before it was ready.
RESTART_BACKOFF_CAP = 30.0

#: HTTP connections of the worker's own client beyond one per poll it may keep open:
#: heartbeats of waiting tasks, failures of tasks, creating activities.
PARENT_CONNECTIONS = 8


class Worker:
    """Serve activities: poll Step Functions for their tasks and run them in a pool.

    Args:
        activities: the Activity subclasses to serve; their names must be distinct.
        processes: how many processes run tasks (CPU-bound work); the number of CPUs by
            default.
        threads: with ``processes``, the task threads of each process (``processes`` x
            ``threads`` tasks at once, for I/O-bound work at real round trips); alone,
            run tasks in this many threads of the worker's own process instead.
        async_tasks: how many tasks of ``async def run()`` activities each task process
            (with ``threads`` alone: the worker's own process) runs at once on its event
            loop, besides its slots: *async positions*, served by a few threads of the
            process instead of a thread each (see :doc:`/async`). By default 100
            (``ASYNC_TASKS``) when an activity served is async, none otherwise; 0: none,
            async tasks run on the slots, one per slot.
        pollers: the most long polls open at once, all of them the worker's own process's
            (task processes poll nothing); by default one per task list served and up to
            64 more on the busy ones, never more than the slots and the buffer hold.
            Fewer than the task lists served leaves some without a poll.
        buffer: how many received tasks may wait for a free slot; one per task list
            served by default. Polls open and tasks held never exceed the slots and the
            buffer: no new poll starts while it is full.
        client: a function that makes a Step Functions client (each process calls it:
            it must be picklable, e.g. ``functools.partial(make_client, endpoint_url=...)``),
            or, with ``threads``, a client; :func:`~activities.make_client` by default,
            which follows boto3's usual chain in every process.
        worker_name: the ``workerName`` of polls; ``<host>-<pid>`` by default.
        prefix: put before every activity's name, e.g. ``"dev-"`` to serve ``dev-Echo``:
            one code base, a task list per environment.
        task_lists: the activity names or ARNs to serve a class on, by the class's
            ``name``, instead of its ``task_lists`` or ``name``: e.g.
            ``{"Resize": ["resize-gpu"]}``.
        heartbeat_intervals: seconds between automatic heartbeats, by the class's
            ``name``, instead of its ``heartbeat_interval`` (``None`` turns them off).
        max_concurrency: the most tasks of an activity run at once across the worker,
            by the class's ``name``, instead of its ``max_concurrency`` (``None``: no
            limit); its task lists are not polled while it is at the limit.
        shutdown_grace: seconds running tasks may take to finish after a graceful stop
            begins; those still running then fail with ``activities.WorkerShutdown``.
        max_tasks_per_process: replace a process after it ran this many tasks.
        max_memory_per_process: replace a process whose resident memory exceeds this
            many bytes after a task.
        preload: import the modules that define the activities once, in the process
            task processes are forked from, so that they share its pages (as the
            framework and boto3 always are); on Linux that process is a copy of the
            worker's own, made as it starts, unless another thread runs then. Turn it
            off for modules with import-time side effects (threads, connections, files
            opened) that each task process must make for itself.
        metrics_port: serve Prometheus metrics of the whole worker on this port, at
            ``/metrics``, with the probes ``/healthz`` (liveness) and ``/readyz``
            (readiness); 0 picks a free port (see :attr:`metrics_address`). Needs the
            ``prometheus`` extra: ``python3 -m pip install prometheus_client``.
        metrics_host: the address that port listens on; ``0.0.0.0`` in a container.
        retry: how calls that failed for a passing reason (throttling, 5xx, timeouts)
            are retried: :class:`~activities.RetryPolicy` by default. Outcomes are retried
            until Step Functions takes them, polls as long as the worker runs.
        call_timeout: seconds to wait for the answer to a call that is not a long poll
            (outcomes, heartbeats, registration), so that a hung call is retried soon.
        silence_warning: seconds without an answer from Step Functions, while a call is
            due one, before a warning says so (repeated every minute while it lasts; an
            INFO line says when it answers again).

    Raises:
        ConfigurationError: a setting is out of range, ``client`` is a client while
            tasks run in processes (a client cannot cross processes), or
            ``metrics_port`` is given without ``prometheus_client`` installed.
    """

    def __init__(
        self,
        activities: Iterable[type[Activity]],
        *,
        processes: int | None = None,
        threads: int | None = None,
        async_tasks: int | None = None,
        pollers: int | None = None,
        buffer: int | None = None,
        client: SFNClient | Callable[[], SFNClient] | None = None,
        worker_name: str | None = None,
        prefix: str = "",
        task_lists: Mapping[str, Sequence[str]] | None = None,
        heartbeat_intervals: Mapping[str, float | None] | None = None,
        max_concurrency: Mapping[str, int | None] | None = None,
        shutdown_grace: float = SHUTDOWN_GRACE,
        max_tasks_per_process: int | None = None,
        max_memory_per_process: int | None = None,
        preload: bool = True,
        metrics_port: int | None = None,
        metrics_host: str = "127.0.0.1",
        retry: RetryPolicy | None = None,
        call_timeout: float = CALL_TIMEOUT,
        silence_warning: float = SILENCE_WARNING,
    ) -> None:
        self.served = registry.task_lists(activities, prefix=prefix, overrides=task_lists)
        self.activities = {activity.name: activity for activity in self.served.values()}
        self.heartbeat_intervals = heartbeat_intervals_of(self.activities, heartbeat_intervals)
        self.max_concurrency = concurrency_limits_of(self.activities, max_concurrency)
        self.settings = WorkerSettings(
            processes=processes,
            threads=threads,
            async_tasks=async_tasks_for(self.activities.values(), async_tasks),
            pollers=pollers,
            buffer=buffer,
            shutdown_grace=shutdown_grace,
            max_tasks_per_process=max_tasks_per_process,
            max_memory_per_process=max_memory_per_process,
            call_timeout=call_timeout,
            silence_warning=silence_warning,
        )
        self._client_factory, sfn = client_and_factory(
            client,
            use_threads=self.settings.use_threads,
            connections=self.settings.polls_at_most(len(self.served))
            + PARENT_CONNECTIONS
            + (self._thread_connections() if self.settings.use_threads else 0),
        )
        self.client = ActivityClient(
            sfn, worker_name=worker_name, retry=retry, call_timeout=call_timeout
        )
        self.preload = preload
        self._operations = None if metrics_port is None else Operations(metrics_host, metrics_port)
        self._metrics = NO_METRICS
        # Thread slots' (see thread_context); the forkserver's once it starts, with processes.
        self._context: BaseContext = thread_context()
        self._control: Control | None = None
        self._new_unit: Callable[[list[int]], Unit] | None = None
        self._heartbeats: Heartbeats | None = None
        self._handoff: HandOff | None = None
        self._failures: BackgroundDelivery | None = None
        self._stop: Stop | None = None
        self._watch: OutageWatch | None = None
        self._units: set[Unit] = set()
        self._slots: Sequence[Slot] | None = None
        self._lock = threading.Lock()
        self._running = False
        self._stopping = threading.Event()
        self._terminating = threading.Event()
        self._stopped = threading.Event()
        self._starting = False
        self._drain_begun = threading.Lock()  # taken once, never released: one drain
        self._deadline: float | None = None
        self._restart_failures = 0
        self._started_slots = 0
        self._all_started = threading.Event()
        self.clean = True

    def _thread_connections(self) -> int:
        """HTTP connections of the calls of thread slots and async positions in this process."""
        return (self.settings.threads or 1) + async_connections(self.settings.async_tasks)

    # -- lifecycle ----------------------------------------------------------------------

    @property
    def metrics_address(self) -> tuple[str, int] | None:
        """The host and port of the metrics and probes, while they are served."""
        return None if self._operations is None else self._operations.address

    def start(self) -> None:
        """Create (or find) the activities and start the slots; returns at once."""
        if self._running or self._stopping.is_set():
            return
        self._starting = True
        try:
            self._start()
        except BaseException:
            if self._operations is not None:
                self._operations.close()
            raise
        finally:
            self._starting = False
        # A stop asked for while starting (a signal, stop() from another thread) was only
        # noted: it is carried out now.
        if self._terminating.is_set():
            self._stopping.set()
            self._terminate_started()
        elif self._stopping.is_set():
            self._begin_drain()

    def _start(self) -> None:
        operations = self._operations
        # Before any task process exists, so that they all count under it.
        metrics_dir = None if operations is None else operations.prepare()
        arns = registry.register(self.client, self.served)
        forkserver = None
        if not self.settings.use_threads:
            forkserver = self._context = start_forkserver(
                self.settings,
                (activity.__module__ for activity in self.activities.values()),
                preload=self.preload,
                client=self.client,
                factory=self._client_factory,
            )
        if operations is not None:
            self._metrics = operations.metrics()
        by_arn = {arns[task_list]: activity for task_list, activity in self.served.items()}
        names = list(self.activities)
        control = self._control = Control(
            self._context, list(by_arn), slots=self.settings.concurrency
        )
        self.client.hearing = Hearing(control.answered, control.overdue, control.slots)
        self._watch = OutageWatch(
            control.answered, control.overdue, after=self.settings.silence_warning
        )
        self._failures = BackgroundDelivery(
            self.client, self._control.give_up, metrics=self._metrics
        )
        settings = SlotSettings(
            by_arn=by_arn,
            heartbeat_intervals=self.heartbeat_intervals,
            worker_name=self.client.worker_name,
            client_factory=self._client_factory,
            max_tasks=self.settings.max_tasks_per_process,
            max_memory=self.settings.max_memory_per_process,
            log_plan=log_plan(),
            metrics_dir=metrics_dir,
            retry=self.client.retry,
            call_timeout=self.client.call_timeout,
        )
        if forkserver is None:
            self._new_unit, self._heartbeats = thread_units(
                self.settings,
                settings,
                control,
                self,
                self._context,
                client=self.client,
                metrics=self._metrics,
            )
        else:
            self._new_unit, self._heartbeats = process_units(
                self.settings,
                settings,
                control,
                self,
                forkserver,
                client=self.client,
                metrics=self._metrics,
            )
        self._handoff = HandOff(
            self.client,
            self._control,
            by_arn=by_arn,
            capacity=self.settings.buffer or len(by_arn),
            heartbeats=self._heartbeats,
            intervals=self.heartbeat_intervals,
            slots=self._current_slots,
            fail=self._fail_task,
            metrics=self._metrics,
            sync_positions=self.settings.sync_positions(),
            most_polls=self.settings.polls_at_most(len(by_arn)),
            groups=[names.index(activity.name) for activity in by_arn.values()],
            limits=[self.max_concurrency[name] for name in names],
        )
        self._stop = Stop(
            control,
            self._handoff,
            units=self._current_units,
            fail=self._fail,
            failures=self._failures,
            grace=self.settings.shutdown_grace,
        )
        if operations is not None:
            operations.serve(
                slots=control.slots,
                stopping=control.stopping.is_set,
                names=[arn.rpartition(":")[2] for arn in control.arns],
                handoff=self._handoff,
                started=self._all_started,
                lock=self._lock,
                async_positions=self.settings.async_positions(),
            )
        self._running = True
        if self._stopping.is_set():
            return  # stopped while starting: no unit starts only to be drained
        for positions in self.settings.units():
            self._start_unit(positions)
        self._handoff.start()
        self._watch.start()
        shortage = self.settings.short_of_polls(len(self.served))
        if shortage:
            logger.warning("%s", shortage)
        if self.settings.async_tasks and not any(
            activity._is_async() for activity in self.activities.values()
        ):
            logger.warning(
                "async_tasks: none of the activities served has an async def run(), so the "
                "%d async positions stay idle; leave async_tasks out",
                self.settings.async_tasks,
            )
        logger.info(
            "worker %s serving %s with %s; up to %s may wait for a free slot",
            self.client.worker_name,
            ", ".join(self.served),
            self.settings.describe(),
            plural(self._handoff.capacity, "task"),
        )

    def stop(self, timeout: float | None = None) -> bool:
        """Stop gracefully and wait (up to ``timeout``) until stopped; ``True`` if stopped.

        No new poll is started; polls in flight return and what they bring runs; running
        tasks get ``shutdown_grace`` seconds, then fail with ``activities.WorkerShutdown``.
        """
        self.request_stop()
        return self.join(timeout)

    def request_stop(self) -> None:
        """Begin a graceful stop without waiting for it."""
        if self._stopping.is_set():
            return
        self._deadline = time.monotonic() + self.settings.shutdown_grace
        self._stopping.set()
        if self._starting:
            return  # start() carries it out as soon as it has started
        if self._stop is None or self._control is None:  # never started
            self._stopped.set()
            return
        self._begin_drain()

    def _begin_drain(self) -> None:
        """Stop polling and drain the units, in a thread of its own; once."""
        if not self._drain_begun.acquire(blocking=False):
            return  # begun already (or being begun, in the frame this one interrupted)
        assert self._stop is not None  # noqa: S101 - started
        assert self._control is not None  # noqa: S101 - started
        self._control.stopping.set()
        self._stop.announce()
        threading.Thread(target=self._drain, name="sfn-activities-drain", daemon=True).start()

    def terminate(self) -> None:
        """Stop at once: fail running tasks with WorkerShutdown, stop the processes.

        Polls in flight are abandoned. Does nothing once the worker has stopped.
        """
        if self._stopped.is_set():
            return
        self._terminating.set()
        self._stopping.set()
        self.clean = False
        if self._starting:
            return  # start() carries it out as soon as it has started
        if self._stop is None:  # never started
            self._stopped.set()
            return
        self._terminate_started()

    def _terminate_started(self) -> None:
        assert self._stop is not None  # noqa: S101 - started
        self._stop.at_once()
        self._finish()

    def join(self, timeout: float | None = None) -> bool:
        """Wait until the worker has stopped; ``True`` if it has."""
        return self._stopped.wait(timeout)

    def run(self) -> int:
        """Serve until SIGINT or SIGTERM; the exit code: 0 after a clean drain.

        The first signal stops gracefully (see :meth:`stop`), a second one at once
        (see :meth:`terminate`). Call from the main thread.
        """
        with stop_on_signals(graceful=self.request_stop, at_once=self.terminate):
            self.start()
            while not self._stopped.wait(0.5):
                pass
        return 0 if self.clean else 1

    # -- what slots report ----------------------------------------------------------------

    def on_ready(self, unit: Unit) -> None:
        """A unit is up: tasks can be handed to its slots."""
        self._restart_failures = 0
        with self._lock:
            self._started_slots += len(unit.slots)
            first_time_all = self._started_slots == self.settings.concurrency
        if first_time_all:
            self._all_started.set()
            slots = self.settings.concurrency
            positions = len(self.settings.async_positions())
            ready = "the slot is" if slots == 1 else f"all {slots} slots are"
            among = f" ({positions} of them async positions)" if positions else ""
            logger.info("ready: %s up%s", ready, among)

    def on_recycle(self, unit: Unit) -> None:
        """A task process is to be recycled: hand it no more tasks; it ends when done."""
        if self._handoff is not None:
            self._handoff.close_slots(unit.slots)

    def on_free(self) -> None:
        """A slot is free while tasks wait for one: hand one over now."""
        if self._handoff is not None:
            self._handoff.nudge()

    def on_exit(self, unit: Unit, reason: str, *, was_ready: bool) -> None:
        """A unit ended: fail the tasks its slots held, and replace it unless stopping."""
        with self._lock:
            self._units.discard(unit)
            self._slots = None
        is_process = isinstance(unit, TaskProcess)
        if isinstance(unit, TaskProcess) and self._operations is not None:
            self._operations.process_ended(unit.process.pid)
        if self._control is not None:
            for slot in unit.slots:
                self._control.overdue[slot.position] = 0.0  # its calls are over too
        # What it answered for and had not reported: it took none of it with it.
        taken = take_all([unit])
        for held in taken:
            error = WorkerCrashed(f"the {unit.kind} running the task died ({reason})")
            self._fail(held, error)
        if not taken and not was_ready and not self._stopping.is_set():
            self._restart_failures += 1
            logger.error("%s ended before it was ready (%s)", unit.name, reason)
        if self._stopping.is_set():
            return
        pause = min(RESTART_BACKOFF_CAP, 2**self._restart_failures - 1)
        if pause:
            self._stopping.wait(pause)
        if not self._stopping.is_set():
            if is_process:
                self._metrics.process_restarted(restart_reason(reason))
            self._start_unit([slot.position for slot in unit.slots])

    # -- machinery ----------------------------------------------------------------------

    def _current_units(self) -> list[Unit]:
        with self._lock:
            return list(self._units)

    def _current_slots(self) -> Sequence[Slot]:
        """The slots of the units running now, by position (kept until a unit changes)."""
        slots = self._slots
        if slots is None:
            with self._lock:
                slots = [slot for unit in self._units for slot in unit.slots]
                slots.sort(key=lambda slot: slot.position)
                slots = self._slots = tuple(slots)
        return slots

    def _start_unit(self, positions: list[int]) -> None:
        assert self._new_unit is not None  # noqa: S101 - started
        unit = self._new_unit(positions)
        with self._lock:
            self._units.add(unit)
            self._slots = None
        unit.start()

    def _drain(self) -> None:
        """Drain the slots (see activities.worker._stop), then say the worker stopped."""
        assert self._stop is not None  # noqa: S101 - stopping
        assert self._deadline is not None  # noqa: S101 - stopping
        delivered = self._stop.drain(self._deadline, self._terminating)
        if self._terminating.is_set():
            return
        if not delivered:
            self.clean = False
        logger.info("stopped")
        self._finish()

    def _fail(self, held: Held, error: Exception) -> None:
        """Fail a task a slot held on the worker's behalf, in the background.

        One the slot had finished may have been reported before its process died: then
        Step Functions' saying it is closed is no news.
        """
        self._fail_task(held.as_task(self.client.worker_name), error, sent=held.sent)

    def _fail_task(self, task: Task, error: Exception, *, sent: bool = False) -> None:
        """Fail a task on the worker's behalf, in the background; say which, and why.

        A line per task (ERROR for a crash, WARNING for a stop), and a span when tracing
        (a dead process's span of it is lost). ``sent``: its outcome may have landed.
        """
        assert self._failures is not None  # noqa: S101 - started
        if isinstance(error, WorkerShutdown):
            self.clean = False
        failure = failure_from_exception(error)
        logger.log(
            logging.ERROR if isinstance(error, WorkerCrashed) else logging.WARNING,
            "task %s of %s failed with %s: %s%s",
            task.token_prefix,
            task.activity_name,
            failure.error,
            error,
            " (unless the outcome it was sending landed)" if sent else "",
            extra={
                "activity": task.activity_name,
                "token_prefix": task.token_prefix,
                "outcome": "failed",
                "error": failure.error,
            },
        )
        tracing.failed_by_worker(task, failure, error, sent=sent)
        self._failures.send(task, failure, sent=sent)

    def _finish(self) -> None:
        if self._watch is not None:
            self._watch.close()
        if self._handoff is not None:
            self._handoff.close()
        if self._heartbeats is not None:
            self._heartbeats.close()
        if self._operations is not None:
            self._operations.close()
        self._stopped.set()
