"""What the worker shares with its slots: flags it sets, the count of tasks waiting."""

from __future__ import annotations

import multiprocessing
import sys
import time

from activities.worker._control import Control, Flag

ARNS = ["arn:a", "arn:b", "arn:c"]


def set_flag(flag: Flag) -> None:
    flag.set()


def see_waiting(control: Control, count: int) -> None:
    """Exit 0 once the worker's count reads ``count``, 1 if it never does."""
    deadline = time.monotonic() + 30
    while control.tasks_waiting() != count:
        if time.monotonic() > deadline:
            sys.exit(1)
        time.sleep(0.01)


class TestFlag:
    def test_a_flag_starts_clear_and_stays_set(self) -> None:
        flag = Flag(multiprocessing.get_context("spawn"))
        assert not flag.is_set()
        assert flag.is_unset()
        assert not flag.wait(0.01)
        flag.set()
        assert flag.is_set()
        assert not flag.is_unset()
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


class TestControl:
    def test_each_flag_is_its_own(self) -> None:
        control = Control(multiprocessing.get_context("spawn"), ARNS, slots=2)
        control.past_deadline.set()
        assert [
            flag.is_set()
            for flag in (control.stopping, control.past_deadline, control.give_up, control.orphaned)
        ] == [False, True, False, False]

    def test_every_slot_and_the_worker_have_a_cell_of_the_last_answer(self) -> None:
        """A cell per slot position, and the worker's own process's at ``slots``."""
        control = Control(multiprocessing.get_context("spawn"), ARNS, slots=3)
        assert (control.arns, control.slots) == (tuple(ARNS), 3)
        assert len(control.answered) == len(control.overdue) == 4

    def test_the_count_of_tasks_waiting_is_the_last_written(self) -> None:
        control = Control(multiprocessing.get_context("spawn"), ARNS, slots=2)
        assert control.tasks_waiting() == 0
        control.set_waiting(5)
        control.set_waiting(3)
        assert control.tasks_waiting() == 3

    def test_a_task_process_reads_the_count_the_worker_writes(self) -> None:
        """Written after the process started: it reads the shared memory, not a copy."""
        context = multiprocessing.get_context("spawn")
        control = Control(context, ARNS, slots=2)
        child = context.Process(target=see_waiting, args=(control, 4))
        child.start()
        control.set_waiting(4)
        child.join(60)
        assert child.exitcode == 0, "the task process never saw the count"
