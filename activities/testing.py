"""Run activities in-process, without AWS: for the tests of a project's activities.

::

    from activities.testing import ActivityEnvironment

    def test_echo():
        report = ActivityEnvironment().run(Echo, '{"value": 42}')
        assert report.result == 42

The task goes through exactly what a worker does with it (the transport, the mapping of
exceptions to failures, the output limits, heartbeats) with Step Functions replaced by a
stand-in that counts heartbeats and can cancel the task.
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any

import attrs

from activities import _runner
from activities.errors import TaskGone
from activities.outcome import Cancelled, Failure, Outcome, Success
from activities.task import Task

if TYPE_CHECKING:
    from activities.activity import Activity
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
        worker_name: the worker name the task reports.
    """

    def __init__(
        self, *, cancel_after_heartbeats: int | None = None, worker_name: str = "test-worker"
    ) -> None:
        if cancel_after_heartbeats is not None and cancel_after_heartbeats < 0:
            msg = f"cancel_after_heartbeats must be >= 0 or None, got {cancel_after_heartbeats}"
            raise ValueError(msg)
        self.cancel_after_heartbeats = cancel_after_heartbeats
        self.worker_name = worker_name

    def run(self, activity: type[Activity] | Activity, input: str = "") -> TaskReport:  # noqa: A002 - Step Functions' word
        """Run one task with ``input`` (JSON text, as a state machine sends it).

        Args:
            activity: an Activity subclass (instantiated without arguments) or instance.
            input: the task input; empty means no arguments.
        """
        instance = activity() if isinstance(activity, type) else activity
        task = Task(
            token=TEST_TOKEN,
            activity_arn=TEST_ARN_PREFIX + instance.name,
            worker_name=self.worker_name,
            input=input,
            started_at=dt.datetime.now(dt.UTC),
        )
        heartbeats = 0

        def send_heartbeat() -> None:
            nonlocal heartbeats
            if (
                self.cancel_after_heartbeats is not None
                and heartbeats >= self.cancel_after_heartbeats
            ):
                msg = "SendTaskHeartbeat: TaskTimedOut: task timed out (simulated)"
                raise TaskGone(msg, code="TaskTimedOut", operation="SendTaskHeartbeat")
            heartbeats += 1

        outcome = _runner.execute(instance, task, send_heartbeat)
        return TaskReport(outcome=outcome, heartbeats=heartbeats, transport=instance.transport)
