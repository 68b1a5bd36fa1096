"""How a worker's pool stops (activities.worker._stop): drained, past the grace, at once.

Against the worker's real hand-off (not started: its polls are counted by hand), with
stand-in units whose slots keep the worker's real record
(:class:`~activities.worker._slotstate.SlotState`); a test writes the numbers a slot would.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import threading
import time
from types import SimpleNamespace
from typing import TYPE_CHECKING

import pytest

from activities import Activity
from activities.client import ActivityClient
from activities.errors import WorkerShutdown
from activities.task import Task
from activities.worker import _stop
from activities.worker._control import Control
from activities.worker._handoff import HandOff
from activities.worker._heartbeats import Heartbeats
from activities.worker._slotstate import FINISHED, REPORTED, Cells, Held, SlotState
from activities.worker._stop import Stop, stop_on_signals
from tests.fake_sfn import ARN_PREFIX
from tests.waiting import wait_until

if TYPE_CHECKING:
    from collections.abc import Iterator

    from activities.worker._slot import Slot, Unit
    from tests.fake_sfn import FakeStepFunctions


class StopA(Activity):
    name = "stop-A"

    def run(self) -> None:
        """Never run: the units here are stand-ins."""


class StopB(Activity):
    name = "stop-B"

    def run(self) -> None:
        """Never run: the units here are stand-ins."""


ARNS = [ARN_PREFIX + StopA.name, ARN_PREFIX + StopB.name]


class Delivered:
    """The worker's background deliveries: all delivered."""

    def wait(self, timeout: float) -> bool:
        return True


class StandInSlot:
    """A slot the worker hands tasks to; it runs nothing (the test writes its numbers)."""

    takes_sync = True
    ready = True

    def __init__(self, unit: StandInUnit, position: int, cells: Cells, at: int) -> None:
        self.name = f"{unit.name}.{at}"
        self.kind = unit.kind
        self.position = position
        self.state = SlotState(cells, at)
        self.cells = cells
        self.at = at
        self.handed: list[Task] = []

    def offer(self, task: Task, index: int) -> bool:
        if self.state.hold(task, index) is None:
            return False
        self.handed.append(task)
        return True

    def close(self) -> None:
        self.state.close()

    def finish(self, number: int) -> None:
        """Task ``number`` returned (the slot is free): its outcome is being sent."""
        self.cells.set(self.at, FINISHED, number)

    def reported(self, number: int) -> None:
        """The slot answers for task ``number`` no more."""
        self.cells.set(self.at, REPORTED, number)


class StandInUnit:
    """A task process (``kind="process"``) or a thread slot: it ends when the test says."""

    ready = True

    def __init__(self, name: str, kind: str, context: object, positions: list[int]) -> None:
        self.name = name
        self.kind = kind
        cells = Cells(context, len(positions))  # type: ignore[arg-type]
        self._slots = [
            StandInSlot(self, position, cells, at) for at, position in enumerate(positions)
        ]
        self.alive = True
        self.terminated = False

    @property
    def slots(self) -> list[StandInSlot]:
        return self._slots

    def start(self) -> None:
        """Started already."""

    def terminate(self) -> bool:
        if self.kind != "process":
            return False
        self.terminated = True
        self.alive = False
        return True

    def is_alive(self) -> bool:
        return self.alive


class Clock:
    """The drain's clock, moved by the test; each of its sleeps is short and counted."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps = 0

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        time.sleep(0.002)
        self.sleeps += 1

    def ticks(self, count: int = 3) -> None:
        """Wait until the drain's loop went round ``count`` more times."""
        until = self.sleeps + count
        assert wait_until(lambda: self.sleeps >= until), "the drain stopped going round"


