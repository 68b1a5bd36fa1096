"""The worker's polls: which task list each poll goes to, and the pause after a failed one.

:meth:`Polls._claim` is driven directly (no thread) where only the choice matters; the
poller threads poll a :class:`~tests.fake_polls.ScriptedClient` whose polls return when
the test answers them.
"""

from __future__ import annotations

import contextlib
import logging
from typing import TYPE_CHECKING

import attrs
import pytest

from activities import RetryPolicy
from activities._ops.metrics import NO_METRICS, Metrics
from activities.errors import ActivityDoesNotExist, ServiceError, Throttled
from activities.worker._control import Flag
from activities.worker._poll import Polls, TaskLists, poll_failed
from activities.worker._pool import thread_context
from tests.fake_polls import ScriptedClient, arn, task
from tests.waiting import wait_until

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Sequence

    from activities.task import Task

#: Room enough for every poll the tests open.
PLENTY = 1_000


class Lists(TaskLists):
    """Task lists that remember each pause they were given."""

    def __init__(self, names: Sequence[str], is_async: Sequence[bool] | None = None) -> None:
        super().__init__([arn(name) for name in names], is_async or [False] * len(names))
        self.pauses: list[tuple[int, float]] = []

    def pause(self, index: int, seconds: float) -> None:
        self.pauses.append((index, seconds))
        super().pause(index, seconds)


class Counted(Metrics):
    """Metrics that keep the polls' results."""

    def __init__(self) -> None:
        self.results: list[tuple[str, str]] = []

    def polled(self, arn: str, result: str) -> None:
        self.results.append((arn, result))


def make_polls(
    lists: TaskLists,
    *,
    client: ScriptedClient | None = None,
    room: Callable[[bool], int] = lambda _: PLENTY,
    may_poll: Callable[[int], bool] = lambda _: True,
    take: Callable[[Task], None] = lambda _: None,
    most: int = PLENTY,
    metrics: Metrics = NO_METRICS,
) -> Polls:
    context = thread_context()
    return Polls(
        client or ScriptedClient(),  # type: ignore[arg-type]
        lists,
        room=room,
        may_poll=may_poll,
        take=take,
        stopping=Flag(context),
        give_up=Flag(context),
        most=most,
        metrics=metrics,
    )


def claims(polls: Polls, count: int, current: int = -1) -> list[int]:
    """The task lists of ``count`` polls claimed one after the other (left open)."""
    return [polls._claim(current) for _ in range(count)]


def names(count: int) -> list[str]:
    return [f"list-{number:02d}" for number in range(count)]


@contextlib.contextmanager
def polling(polls: Polls, client: ScriptedClient) -> Iterator[Polls]:
    """Poller threads for the block; their polls are ended when it ends."""
    try:
        polls.fill()
        yield polls
    finally:
        polls._stopping.set()
        client.close()
        assert wait_until(lambda: polls.open_count() == 0), "a poller never returned"


class TestTaskLists:
    def test_a_task_list_is_busy_for_a_moment_after_a_poll_brought_a_task(self) -> None:
        lists = Lists(names(2))
        lists.mark_busy(1)
        assert lists.is_busy(1, 0.0)
        assert not lists.is_busy(0, 0.0)
        assert not lists.is_busy(1, float("inf"))

    def test_errors_in_a_row_are_counted_until_a_poll_succeeds(self) -> None:
        lists = Lists(names(1))
        assert [lists.poll_failed(0) for _ in range(3)] == [1, 2, 3]
        lists.poll_succeeded(0)
        assert lists.poll_failed(0) == 1
        lists.mark_busy(0)  # a task came: the poll succeeded
        assert lists.poll_failed(0) == 1

    def test_all_failing_when_the_last_poll_of_every_task_list_failed(self) -> None:
        lists = Lists(names(2))
        lists.poll_failed(0)
        assert not lists.all_failing()
        lists.poll_failed(1)
        assert lists.all_failing()
        lists.poll_succeeded(0)
        assert not lists.all_failing()

    def test_a_pause_ends(self) -> None:
        lists = Lists(names(1))
        lists.pause(0, 60)
        assert lists.paused(0, 0.0)
        assert not lists.paused(0, float("inf"))


