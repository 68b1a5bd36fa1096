"""Who answers for a slot's tasks: the worker's record, the slot's numbers, no shared lock."""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
from typing import TYPE_CHECKING

import pytest

from activities.task import Task
from activities.worker._pool import thread_context
from activities.worker._slotstate import FINISHED, REPORTED, Answer, Cells, Held, SlotState
from tests.waiting import wait_until

if TYPE_CHECKING:
    from multiprocessing.synchronize import Event

#: The longest token Step Functions hands out.
LONG_TOKEN = "t" * 2048


def task(token: str, arn: str = "arn:aws:states:us-east-1:1:activity:a") -> Task:
    return Task(token=token, activity_arn=arn, worker_name="w", input="{}")


@pytest.fixture
def cells() -> Cells:
    return Cells(thread_context(), 2)


@pytest.fixture
def state(cells: Cells) -> SlotState:
    return SlotState(cells, 1)


@pytest.fixture
def answer(cells: Cells) -> Answer:
    return Answer(cells, 1)


class TestCells:
    def test_each_slot_has_numbers_of_its_own(self, cells: Cells) -> None:
        cells.set(0, FINISHED, 4)
        cells.set(1, FINISHED, 7)
        cells.set(1, REPORTED, 6)
        assert (cells.get(0, FINISHED), cells.get(1, FINISHED)) == (4, 7)
        assert (cells.get(0, REPORTED), cells.get(1, REPORTED)) == (0, 6)


class TestSlotState:
    def test_tasks_are_numbered_and_a_busy_slot_takes_none(
        self, state: SlotState, answer: Answer
    ) -> None:
        """The worker hands a task only to a free slot; the slot's FINISHED frees it."""
        assert state.free()
        assert not state.busy()
        assert state.hold(task("first"), 0) == 1
        assert state.busy()
        assert not state.free()
        assert state.hold(task("second"), 0) is None
        answer.begin(1, task("first"))
        assert answer.finish(1)
        assert state.free()
        assert not state.busy()
        assert state.hold(task("second"), 0) == 2
        answer.finish(2)
        assert state.hold(task("third"), 0) == 3

    def test_a_closed_slot_takes_no_task(self, state: SlotState) -> None:
        assert not state.closed
        state.close()
        assert state.closed
        assert not state.free()
        assert state.hold(task("late"), 0) is None

    def test_running_names_the_task_list_of_the_running_task(
        self, state: SlotState, answer: Answer
    ) -> None:
        assert state.running() == -1
        state.hold(task("first"), 2)
        assert state.running() == 2
        answer.begin(1, task("first"))
        answer.finish(1)
        assert state.running() == -1, "finished: the slot runs nothing"
        assert state.answering(), "its outcome is not reported yet"
        answer.reported(1)
        assert not state.answering()

    def test_the_worker_takes_what_the_slot_runs_and_sends_once(
        self, state: SlotState, answer: Answer
    ) -> None:
        """A slot whose unit died: the worker answers for its tasks after the last reported."""
        state.hold(task("reported"), 0)
        answer.begin(1, task("reported"))
        answer.finish(1)
        answer.reported(1)
        state.hold(task("sending", "arn:aws:states:us-east-1:1:activity:b"), 1)
        answer.begin(2, task("sending"))
        answer.finish(2)  # its outcome is on its way
        state.hold(task(LONG_TOKEN), 0)  # running
        taken = state.take()
        assert [(held.token, held.index, held.sent) for held in taken] == [
            ("sending", 1, True),
            (LONG_TOKEN, 0, False),
        ]
        assert state.closed
        assert not state.answering()
        assert state.hold(task("late"), 0) is None
        assert state.take() == [], "taken twice"

    def test_what_was_reported_is_nobodys(self, state: SlotState, answer: Answer) -> None:
        state.hold(task("sent"), 0)
        answer.begin(1, task("sent"))
        answer.finish(1)
        answer.reported(1)
        assert state.take() == []

    def test_a_held_task_names_itself_as_a_task(self) -> None:
        held = Held("arn:aws:states:us-east-1:1:activity:pre-Resize", LONG_TOKEN, 3)
        assert (held.token_prefix, held.activity_name, held.sent) == ("t" * 12, "pre-Resize", False)
        again = held.as_task("w")
        assert (again.token, again.activity_arn, again.worker_name) == (
            LONG_TOKEN,
            held.activity_arn,
            "w",
        )


