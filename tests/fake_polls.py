"""A stand-in for the worker's ``ActivityClient`` whose polls the test answers one by one.

Each poll waits until the test answers it (:meth:`ScriptedClient.answer`): with a task,
with ``None`` (an empty poll) or with an exception it raises. The client counts the polls
open at once, and can check, as each poll opens, that a limit holds.
"""

from __future__ import annotations

import collections
import threading
from typing import TYPE_CHECKING

from activities import RetryPolicy
from activities.task import Task

if TYPE_CHECKING:
    from collections.abc import Callable

#: The prefix of the test's activity ARNs.
ARN = "arn:aws:states:us-east-1:123456789012:activity:"

#: What a poll is answered with: a task, nothing, or an error it raises.
Answer = Task | BaseException | None


def arn(name: str) -> str:
    """The ARN of the activity (task list) ``name``."""
    return ARN + name


def task(name: str, token: str) -> Task:
    """A task of task list ``name``."""
    return Task(token=token, activity_arn=arn(name), worker_name="w", input="{}")


class ScriptedClient:
    """Polls that return when the test says, counted as they open.

    Args:
        retry: the policy the worker's poll errors are paced by.
        held: how many tasks the worker holds now; with ``limit``, checked as each poll
            opens: polls open and tasks held together never exceed ``limit``.
        limit: see ``held``.
    """

    def __init__(
        self,
        retry: RetryPolicy | None = None,
        *,
        held: Callable[[], int] | None = None,
        limit: int | None = None,
    ) -> None:
        self.retry = retry if retry is not None else RetryPolicy()
        #: See ``held`` (may be set after the client is made).
        self.held = held
        #: See ``held``.
        self.limit = limit
        self._lock = threading.Condition()
        self._answers: dict[str, collections.deque[Answer]] = collections.defaultdict(
            collections.deque
        )
        self._closed = False
        #: Polls open now, by activity ARN.
        self.open: collections.Counter[str] = collections.Counter()
        #: Polls made, by activity ARN.
        self.polls: collections.Counter[str] = collections.Counter()
        #: The most polls open at once so far.
        self.most = 0
        #: Each time a poll opened beyond the limit: (polls open, tasks held).
        self.over: list[tuple[int, int]] = []

    def poll(
        self, activity_arn: str, *, keep_trying: Callable[[], bool] | None = None
    ) -> Task | None:
        """Wait until the test answers a poll of ``activity_arn``; that answer."""
        with self._lock:
            self.polls[activity_arn] += 1
            self.open[activity_arn] += 1
            total = sum(self.open.values())
            self.most = max(self.most, total)
            if self.held is not None and self.limit is not None:
                # Polls that returned already count as tasks held, if they brought one: a
                # task is never counted twice, and polls open stay put under the lock.
                held = self.held()
                if total + held > self.limit:
                    self.over.append((total, held))
            self._lock.notify_all()
            answers = self._answers[activity_arn]
            try:
                self._lock.wait_for(lambda: answers or self._closed)
                answer = answers.popleft() if answers else None
            finally:
                self.open[activity_arn] -= 1
                self._lock.notify_all()
        if isinstance(answer, BaseException):
            raise answer
        return answer

    def answer(self, activity_arn: str, answer: Answer) -> None:
        """Answer the next poll of ``activity_arn`` (open now, or the next to open)."""
        with self._lock:
            self._answers[activity_arn].append(answer)
            self._lock.notify_all()

    def close(self) -> None:
        """End every poll, open or to come, empty."""
        with self._lock:
            self._closed = True
            self._lock.notify_all()

    def open_now(self) -> int:
        """How many polls are open now."""
        with self._lock:
            return sum(self.open.values())

    def open_on(self) -> list[str]:
        """The activity ARNs with a poll open now."""
        with self._lock:
            return [activity_arn for activity_arn, count in self.open.items() if count]

    def wait_open(self, condition: Callable[[collections.Counter[str]], bool]) -> bool:
        """Wait (30 s at most) until ``condition`` holds of the polls open by ARN; whether so."""
        with self._lock:
            return self._lock.wait_for(lambda: condition(self.open), 30)