class Pool:
    """A stopping worker's pool: its control, its hand-off, its units, and its Stop."""

    def __init__(self, fake: FakeStepFunctions) -> None:
        self.context = multiprocessing.get_context("spawn")
        self.control = Control(self.context, ARNS, slots=4)
        self.client = ActivityClient(fake, worker_name="w")  # type: ignore[arg-type]
        self.heartbeats = Heartbeats(self.client, on_stuck=lambda job: None, threads=2)
        self.units: list[StandInUnit] = []
        #: What the worker failed in a slot's place, and what it failed as it waited.
        self.failed: list[tuple[Held, Exception]] = []
        self.failed_waiting: list[tuple[Task, Exception]] = []
        self.handoff = HandOff(
            self.client,
            self.control,
            by_arn={ARNS[0]: StopA, ARNS[1]: StopB},
            capacity=4,
            heartbeats=self.heartbeats,
            slots=self.slots,
            fail=lambda task, error: self.failed_waiting.append((task, error)),
        )
        self.stop = Stop(
            self.control,
            self.handoff,
            units=self.units_now,
            fail=lambda held, error: self.failed.append((held, error)),
            failures=Delivered(),  # type: ignore[arg-type]
            grace=30,
        )
        self.result: bool | None = None
        self._tokens = 0

    def unit(self, kind: str, positions: list[int]) -> StandInUnit:
        unit = StandInUnit(f"{kind}-{len(self.units)}", kind, self.context, positions)
        self.units.append(unit)
        return unit

    def units_now(self) -> list[Unit]:
        return list(self.units)

    def slots(self) -> list[Slot]:
        return [slot for unit in self.units for slot in unit.slots]

    def task(self, arn: str = ARNS[0]) -> Task:
        self._tokens += 1
        return Task(
            token=f"token-{self._tokens:04d}" + "x" * 40,
            activity_arn=arn,
            worker_name="w",
            input="{}",
        )

    def run_on(self, slot: StandInSlot) -> Task:
        """Hand ``slot`` a task, as the hand-off does; the task."""
        task = self.task()
        assert slot.offer(task, 0)
        return task

    def drain(
        self, deadline: float, terminating: threading.Event | None = None
    ) -> threading.Thread:
        """Drain in a thread of its own (see :attr:`result`)."""
        event = terminating or threading.Event()

        def draining() -> None:
            self.result = self.stop.drain(deadline, event)

        thread = threading.Thread(target=draining, daemon=True)
        thread.start()
        return thread

    def close(self) -> None:
        self.handoff.close()
        self.heartbeats.close()


@pytest.fixture
def pool(fake: FakeStepFunctions) -> Iterator[Pool]:
    made = Pool(fake)
    made.control.stopping.set()  # a graceful stop began: no new poll
    try:
        yield made
    finally:
        for unit in made.units:
            unit.alive = False
        made.control.past_deadline.set()
        made.close()


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    """The drain's clock, moved by the test."""
    moved = Clock()
    monkeypatch.setattr(
        _stop, "time", SimpleNamespace(monotonic=moved.monotonic, sleep=moved.sleep)
    )
    return moved


class TestDrain:
    """Slots are closed once no task can arrive any more: no poll open and no task waiting."""

    def test_the_slots_close_once_the_last_poll_returns(self, pool: Pool, clock: Clock) -> None:
        """A poll open may bring a task: the idle slots wait for it, then close."""
        unit = pool.unit("process", [0, 1])
        pool.handoff.lists.open[1] = 1  # a poll of stop-B is open
        draining = pool.drain(clock.now + 30)
        clock.ticks()
        assert not any(slot.state.closed for slot in unit.slots), "closed with a poll open"
        pool.handoff.lists.open[1] = 0  # it returned empty
        assert wait_until(lambda: all(slot.state.closed for slot in unit.slots))
        unit.alive = False  # a closed unit ends once its tasks are done
        draining.join(10)
        assert pool.result is True

    def test_the_slots_close_once_no_task_waits(self, pool: Pool, clock: Clock) -> None:
        """A task waits for a slot: the slot that frees is handed it, then the slots close."""
        unit = pool.unit("process", [0, 1])
        first, second = unit.slots
        pool.run_on(first)
        pool.run_on(second)
        waiting = pool.task(ARNS[1])
        pool.handoff.put(waiting)  # every slot busy: it waits
        pool.handoff.start()
        draining = pool.drain(clock.now + 30)
        clock.ticks()
        assert not any(slot.state.closed for slot in unit.slots), "closed as a task waited"
        second.finish(1)
        second.reported(1)  # second is free: the task is handed to it
        assert wait_until(lambda: second.handed[-1] is waiting)
        assert wait_until(lambda: all(slot.state.closed for slot in unit.slots))
        assert pool.handoff.waiting() == 0
        for number, slot in ((1, first), (2, second)):
            slot.finish(number)
            slot.reported(number)
        unit.alive = False
        draining.join(10)
        assert pool.result is True
        assert not pool.failed_waiting
        assert not pool.failed

    def test_a_drain_waits_for_the_units_to_end(self, pool: Pool, clock: Clock) -> None:
        unit = pool.unit("process", [0])
        draining = pool.drain(clock.now + 30)
        assert wait_until(lambda: unit.slots[0].state.closed)
        clock.ticks()
        assert draining.is_alive()
        unit.alive = False
        draining.join(10)
        assert pool.result is True

    def test_a_stop_at_once_ends_the_drain(self, pool: Pool, clock: Clock) -> None:
        pool.unit("process", [0])
        terminating = threading.Event()
        draining = pool.drain(clock.now + 30, terminating)
        clock.ticks()
        terminating.set()
        draining.join(10)
        assert not draining.is_alive()


