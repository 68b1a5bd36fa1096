"""One long poll, and the pause of its task list after a failed one."""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

import attrs
import pytest

from activities import RetryPolicy
from activities._control import Control
from activities._metrics import NO_METRICS
from activities._poll import poll_once
from activities._pool import thread_context
from activities._slotstate import SlotState

if TYPE_CHECKING:
    from activities.task import Task

ARN = "arn:aws:states:us-east-1:123456789012:activity:Echo"


class FailingClient:
    """Stands in for ActivityClient: every poll raises what no one expected."""

    def __init__(self, retry: RetryPolicy) -> None:
        self.retry = retry
        self.polls = 0

    def poll(self, arn: str, **_: object) -> Task | None:
        self.polls += 1
        msg = "something unexpected"
        raise RuntimeError(msg)


@attrs.frozen
class BrokenPolicy(RetryPolicy):
    def pause(self, failed: int) -> float:
        raise ArithmeticError(failed)


def poll(client: FailingClient, control: Control) -> Task | None:
    state = SlotState(thread_context(), control, 0)
    tasks: list[Task] = []
    return poll_once(
        client,  # type: ignore[arg-type]
        control,
        state,
        0,
        0,
        metrics=NO_METRICS,
        overflow=lambda task, _: tasks.append(task),
    )


@pytest.fixture
def control() -> Control:
    control = Control(thread_context(), [ARN], slots=1, pollers=None)
    control.mark_busy(0)  # a slot would choose it
    return control


class TestPollFailed:
    @pytest.mark.parametrize(
        "retry", [RetryPolicy(attempts=2_000), BrokenPolicy(cap=7.0)], ids=["long", "broken"]
    )
    def test_an_unexpected_error_pauses_the_task_list_and_is_logged(
        self,
        retry: RetryPolicy,
        control: Control,
        caplog: pytest.LogCaptureFixture,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        """Whatever the error count or the policy, a failed poll pauses: no poll at once after.

        2,000 attempts start a lasting error's backoff at 2**1998 times the base: an
        OverflowError, not a pause, before the exponent was clamped.
        """
        monkeypatch.setattr("random.uniform", lambda low, high: high)  # the longest pause
        client = FailingClient(retry)
        assert control.choose(0) == 0
        with caplog.at_level(logging.ERROR, "activities._poll"):
            assert poll(client, control) is None
        assert client.polls == 1
        assert control.paused_until(0) > time.monotonic() + retry.cap / 2
        assert control.choose(0) == -1, "no slot polls the task list while it pauses"
        records = [record for record in caplog.records if record.name == "activities._poll"]
        assert records, "the failure is logged"
        assert all(record.levelno == logging.ERROR for record in records)
        assert any(record.exc_info is not None for record in records), "with its traceback"
        assert control.polling(0) == -1, "the poll no longer counts as open"
