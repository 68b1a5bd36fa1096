"""The memory the worker shares with its slots: flags, open polls, limits."""

from __future__ import annotations

import multiprocessing
import threading

from activities._control import Control, Flag

ARNS = ["arn:a", "arn:b", "arn:c"]


def set_flag(flag: Flag) -> None:
    flag.set()


def send_overflow(control: Control, position: int) -> None:
    control.overflowed(position)


class TestFlag:
    def test_a_flag_starts_clear_and_stays_set(self) -> None:
        flag = Flag(multiprocessing.get_context("spawn"))
        assert not flag.is_set()
        assert not flag.wait(0.01)
        flag.set()
        assert flag.is_set()
        assert flag.wait(0)

    def test_a_flag_set_in_a_child_process_is_seen_by_the_parent(self) -> None:
        """The flag is shared memory: what a process sets, the others read."""
        context = multiprocessing.get_context("spawn")
        flag = Flag(context)
        child = context.Process(target=set_flag, args=(flag,))
        child.start()
        child.join(30)
        assert child.exitcode == 0
        assert flag.is_set()


class TestChoose:
    def test_an_idle_task_list_is_left_to_the_worker(self) -> None:
        """A free slot does not poll task lists that brought nothing lately."""
        control = Control(multiprocessing.get_context("spawn"), ARNS, slots=4, pollers=None)
        assert control.choose(turn=0) == -1

    def test_free_slots_spread_over_the_busy_task_lists(self) -> None:
        """A poll that brought a task draws the free slots, fewest polls open first."""
        control = Control(multiprocessing.get_context("spawn"), ARNS, slots=4, pollers=None)
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
        control = Control(multiprocessing.get_context("spawn"), ARNS, slots=3, pollers=None)
        for position in range(3):
            control.mark_busy(position)
            control.claim_poll(position, position)
        control.done_polling(1)
        assert control.choose(turn=0) == 1
        assert control.polls_open() == [1, 0, 1]

    def test_a_task_list_that_failed_pauses(self) -> None:
        """Throttling or an error on one task list pauses that one, not the others."""
        control = Control(multiprocessing.get_context("spawn"), ARNS[:2], slots=2, pollers=None)
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
            multiprocessing.get_context("spawn"),
            ARNS,
            slots=3,
            pollers=None,
            groups=[0, 0, 1],
            limits=[2, None],
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
            multiprocessing.get_context("spawn"),
            ARNS,
            slots=3,
            pollers=None,
            groups=[0, 0, 1],
            limits=[1, None],
        )
        assert control.start_running(0, 0)
        assert not control.may_run(1)
        assert not control.start_running(1, 1), "the same activity on its other task list"
        assert control.start_running(1, 2)
        control.set_running(0, -1)
        assert control.may_run(1)

    def test_a_slot_that_runs_a_task_while_it_polls_holds_two_places(self) -> None:
        control = Control(multiprocessing.get_context("spawn"), ARNS, slots=2, pollers=None)
        control.claim_poll(0, 0)
        control.claim_poll(2, 1)  # the worker's own coverage poll is not a slot's
        assert control.slots_in_use() == 1
        control.set_running(0, 2)
        assert control.slots_in_use() == 2


class TestPollPermit:
    def test_limited_pollers_take_turns(self) -> None:
        """With one poller, a second slot polls only once the first poll returned."""
        control = Control(multiprocessing.get_context("spawn"), ARNS, slots=2, pollers=1)
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
        control = Control(multiprocessing.get_context("spawn"), ARNS, slots=2, pollers=None)
        control.stopping.set()
        with control.poll_permit() as permitted:
            assert not permitted


class TestOverflow:
    """A task a slot's poll brought while the slot had been handed another, on its way."""

    def test_on_its_way_until_the_worker_takes_it(self) -> None:
        context = multiprocessing.get_context("spawn")
        control = Control(context, ARNS, slots=3, pollers=None)
        assert not control.overflowing()
        child = context.Process(target=send_overflow, args=(control, 2))
        child.start()
        child.join(30)
        assert child.exitcode == 0
        assert control.overflowing()  # what the slot's process counted, the worker sees
        control.overflow_taken(2)
        assert not control.overflowing()

    def test_a_process_that_ended_has_none_on_its_way(self) -> None:
        """Its messages were read: what it counted but never sent will not come."""
        control = Control(multiprocessing.get_context("spawn"), ARNS, slots=3, pollers=None)
        control.overflowed(0)
        control.overflowed(0)
        control.overflowed(1)
        control.overflow_taken(0)
        control.overflow_settled([0])
        assert control.overflowing()  # position 1's, of another process
        control.overflow_settled([1, 2])
        assert not control.overflowing()
        control.overflowed(0)  # a replacement at the same position counts on from there
        assert control.overflowing()