class TestAcrossProcesses:
    """The slot's numbers are shared memory: the worker reads what a task process wrote."""

    def test_the_record_sees_what_a_child_process_finished_and_reported(self) -> None:
        context = multiprocessing.get_context("spawn")
        cells = Cells(context, 2)
        state = SlotState(cells, 1)
        assert state.hold(task("from-the-worker"), 0) == 1
        child = context.Process(target=run_and_report, args=(cells, 1))
        child.start()
        child.join(30)
        assert child.exitcode == 0
        assert state.free()
        assert not state.answering()
        assert state.take() == []

    def test_a_process_killed_before_it_reported_leaves_its_tasks_to_the_worker(self) -> None:
        """No lock: the worker takes what the dead process answered for, and nothing blocks."""
        context = multiprocessing.get_context("spawn")
        cells = Cells(context, 2)
        state = SlotState(cells, 1)
        assert state.hold(task("finished"), 0) == 1
        handed = context.Event()
        child = context.Process(target=finish_then_die, args=(cells, 1, handed))
        child.start()
        assert wait_until(lambda: state.free() or not child.is_alive())
        assert state.hold(task("running"), 1) == 2
        handed.set()  # as the worker's message would tell it
        child.join(30)
        assert child.exitcode == -signal.SIGKILL
        taken: list[Held] = []
        taker = threading.Thread(target=lambda: taken.extend(state.take()), daemon=True)
        taker.start()
        taker.join(30)
        assert not taker.is_alive(), "taking the dead slot's tasks blocked"
        assert [(held.token, held.sent) for held in taken] == [
            ("finished", True),
            ("running", False),
        ]


def run_and_report(cells: Cells, at: int) -> None:
    answer = Answer(cells, at)
    answer.begin(1, task("from-the-worker"))
    if answer.finish(1):
        answer.reported(1)


def finish_then_die(cells: Cells, at: int, handed: Event) -> None:
    """Finish task 1, begin the next once handed, and die before task 1 was reported."""
    answer = Answer(cells, at)
    answer.begin(1, task("finished"))
    answer.finish(1)
    handed.wait(30)
    answer.begin(2, task("running"))
    os.kill(os.getpid(), signal.SIGKILL)


class TestAnswer:
    def test_the_slot_reports_what_the_grace_did_not_take(self, answer: Answer) -> None:
        first = task("first")
        answer.begin(1, first)
        assert answer.running() is first
        assert answer.finish(1)
        assert answer.running() is None
        assert answer.take() is None, "nothing runs"

    def test_a_task_taken_at_the_grace_is_not_the_slots_to_report(
        self, cells: Cells, answer: Answer
    ) -> None:
        first = task("first")
        answer.begin(1, first)
        assert answer.take() == (1, first)
        assert answer.running() is None
        assert answer.take() is None, "taken twice"
        assert not answer.finish(1)
        assert cells.get(1, FINISHED) == 1, "the slot is free all the same"
        answer.begin(2, task("second"))
        assert answer.finish(2), "the next task is the slot's again"

    def test_a_task_is_taken_by_its_token_only(self, answer: Answer) -> None:
        """A stuck task's token: not the task the slot began after that one ended."""
        second = task("token-2")
        answer.begin(2, second)
        assert answer.take(token="token-1") is None
        assert answer.running() is second
        assert answer.take(token="token-2") == (2, second)
        assert not answer.finish(2)

    def test_the_reported_number_never_goes_back(self, cells: Cells, answer: Answer) -> None:
        """A late report of an earlier task does not give the worker back a reported task."""
        answer.reported(3)
        answer.reported(2)
        assert cells.get(1, REPORTED) == 3
        assert cells.get(0, REPORTED) == 0, "another slot's number"

    def test_outcomes_landing_out_of_order_leave_the_earlier_to_the_worker(
        self, cells: Cells, state: SlotState, answer: Answer
    ) -> None:
        """Two outcomes on their way: the later one lands first; the earlier is still answered."""
        for token in ("first", "second"):
            number = state.hold(task(token), 0)
            assert number is not None
            answer.begin(number, task(token))
            assert answer.finish(number)
        answer.reported(2)
        assert cells.get(1, REPORTED) == 0, "task 1 is still on its way"
        assert [held.token for held in state.take()] == ["first", "second"]
        answer.reported(1)
        assert cells.get(1, REPORTED) == 2
