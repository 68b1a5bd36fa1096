"""The context of one task, as Step Functions handed it to a worker."""

from __future__ import annotations

import datetime as dt

import attrs

__all__ = ["Task"]

#: Characters of a task token shown in logs and reprs: enough to tell tasks apart.
TOKEN_PREFIX_LENGTH = 12


@attrs.frozen
class Task:
    """One task received from ``GetActivityTask``; available as ``Activity.task`` in ``run()``.

    The input is left out of the repr (it may hold secrets) and the token is shortened.

    Attributes:
        token: the task token that identifies this task in every later call.
        activity_arn: the ARN of the activity (the task list) it was polled from.
        worker_name: the ``workerName`` the poll was made with.
        input: the task input, as the state machine sent it (JSON text).
        started_at: when the poll returned it, in UTC; Step Functions' ``HeartbeatSeconds``
            and ``TimeoutSeconds`` run from about then.
    """

    token: str = attrs.field(repr=lambda token: repr(token[:TOKEN_PREFIX_LENGTH] + "..."))
    activity_arn: str
    worker_name: str
    input: str = attrs.field(repr=False)
    started_at: dt.datetime = attrs.field(factory=lambda: dt.datetime.now(dt.UTC))

    @property
    def activity_name(self) -> str:
        """The activity's name in Step Functions, the end of its ARN (a prefix included)."""
        return self.activity_arn.rpartition(":")[2]

    @property
    def token_prefix(self) -> str:
        """The start of the token, to name the task in logs without the whole secret."""
        return self.token[:TOKEN_PREFIX_LENGTH]
