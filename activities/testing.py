"""Run activities in-process, without AWS: for the tests of a project's activities.

::

    from activities.testing import ActivityEnvironment

    def test_echo():
        report = ActivityEnvironment().run(Echo, '{"value": 42}')
        assert report.result == 42

The task goes through exactly what a worker does with it (the transport, the mapping of
exceptions to failures, the output limits, heartbeats) with Step Functions replaced by a
stand-in that counts heartbeats and can cancel the task. An ``async def run()`` runs
too: :meth:`ActivityEnvironment.run` on a loop of its own, from a sync test, or ``await``
:meth:`ActivityEnvironment.run_async` from an async one.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import TYPE_CHECKING, Any

import attrs

from activities import _runner
from activities.errors import TaskGone
from activities.outcome import Cancelled, Failure, Outcome, Success
from activities.task import Task

if TYPE_CHECKING:
    from activities._activity import Activity
    from transport import Transport

__all__ = ["TEST_ARN_PREFIX", "TEST_TOKEN", "ActivityEnvironment", "TaskReport"]

#: The token of tasks run in an :class:`ActivityEnvironment`.
TEST_TOKEN = "test-task-token"  # noqa: S105 - a stand-in, not a secret

#: The ARN prefix of activities run in an :class:`ActivityEnvironment`.
TEST_ARN_PREFIX = "arn:aws:states:us-east-1:123456789012:activity:"


@attrs.frozen
class TaskReport:
    """What happened to a task run in an :class:`ActivityEnvironment`.

    Attributes:
        outcome: what a worker would have sent: :class:`~activities.Success`,
            :class:`~activities.Failure`, or :class:`~activities.Cancelled` (nothing sent).
        heartbeats: heartbeats that reached the stand-in Step Functions, before any
            cancellation.
        transport: the activity's transport, used to decode :attr:`result`.
    """

    outcome: Outcome
    heartbeats: int
    transport: Transport = attrs.field(repr=False)

    @property
    def succeeded(self) -> bool:
        """Whether the task succeeded."""
        return isinstance(self.outcome, Success)

    @property
    def cancelled(self) -> bool:
        """Whether the task ended cancelled, with nothing sent."""
        return isinstance(self.outcome, Cancelled)

    @property
    def output(self) -> str:
        """The encoded output of a successful task, as Step Functions would get it.

        Raises:
            AssertionError: the task did not succeed (the message says how it ended).
        """
        if not isinstance(self.outcome, Success):
            msg = f"the task did not succeed: {self.outcome!r}"
            raise AssertionError(msg)  # noqa: TRY004 - a failed expectation in a test
        return self.outcome.output

    @property
    def result(self) -> Any:
        """The output decoded by the activity's transport (JSON-shaped values)."""
        return self.transport.deserialize_result(self.output)

    @property
    def error(self) -> str | None:
        """The Step Functions ``error`` of a failed task, else ``None``."""
        return self.outcome.error if isinstance(self.outcome, Failure) else None

    @property
    def cause(self) -> str | None:
        """The ``cause`` of a failed task, else ``None``."""
        return self.outcome.cause if isinstance(self.outcome, Failure) else None


class ActivityEnvironment:
    """A stand-in for Step Functions that runs one task at a time in this process.

    Args:
        cancel_after_heartbeats: answer the heartbeat after this many as Step Functions
            does for a task that timed out, so the activity sees
            :class:`~activities.TaskCancelled`; ``None`` never cancels.
        cancel_after: for an ``async def run()``: seconds after which the task is gone, as
            when a worker's automatic heartbeat finds it so: its coroutine is cancelled
            at the ``await`` it is in. ``None`` never cancels.
        worker_name: the worker name the task reports.
    """

    def __init__(
        self,
        *,
        cancel_after_heartbeats: int | None = None,
        cancel_after: float | None = None,
        worker_name: str = "test-worker",
    ) -> None:
        if cancel_after_heartbeats is not None and cancel_after_heartbeats < 0:
            msg = f"cancel_after_heartbeats must be >= 0 or None, got {cancel_after_heartbeats}"
            raise ValueError(msg)
        if cancel_after is not None and not cancel_after >= 0:
            msg = f"cancel_after must be >= 0 or None, got {cancel_after}"
            raise ValueError(msg)
        self.cancel_after_heartbeats = cancel_after_heartbeats
        self.cancel_after = cancel_after
        self.worker_name = worker_name

    def run(self, activity: type[Activity] | Activity, input: str = "") -> TaskReport:  # noqa: A002 - Step Functions' word
        """Run one task with ``input`` (JSON text, as a state machine sends it).

        An ``async def run()`` runs on an event loop of its own (``asyncio.run``): call
        this from a sync test, :meth:`run_async` from an async one.

        Args:
            activity: an Activity subclass (instantiated without arguments) or instance.
            input: the task input; empty means no arguments.
        """
        if activity._is_async():
            return asyncio.run(self.run_async(activity, input))
        instance, task, heartbeats = self._prepare(activity, input)
        outcome = _runner.execute(instance, task, heartbeats)
        return TaskReport(outcome=outcome, heartbeats=heartbeats.sent, transport=instance.transport)

    async def run_async(self, activity: type[Activity] | Activity, input: str = "") -> TaskReport:  # noqa: A002
        """Run one task of an ``async def run()`` on the running event loop.

        Args:
            activity: an Activity subclass (instantiated without arguments) or instance.
            input: the task input; empty means no arguments.

        Raises:
            TypeError: the activity's ``run()`` is not ``async def`` (use :meth:`run`).
        """
        instance, task, heartbeats = self._prepare(activity, input)
        if not instance._is_async():
            msg = f"{type(instance).__qualname__}.run is not async def: use run(), not run_async()"
            raise TypeError(msg)
        running = asyncio.ensure_future(_runner.execute_async(instance, task, heartbeats))
        gone = False

        def go() -> None:
            nonlocal gone
            gone = True
            heartbeats.gone()
            running.cancel()

        if self.cancel_after is not None:
            later = asyncio.get_running_loop().call_later(self.cancel_after, go)
            running.add_done_callback(lambda _: later.cancel())
        outcome = await running
        if gone and not isinstance(outcome, Cancelled):
            # Caught the cancellation and returned: nothing is sent for a gone task.
            outcome = Cancelled("the task was gone (cancel_after)")
        return TaskReport(outcome=outcome, heartbeats=heartbeats.sent, transport=instance.transport)

    def _prepare(
        self,
        activity: type[Activity] | Activity,
        input: str,  # noqa: A002
    ) -> tuple[Activity, Task, _Heartbeats]:
        instance = activity() if isinstance(activity, type) else activity
        task = Task(
            token=TEST_TOKEN,
            activity_arn=TEST_ARN_PREFIX + instance.name,
            worker_name=self.worker_name,
            input=input,
            started_at=dt.datetime.now(dt.UTC),
        )
        return instance, task, _Heartbeats(self.cancel_after_heartbeats)


class _Heartbeats:
    """The stand-in Step Functions' side of heartbeats: counts them, says when it is gone."""

    def __init__(self, cancel_after: int | None) -> None:
        self.sent = 0
        self._cancel_after = cancel_after

    def gone(self) -> None:
        """The task is gone from now on: every heartbeat finds it so."""
        self._cancel_after = self.sent

    def __call__(self) -> None:
        if self._cancel_after is not None and self.sent >= self._cancel_after:
            msg = "SendTaskHeartbeat: TaskTimedOut: task timed out (simulated)"
            raise TaskGone(msg, code="TaskTimedOut", operation="SendTaskHeartbeat")
        self.sent += 1
