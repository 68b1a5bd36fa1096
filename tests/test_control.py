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
    def test_an_idle_task_list_is_left_to_the_worker(self) -> None:
        """A free slot does not poll task lists that brought nothing lately."""
        control = Control(spawn_context(), ARNS, slots=4, pollers=None)
        assert control.choose(turn=0) == -1

    def test_free_slots_spread_over_the_busy_task_lists(self) -> None:
        """A poll that brought a task draws the free slots, fewest polls open first."""
        control = Control(spawn_context(), ARNS, slots=4, pollers=None)
        control.mark_busy(0)
        control.mark_busy(2)
        chosen = []
        for position in range(3):
            index = control.choose(turn=0)
            assert control.claim_poll(position, index)
            chosen.append(index)
        assert sorted(chosen) == [0, 0, 2]
        assert control.is_busy(2)
        assert not control.is_busy(1)

    def test_a_returned_poll_frees_its_task_list(self) -> None:
        control = Control(spawn_context(), ARNS, slots=3, pollers=None)
        for position in range(3):
            control.mark_busy(position)
            control.claim_poll(position, position)
        control.done_polling(1)
        assert control.choose(turn=0) == 1
        assert control.polls_open() == [1, 0, 1]

    def test_a_task_list_that_failed_pauses(self) -> None:
        """Throttling or an error on one task list pauses that one, not the others."""
        control = Control(spawn_context(), ARNS[:2], slots=2, pollers=None)
        control.mark_busy(0)
        control.mark_busy(1)
        assert control.poll_failed(0) == 1
        assert control.poll_failed(0) == 2, "errors in a row are counted"
        control.pause(0, 60)
        assert control.choose(turn=0) == 1
        control.poll_succeeded(0)
        assert control.poll_failed(0) == 1, "a poll that returned starts the count again"

    def test_an_activity_at_its_limit_is_not_polled(self) -> None:
        """Tasks running and waiting count against max_concurrency, on all its task lists."""
        control = Control(
            spawn_context(), ARNS, slots=3, pollers=None, groups=[0, 0, 1], limits=[2, None]
        )
        assert control.claim_poll(0, 0)
        assert control.start_running(1, 1)  # the same activity, on its other task list
        assert not control.at_limit(0)
        control.buffered(0, 1)
        assert control.at_limit(0)
        assert not control.claim_poll(2, 0)
        for index in range(3):
            control.mark_busy(index)
        assert control.choose(turn=0) == 2
        control.buffered(0, -1)
        assert control.claim_poll(2, 1)
        assert control.tasks_waiting() == 0

    def test_no_more_tasks_of_an_activity_run_than_its_limit(self) -> None:
        control = Control(
            spawn_context(), ARNS, slots=3, pollers=None, groups=[0, 0, 1], limits=[1, None]
        )
        assert control.start_running(0, 0)
        assert not control.may_run(1)
        assert not control.start_running(1, 1), "the same activity on its other task list"
        assert control.start_running(1, 2)
        control.set_running(0, -1)
        assert control.may_run(1)

    def test_a_slot_that_runs_a_task_while_it_polls_holds_two_places(self) -> None:
        control = Control(spawn_context(), ARNS, slots=2, pollers=None)
        control.claim_poll(0, 0)
        control.claim_poll(2, 1)  # the worker's own coverage poll is not a slot's
        assert control.slots_in_use() == 1
        control.set_running(0, 2)
        assert control.slots_in_use() == 2


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
        context = spawn_context()
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
        context = spawn_context()
        child = context.Process(target=hold_and_exit, args=(state,))
        child.start()
        child.join(30)
        assert wait_until(state.answering)
        [held] = state.take(delivering=True)
        assert held.token == "from-the-child"


def hold_and_exit(state: SlotState) -> None:
    state.try_hold("arn:a", "from-the-child", 0)
