"""The memory the worker shares with its slots: flags, open polls, the task a slot holds."""

from __future__ import annotations

import threading

import pytest

from activities._control import Control, Flag, SlotState
from activities._slot import spawn_context
from tests.waiting import wait_until

ARNS = ["arn:a", "arn:b", "arn:c"]


def set_flag(flag: Flag) -> None:
    flag.set()


class TestFlag:
    def test_a_flag_starts_clear_and_stays_set(self) -> None:
        flag = Flag(spawn_context())
        assert not flag.is_set()
        assert not flag.wait(0.01)
        flag.set()
        assert flag.is_set()
        assert flag.wait(0)

    def test_a_flag_set_in_a_child_process_is_seen_by_the_parent(self) -> None:
        """The flag is shared memory: what a process sets, the others read."""
        context = spawn_context()
        flag = Flag(context)
        child = context.Process(target=set_flag, args=(flag,))
        child.start()
        child.join(30)
        assert child.exitcode == 0
        assert flag.is_set()


class TestChoose:
    def test_free_slots_spread_over_the_activities(self) -> None:
        """Each slot polls the activity with the fewest polls open."""
        control = Control(spawn_context(), ARNS, slots=4, pollers=None)
        chosen = [control.choose(position, turn=0) for position in range(3)]
        assert sorted(chosen) == [0, 1, 2]
        assert control.choose(3, turn=1) == 1  # all tied: the turn decides

    def test_a_returned_poll_frees_its_activity(self) -> None:
        control = Control(spawn_context(), ARNS, slots=3, pollers=None)
        assert control.choose(0, turn=0) == 0
        assert control.choose(1, turn=0) == 1
        control.done_polling(0)
        assert control.choose(2, turn=0) == 0
        control.done_polling(1)
        control.done_polling(2)
        assert control.choose(0, turn=2) == 2  # nothing open: the turn decides

    def test_one_activity_needs_no_counting(self) -> None:
        control = Control(spawn_context(), ARNS[:1], slots=2, pollers=None)
        assert control.choose(0, turn=5) == control.choose(1, turn=7) == 0


class TestPollPermit:
    def test_limited_pollers_take_turns(self) -> None:
        """With one poller, a second slot polls only once the first poll returned."""
        control = Control(spawn_context(), ARNS, slots=2, pollers=1)
        second_polls = threading.Event()

        def second() -> None:
            with control.poll_permit() as permitted:
                if permitted:
                    second_polls.set()

        with control.poll_permit() as first:
            assert first
            thread = threading.Thread(target=second)
            thread.start()
            assert not second_polls.wait(0.5), "a second permit while the only one is held"
        assert second_polls.wait(10), "the permit was not passed on"
        thread.join()

    def test_no_permit_once_stopping(self) -> None:
        control = Control(spawn_context(), ARNS, slots=2, pollers=None)
        control.stopping.set()
        with control.poll_permit() as permitted:
            assert not permitted


class TestSlotState:
    @pytest.fixture
    def state(self) -> SlotState:
        return SlotState(spawn_context())

    def test_a_running_task_taken_by_the_worker_is_dropped_by_the_slot(
        self, state: SlotState
    ) -> None:
        """At the deadline the worker takes the task: the slot's outcome is not sent."""
        token = "t" * 2048  # the longest token Step Functions hands out
        state.hold("arn:a", token)
        assert state.answering()
        [held] = state.take(delivering=False)
        assert (held.activity_arn, held.token, held.token_prefix) == ("arn:a", token, "t" * 12)
        assert state.running_taken()
        assert not state.answering()
        assert not state.start_delivering()
        assert state.take(delivering=True) == [], "taken twice"

    def test_an_outcome_being_sent_is_only_taken_when_the_slot_died(self, state: SlotState) -> None:
        state.hold("arn:a", "sending")
        assert state.start_delivering()
        assert state.take(delivering=False) == []
        [held] = state.take(delivering=True)
        assert held.token == "sending"
        assert not state.answering()

    def test_a_slot_runs_one_task_while_it_sends_the_outcome_of_another(
        self, state: SlotState
    ) -> None:
        """A dead process answered for both: the worker fails both."""
        state.hold("arn:a", "sending")
        assert state.start_delivering()
        state.hold("arn:b", "running")
        taken = state.take(delivering=True)
        assert sorted((held.activity_arn, held.token) for held in taken) == [
            ("arn:a", "sending"),
            ("arn:b", "running"),
        ]

    def test_what_was_sent_or_released_is_nobodys(self, state: SlotState) -> None:
        state.hold("arn:a", "sent")
        assert state.start_delivering()
        state.done_delivering()
        state.hold("arn:a", "cancelled")
        state.release()
        assert not state.answering()
        assert state.take(delivering=True) == []

    def test_the_worker_sees_what_a_child_process_holds(self, state: SlotState) -> None:
        context = spawn_context()
        child = context.Process(target=hold_and_exit, args=(state,))
        child.start()
        child.join(30)
        assert wait_until(state.answering)
        [held] = state.take(delivering=True)
        assert held.token == "from-the-child"


def hold_and_exit(state: SlotState) -> None:
    state.hold("arn:a", "from-the-child")