@pytest.mark.usefixtures("long_busy")
class TestClaim:
    def test_every_task_list_gets_a_poll_before_any_gets_a_second(self) -> None:
        """Sixty task lists: sixty polls, one each; an idle task list needs no second."""
        lists = Lists(names(60))
        polls = make_polls(lists)
        assert sorted(claims(polls, 60)) == list(range(60))
        assert polls._claim(-1) == -1
        assert lists.polls_open() == [1] * 60

    def test_a_busy_task_list_gets_more_polls_than_an_idle_one(self) -> None:
        lists = Lists(names(3))
        polls = make_polls(lists, room=lambda _: 10)
        claims(polls, 3)
        lists.mark_busy(1)
        assert claims(polls, 8) == [1] * 7 + [-1], "up to the room"
        assert lists.polls_open() == [1, 8, 1]

    def test_busy_task_lists_share_the_polls_fewest_first(self) -> None:
        lists = Lists(names(3))
        polls = make_polls(lists, room=lambda _: 9)
        claims(polls, 3)
        lists.mark_busy(0)
        lists.mark_busy(2)
        assert sorted(claims(polls, 6)) == [0, 0, 0, 2, 2, 2]
        assert lists.polls_open() == [4, 1, 4]

    def test_a_poller_keeps_to_its_busy_task_list_among_equals(self) -> None:
        lists = Lists(names(3))
        polls = make_polls(lists)
        claims(polls, 3)
        for index in range(3):
            lists.mark_busy(index)
        assert polls._claim(2) == 2
        assert polls._claim(1) == 1
        assert polls._claim(1) == 0, "not above the fewest"

    def test_a_new_poll_opens_only_within_the_room(self) -> None:
        """Polls open and tasks held never exceed the room: 2 slots and 3 of buffer, 5."""
        held = [0]
        lists = Lists(names(60))
        polls = make_polls(lists, room=lambda _: 5 - held[0])
        assert -1 not in claims(polls, 5)
        assert polls._claim(-1) == -1
        lists.open[lists.open.index(1)] -= 1  # a poll brought a task, held now
        held[0] = 1
        assert polls._claim(-1) == -1
        held[0] = 0  # its slot is free again
        assert polls._claim(-1) >= 0
        assert polls.open_count() == 5

    def test_pollers_cap_the_polls_open_at_once(self) -> None:
        """--pollers 3 and six task lists: three polls open, and no more."""
        lists = Lists(names(6))
        polls = make_polls(lists, most=3)
        assert len(set(claims(polls, 3))) == 3
        assert polls._claim(-1) == -1
        lists.open[lists.open.index(1)] -= 1  # a poll returned
        assert polls._claim(-1) >= 0
        assert polls._claim(-1) == -1
        assert polls.open_count() == 3

    @pytest.mark.parametrize(("most", "room"), [(3, PLENTY), (PLENTY, 3)], ids=["pollers", "room"])
    def test_fewer_polls_than_task_lists_turn_over_all_of_them(self, most: int, room: int) -> None:
        """Three polls and six idle task lists: each poll that returns empty goes on to another."""
        lists = Lists(names(6))
        polls = make_polls(lists, most=most, room=lambda _: room)
        polled = set(claims(polls, 3))
        for _ in range(6):
            index = next(index for index in range(6) if lists.open[index])
            lists.open[index] -= 1  # its poll returned empty; its poller claims the next
            polled.add(polls._claim(index))
        assert polled == set(range(6)), "every task list had its turn"

    def test_no_poll_opens_once_stopping(self) -> None:
        lists = Lists(names(2))
        polls = make_polls(lists)
        polls._stopping.set()
        assert polls._claim(-1) == -1
        assert lists.polls_open() == [0, 0]

    def test_a_paused_task_list_is_not_polled(self) -> None:
        lists = Lists(names(2))
        lists.pause(0, 60)
        polls = make_polls(lists)
        assert claims(polls, 2) == [1, -1]

    def test_a_task_list_whose_activity_is_at_its_limit_is_not_polled(self) -> None:
        lists = Lists(names(2))
        polls = make_polls(lists, may_poll=lambda index: index != 1)
        assert claims(polls, 2) == [0, -1]

    def test_sync_task_lists_are_polled_within_the_room_of_the_slots_that_take_them(
        self,
    ) -> None:
        """With async positions, a sync task list's polls count against sync room only."""
        lists = Lists(names(2), is_async=[False, True])
        polls = make_polls(lists, room=lambda sync: 1 if sync else 5)
        lists.mark_busy(0)
        lists.mark_busy(1)
        assert sorted(claims(polls, 6)) == [-1, 0, 1, 1, 1, 1]
        assert lists.polls_open() == [1, 4]


