"""An in-memory stand-in for a boto3 Step Functions client, for fast unit tests of the worker.

It speaks the boto3 method shapes the framework uses and raises real botocore
``ClientError``s, so the framework's own error mapping is exercised. An empty poll returns
after ``poll_wait`` seconds instead of 60 (at once after :meth:`close`). It records the
tasks handed out and the polls open on each activity.
"""

from __future__ import annotations

import collections
import itertools
import threading
from typing import Any

from botocore.exceptions import ClientError

ARN_PREFIX = "arn:aws:states:us-east-1:123456789012:activity:"


def client_error(code: str, operation: str) -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": f"fake {code}"}}, operation)


class FakeStepFunctions:
    """Tasks are queued with :meth:`add_task`; what the worker sends is recorded."""

    def __init__(self, poll_wait: float = 0.1) -> None:
        self.poll_wait = poll_wait
        self._queues: dict[str, collections.deque[tuple[str, str]]] = collections.defaultdict(
            collections.deque
        )
        self._tokens = itertools.count(1)
        self._lock = threading.Lock()
        self.errors: dict[str, list[BaseException]] = collections.defaultdict(list)
        self.gone: set[str] = set()
        self.successes: dict[str, str] = {}
        self.failures: dict[str, tuple[str, str]] = {}
        self.heartbeats: collections.Counter[str] = collections.Counter()
        self.calls: collections.Counter[str] = collections.Counter()
        self.done = threading.Condition(self._lock)
        self._arrived = threading.Condition(self._lock)
        self.closed = False
        #: Tokens handed out by polls, in order.
        self.handed_out: list[str] = []
        #: Polls open now, by activity ARN.
        self.polling: collections.Counter[str] = collections.Counter()

    def add_task(self, activity: str, data: str) -> str:
        """Queue a task for the activity named ``activity``; its token."""
        token = f"token-{next(self._tokens):04d}-" + "x" * 40
        with self._arrived:
            self._queues[ARN_PREFIX + activity].append((token, data))
            self._arrived.notify_all()
        return token

    def close(self) -> None:
        """End every open poll at once, and the later ones too."""
        with self._arrived:
            self.closed = True
            self._arrived.notify_all()

    def outstanding(self) -> set[str]:
        """Tokens handed out and not yet answered."""
        with self._lock:
            return set(self.handed_out) - set(self.successes) - set(self.failures)

    def wait_for(self, count: int, timeout: float = 10) -> bool:
        """Wait until ``count`` outcomes (successes and failures) were recorded."""
        with self.done:
            return self.done.wait_for(
                lambda: len(self.successes) + len(self.failures) >= count, timeout
            )

    def _call(self, operation: str) -> None:
        with self._lock:
            self.calls[operation] += 1
            errors = self.errors[operation]
            error = errors.pop(0) if errors else None
        if error is not None:
            raise error

    def _check_token(self, token: str, operation: str) -> None:
        if token in self.gone:
            raise client_error("TaskTimedOut", operation)

    # -- the boto3 methods ------------------------------------------------------------

    def create_activity(self, name: str, **_: Any) -> dict[str, str]:
        self._call("CreateActivity")
        return {"activityArn": ARN_PREFIX + name}

    def get_activity_task(self, activityArn: str, workerName: str) -> dict[str, str]:  # noqa: N803 - boto3's names
        self._call("GetActivityTask")
        tasks = self._queues[activityArn]
        with self._arrived:
            self.polling[activityArn] += 1
            try:
                self._arrived.wait_for(lambda: tasks or self.closed, self.poll_wait)
                if not tasks or self.closed:
                    return {}
                token, data = tasks.popleft()
                self.handed_out.append(token)
            finally:
                self.polling[activityArn] -= 1
        return {"taskToken": token, "input": data}

    def send_task_heartbeat(self, taskToken: str) -> dict[str, str]:  # noqa: N803
        self._call("SendTaskHeartbeat")
        self._check_token(taskToken, "SendTaskHeartbeat")
        with self._lock:
            self.heartbeats[taskToken] += 1
        return {}

    def send_task_success(self, taskToken: str, output: str) -> dict[str, str]:  # noqa: N803
        self._call("SendTaskSuccess")
        self._check_token(taskToken, "SendTaskSuccess")
        with self.done:
            self.successes[taskToken] = output
            self.done.notify_all()
        return {}

    def send_task_failure(self, taskToken: str, error: str, cause: str) -> dict[str, str]:  # noqa: N803
        self._call("SendTaskFailure")
        self._check_token(taskToken, "SendTaskFailure")
        with self.done:
            self.failures[taskToken] = (error, cause)
            self.done.notify_all()
        return {}