class TestPastTheGrace:
    """Each process fails its running tasks; the worker stops those that answer for nothing."""

    def test_a_process_that_answers_for_nothing_is_stopped(self, pool: Pool, clock: Clock) -> None:
        """Its process failed its task at the grace's end (reported), though its thread runs on."""
        failed_by_itself = pool.unit("process", [0])
        pool.run_on(failed_by_itself.slots[0])
        failed_by_itself.slots[0].reported(1)  # FINISHED stays 0: run() never returned
        idle = pool.unit("process", [1])
        threads = pool.unit("thread", [2])
        deadline = clock.now + 30
        draining = pool.drain(deadline)
        clock.ticks()
        assert not failed_by_itself.terminated, "stopped before the grace's end"
        clock.now = deadline + 1
        assert wait_until(lambda: failed_by_itself.terminated and idle.terminated)
        assert pool.control.past_deadline.is_set()
        assert not threads.terminated
        threads.alive = False
        draining.join(10)
        assert pool.result is False, "a task still ran at the grace's end"
        assert not pool.failed, "the worker failed a task its process had reported"

    def test_a_process_that_still_answers_is_stopped_a_minute_later(
        self, pool: Pool, clock: Clock
    ) -> None:
        """An outcome still on its way: a minute on, the worker takes its tasks and fails them."""
        reporting = pool.unit("process", [0, 1])
        sending, running = reporting.slots
        sent = pool.run_on(sending)
        sending.finish(1)  # its outcome is on its way
        task = pool.run_on(running)
        deadline = clock.now + 30
        draining = pool.drain(deadline)
        clock.now = deadline + 1
        clock.ticks()
        assert not reporting.terminated
        assert not pool.failed
        clock.now = deadline + _stop.DRAIN_DELIVERY_TIMEOUT + 1
        assert wait_until(lambda: reporting.terminated)
        draining.join(10)
        assert pool.result is False
        assert pool.control.give_up.is_set()
        assert [(held.token, held.sent) for held, _ in pool.failed] == [
            (sent.token, True),
            (task.token, False),
        ]
        for _, error in pool.failed:
            assert isinstance(error, WorkerShutdown)
            assert "shutdown grace of 30 s expired" in str(error)

    def test_the_tasks_waiting_for_a_slot_fail(self, pool: Pool, clock: Clock) -> None:
        busy = pool.unit("process", [0])
        pool.run_on(busy.slots[0])
        waiting = pool.task()
        pool.handoff.put(waiting)
        deadline = clock.now + 30
        draining = pool.drain(deadline)
        clock.now = deadline + 1
        assert wait_until(lambda: pool.failed_waiting)
        [(task, error)] = pool.failed_waiting
        assert task is waiting
        assert isinstance(error, WorkerShutdown)
        assert "waiting for a slot" in str(error)
        busy.slots[0].reported(1)
        assert wait_until(lambda: busy.terminated)
        draining.join(10)
        assert pool.result is False