class TestPollers:
    def test_each_task_list_keeps_a_poll(self) -> None:
        """A poll that returns empty is followed by another on the same task list."""
        lists = Lists(names(4))
        client = ScriptedClient()
        polls = make_polls(lists, client=client)
        with polling(polls, client):
            assert client.wait_open(lambda open_: all(open_[lists.arns[i]] for i in range(4)))
            client.answer(lists.arns[2], None)
            assert wait_until(lambda: client.polls[lists.arns[2]] == 2)
            assert client.wait_open(lambda open_: open_[lists.arns[2]] == 1)
            assert client.most == 4

    def test_polls_open_and_tasks_held_never_exceed_the_room(self) -> None:
        """Each task a poll brings takes the room of a poll: 60 task lists, room for 5."""
        held: list[Task] = []
        limit = 5
        lists = Lists(names(60))
        client = ScriptedClient(held=lambda: len(held), limit=limit)
        polls = make_polls(lists, client=client, room=lambda _: limit - len(held), take=held.append)
        with polling(polls, client):
            assert client.wait_open(lambda open_: sum(open_.values()) == limit)
            for number in range(limit):
                client.answer(client.open_on()[0], task("x", f"t{number}"))
                assert wait_until(lambda number=number: len(held) == number + 1)
                assert client.wait_open(
                    lambda open_, number=number: sum(open_.values()) == limit - number - 1
                )
            del held[:2]  # two slots free
            polls.fill()
            assert client.wait_open(lambda open_: sum(open_.values()) == 2)
        assert client.over == []
        assert client.most == limit

    def test_a_poll_error_pauses_its_task_list(
        self, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setattr("random.uniform", lambda low, high: high)  # the longest pause
        lists = Lists(names(2))
        client = ScriptedClient(RetryPolicy(base=30.0, cap=60.0))
        metrics = Counted()
        polls = make_polls(lists, client=client, metrics=metrics)
        error = ServiceError("denied", code="AccessDeniedException", operation="GetActivityTask")
        with polling(polls, client):
            assert client.wait_open(lambda open_: open_[lists.arns[0]] == 1)
            client.answer(lists.arns[0], error)
            assert wait_until(lambda: lists.pauses)
            assert client.wait_open(lambda open_: open_[lists.arns[0]] == 0)
            assert lists.paused(0, 0.0)
            assert polls._claim(0) == -1, "not polled again while it pauses"
        assert (lists.arns[0], "error") in metrics.results
        assert "polling list-00 failed: denied" in caplog.text

    def test_a_bug_in_a_poller_is_logged_and_polling_goes_on(
        self, caplog: pytest.LogCaptureFixture
    ) -> None:
        """The poller that met it ends, logged; the next fill opens the poll again."""
        lists = Lists(names(1))
        client = ScriptedClient()
        bugs = [RuntimeError("a bug in may_poll")]

        def may_poll(_: int) -> bool:
            if client.polls[lists.arns[0]] == 1 and bugs:
                raise bugs.pop()
            return True

        polls = make_polls(lists, client=client, may_poll=may_poll)
        with polling(polls, client):
            assert client.wait_open(lambda open_: open_[lists.arns[0]] == 1)
            client.answer(lists.arns[0], None)
            assert wait_until(lambda: "a poller of the worker failed" in caplog.text)
            assert polls.open_count() == 0, "its poll no longer counts as open"
            polls.fill()
            assert client.wait_open(lambda open_: open_[lists.arns[0]] == 1)
        assert "a bug in may_poll" in caplog.text, "with its traceback"

    def test_a_task_that_cannot_be_taken_is_logged_and_polling_goes_on(
        self, caplog: pytest.LogCaptureFixture
    ) -> None:
        lists = Lists(names(1))
        client = ScriptedClient()

        def take(_: Task) -> None:
            msg = "a bug in take"
            raise RuntimeError(msg)

        polls = make_polls(lists, client=client, take=take)
        with polling(polls, client):
            client.answer(lists.arns[0], task("list-00", "t-lost"))
            assert wait_until(lambda: client.polls[lists.arns[0]] == 2)
            assert client.wait_open(lambda open_: open_[lists.arns[0]] == 1)
        assert "task t-lost could not be handed over" in caplog.text
        assert "a bug in take" in caplog.text


@attrs.frozen
class BrokenPolicy(RetryPolicy):
    def pause(self, failed: int) -> float:
        raise ArithmeticError(failed)


class TestPollFailed:
    @pytest.mark.parametrize(
        "retry", [RetryPolicy(attempts=2_000), BrokenPolicy(cap=7.0)], ids=["long", "broken"]
    )
    def test_an_unexpected_error_pauses_the_task_list_and_is_logged(
        self,
        retry: RetryPolicy,
        caplog: pytest.LogCaptureFixture,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        """Whatever the error count or the policy, a failed poll pauses: no poll at once after.

        2,000 attempts start a lasting error's backoff at 2**1998 times the base: an
        OverflowError, not a pause, unless the exponent is clamped.
        """
        monkeypatch.setattr("random.uniform", lambda low, high: high)  # the longest pause
        lists = Lists(names(1))
        with caplog.at_level(logging.ERROR, "activities.worker._poll"):
            poll_failed(lists, 0, RuntimeError("something unexpected"), retry)
        assert lists.pauses == [(0, retry.cap)]
        records = [record for record in caplog.records if record.name == "activities.worker._poll"]
        assert records, "the failure is logged"
        assert all(record.levelno == logging.ERROR for record in records)
        assert any(record.exc_info is not None for record in records), "with its traceback"

    @pytest.mark.parametrize(
        ("error", "level", "traceback"),
        [
            (Throttled("slow down", code="ThrottlingException", transient=True), "DEBUG", False),
            (ServiceError("503", code="ServiceUnavailable", transient=True), "DEBUG", False),
            (ServiceError("denied", code="AccessDeniedException"), "WARNING", False),
            (ActivityDoesNotExist("no such activity", code="ActivityDoesNotExist"), "ERROR", False),
            (RuntimeError("a bug"), "ERROR", True),
        ],
        ids=["throttled", "transient", "lasting", "missing", "other"],
    )
    def test_how_loud_an_error_is_logged(
        self,
        error: Exception,
        level: str,
        traceback: bool,
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        """What passes at DEBUG, what stays at WARNING, a missing activity or a bug at ERROR."""
        lists = Lists(names(1))
        with caplog.at_level(logging.DEBUG, "activities.worker._poll"):
            poll_failed(lists, 0, error, RetryPolicy())
        records = [record for record in caplog.records if record.name == "activities.worker._poll"]
        assert [record.levelname for record in records] == [level]
        assert (records[0].exc_info is not None) is traceback
        assert "list-00" in records[0].getMessage()
        assert lists.paused(0, 0.0)

    def test_unlogged_when_the_worker_gives_up(self, caplog: pytest.LogCaptureFixture) -> None:
        """A poll abandoned by a stop at once still pauses its task list, silently."""
        lists = Lists(names(1))
        with caplog.at_level(logging.DEBUG, "activities.worker._poll"):
            poll_failed(lists, 0, RuntimeError("closed"), RetryPolicy(), log=False)
        assert not [record for record in caplog.records if record.name == "activities.worker._poll"]
        assert len(lists.pauses) == 1

    def test_a_lasting_error_pauses_longer_than_a_passing_one(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A passing error was retried in place already; a lasting one starts where those end."""
        monkeypatch.setattr("random.uniform", lambda low, high: high)
        retry = RetryPolicy(attempts=5, base=0.5, cap=100.0)
        lists = Lists(names(2))
        for _ in range(2):
            poll_failed(lists, 0, ServiceError("503", transient=True), retry)
            poll_failed(lists, 1, ServiceError("denied"), retry)
        assert lists.pauses == [(0, 0.5), (1, 0.5 * 2**4), (0, 1.0), (1, 0.5 * 2**5)]
