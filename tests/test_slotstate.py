"""A slot's state: the tasks it answers for, taken by exactly one of slot and worker."""

from __future__ import annotations

import multiprocessing

import pytest

from activities._control import Control
from activities._slotstate import SlotState
from tests.waiting import wait_until

ARNS = ["arn:a", "arn:b", "arn:c"]


class TestSlotState:
    @pytest.fixture
    def state(self) -> SlotState:
        context = multiprocessing.get_context("spawn")
        return SlotState(context, Control(context, ARNS, slots=1, pollers=None), 0)

    def test_a_slot_holds_one_task_at_a_time(self, state: SlotState) -> None:
        """The worker hands a task only to a free slot; a free slot only polls when free."""
        assert state.free()
        assert state.try_hold("arn:a", "first", 0)
        assert not state.free()
        assert not state.try_hold("arn:a", "second", 0)
        assert not state.claim_poll(1)
        assert state.start_delivering()
        assert state.free()
        assert state.claim_poll(1)

    def test_a_retired_slot_takes_no_task(self, state: SlotState) -> None:
        assert state.retire()
        assert state.retired()
        assert not state.try_hold("arn:a", "late", 0)

    def test_a_running_task_taken_by_the_worker_is_dropped_by_the_slot(
        self, state: SlotState
    ) -> None:
        """At the deadline the worker takes the task: the slot's outcome is not sent."""
        token = "t" * 2048  # the longest token Step Functions hands out
        assert state.try_hold("arn:a", token, 0)
        assert state.answering()
        [held] = state.take(delivering=False)
        assert (held.activity_arn, held.token, held.token_prefix) == ("arn:a", token, "t" * 12)
        assert state.running_taken()
        assert not state.answering()
        assert not state.start_delivering()
        assert state.take(delivering=True) == [], "taken twice"

    def test_a_task_is_taken_by_its_token_only(self, state: SlotState) -> None:
        """A stuck task's token: not the task the slot took after that one ended."""
        assert state.try_hold("arn:a", "token-2", 0)
        assert state.take(delivering=False, token="token-1") == []
        assert state.answering()
        [held] = state.take(delivering=False, token="token-2")
        assert held.token == "token-2"
        assert state.running_taken()

    def test_an_outcome_being_sent_is_only_taken_when_the_slot_died(self, state: SlotState) -> None:
        assert state.try_hold("arn:a", "sending", 0)
        assert state.start_delivering()
        assert state.take(delivering=False) == []
        [held] = state.take(delivering=True)
        assert held.token == "sending"
        assert not state.answering()

    def test_a_slot_runs_one_task_while_it_sends_the_outcome_of_another(
        self, state: SlotState
    ) -> None:
        """A dead process answered for both: the worker fails both."""
        assert state.try_hold("arn:a", "sending", 0)
        assert state.start_delivering()
        assert state.try_hold("arn:b", "running", 1)
        taken = state.take(delivering=True)
        assert sorted((held.activity_arn, held.token) for held in taken) == [
            ("arn:a", "sending"),
            ("arn:b", "running"),
        ]

    def test_what_was_sent_or_released_is_nobodys(self, state: SlotState) -> None:
        assert state.try_hold("arn:a", "sent", 0)
        assert state.start_delivering()
        state.done_delivering()
        assert state.try_hold("arn:a", "cancelled", 0)
        state.release()
        assert not state.answering()
        assert state.take(delivering=True) == []

    def test_the_worker_sees_what_a_child_process_holds(self, state: SlotState) -> None:
        context = multiprocessing.get_context("spawn")
        child = context.Process(target=hold_and_exit, args=(state,))
        child.start()
        child.join(30)
        assert wait_until(state.answering)
        [held] = state.take(delivering=True)
        assert held.token == "from-the-child"


def hold_and_exit(state: SlotState) -> None:
    state.try_hold("arn:a", "from-the-child", 0)