class TestAtOnce:
    def test_processes_are_stopped_and_what_their_slots_answered_for_fails(
        self, pool: Pool, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setattr(_stop, "TERMINATE_DELIVERY_TIMEOUT", 0.2)
        process = pool.unit("process", [0, 1, 2])
        running, sending, done = process.slots
        task = pool.run_on(running)
        sent = pool.run_on(sending)
        sending.finish(1)
        pool.run_on(done)
        done.finish(1)
        done.reported(1)
        threads = pool.unit("thread", [3])
        pool.run_on(threads.slots[0])
        waiting = pool.task()
        pool.handoff.put(waiting)
        pool.stop.at_once()
        assert process.terminated
        assert not threads.terminated
        assert sorted((held.token, held.sent) for held, _ in pool.failed) == sorted(
            [(task.token, False), (sent.token, True)]
        )
        assert all(isinstance(error, WorkerShutdown) for _, error in pool.failed)
        assert "stopped at once while the task ran" in str(pool.failed[0][1])
        [(failed, error)] = pool.failed_waiting
        assert failed is waiting
        assert "stopped at once while the task waited" in str(error)
        control = pool.control
        assert control.give_up.is_set()
        assert control.past_deadline.is_set()
        assert all(slot.state.closed for slot in process.slots)
        assert not threads.slots[0].state.closed, "a thread slot reports its own task"

    def test_a_task_put_after_it_fails(self, pool: Pool) -> None:
        pool.stop.at_once()
        late = pool.task()
        pool.handoff.put(late)
        [(task, error)] = pool.failed_waiting
        assert task is late
        assert isinstance(error, WorkerShutdown)


class TestWhatAStopSays:
    """The start of a graceful stop is one line: what it waits for, what a second signal costs."""

    @pytest.fixture
    def said(self, caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
        caplog.set_level(logging.INFO, logger="activities.worker")
        return caplog

    def test_a_signal_begins_it_in_one_line(
        self, pool: Pool, said: pytest.LogCaptureFixture
    ) -> None:
        """Ctrl-C on an idle worker: its open polls may take a minute, and a second Ctrl-C
        fails the tasks and loses what an open poll brings."""
        pool.handoff.lists.open[:] = [1, 1]
        at_once = threading.Event()
        with stop_on_signals(graceful=pool.stop.announce, at_once=at_once.set):
            os.kill(os.getpid(), signal.SIGINT)  # handled in this thread, before kill returns
        [line] = [record.getMessage() for record in said.records]
        assert line == (
            "SIGINT: stopping gracefully: no new polls; 2 polls still open may each take up to "
            "60 s to return, and a task one brings still runs; running tasks have 30 s to "
            "finish; a second signal stops at once: running tasks and tasks waiting for a slot "
            "fail with WorkerShutdown, and a task an open poll brings is lost until its timeout"
        )
        assert not at_once.is_set()

    def test_a_second_signal_says_what_it_costs(
        self, pool: Pool, said: pytest.LogCaptureFixture
    ) -> None:
        at_once = threading.Event()
        with stop_on_signals(graceful=pool.stop.announce, at_once=at_once.set):
            os.kill(os.getpid(), signal.SIGTERM)
            os.kill(os.getpid(), signal.SIGTERM)
            assert at_once.wait(10)
        first, second = [record.getMessage() for record in said.records]
        assert first == (
            "SIGTERM: stopping gracefully: no new polls; running tasks have 30 s to finish; "
            "a second signal stops at once: running tasks and tasks waiting for a slot fail "
            "with WorkerShutdown, and a task an open poll brings is lost until its timeout"
        )
        assert second.startswith("SIGTERM again: stopping at once: running tasks and tasks")

    def test_a_stop_asked_in_code_names_no_signal(
        self, pool: Pool, said: pytest.LogCaptureFixture
    ) -> None:
        """worker.stop() has no second signal to warn of."""
        pool.handoff.lists.open[0] = 1
        pool.stop.announce()
        [line] = [record.getMessage() for record in said.records]
        assert line == (
            "stopping gracefully: no new polls; 1 poll still open may take up to 60 s to "
            "return, and a task one brings still runs; running tasks have 30 s to finish"
        )
