"""Async positions: many async tasks of one process on its loop, with a slot's guarantees.

The positions run in this process here, on the in-memory Step Functions: what the
worker does around them (its hand-off, its stop) is done by hand, as it would.
"""

from __future__ import annotations

import multiprocessing
import threading
import time
from typing import TYPE_CHECKING, Any

import pytest

from activities import _asyncslots, _heartbeats
from activities._asyncslots import AsyncSlots
from activities._control import Control
from activities._heartbeats import Heartbeats
from activities._loop import SlotSettings
from activities._recycling import ProcessLife
from activities._slotstate import SlotState
from activities.client import ActivityClient
from tests import async_workload, workloads
from tests.fake_sfn import ARN_PREFIX
from tests.waiting import wait_until

if TYPE_CHECKING:
    from collections.abc import Iterator

    from activities._activity import Activity
    from activities._heartbeats import Job
    from activities.task import Task
    from tests.fake_sfn import FakeStepFunctions


class Positions:
    """``count`` async positions serving ``activities``, their run() in a thread."""

    def __init__(
        self,
        fake: FakeStepFunctions,
        activities: list[type[Activity]],
        count: int = 3,
        *,
        max_tasks: int | None = None,
    ) -> None:
        context = multiprocessing.get_context("spawn")
        self.fake = fake
        self.arns = [ARN_PREFIX + activity.name for activity in activities]
        self.control = Control(context, self.arns, slots=count, pollers=None)
        self.states = [SlotState(context, self.control, at) for at in range(count)]
        self.client = ActivityClient(fake, worker_name="w")  # type: ignore[arg-type]
        self.overflow: list[Task] = []
        self.freed = threading.Event()
        self.life = ProcessLife("p", max_tasks, None)
        self.heartbeats = Heartbeats(self.client, on_stuck=self._stuck, threads=2)
        settings = SlotSettings(
            by_arn=dict(zip(self.arns, activities, strict=True)),
            heartbeat_intervals={a.name: a.heartbeat_interval for a in activities},
            worker_name="w",
        )
        self.slots = AsyncSlots(
            "p.async",
            self.client,
            settings=settings,
            control=self.control,
            positions=[(f"p.async-{at}", at, state) for at, state in enumerate(self.states)],
            heartbeats=self.heartbeats,
            overflow=lambda task, _: self.overflow.append(task),
            freed=self.freed.set,
            life=self.life,
        )
        self.reason: str | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        self.reason = self.slots.run()

    def _stuck(self, job: Job) -> None:
        if self.slots.give_up(job):
            self.life.recycle()

    def hand(self, position: int, activity: type[Activity], data: str = "{}") -> str:
        """Hand a task of ``activity`` to ``position``, as the worker's buffer would; its token."""
        self.fake.add_task(activity.name, data)
        task = self.client.poll(ARN_PREFIX + activity.name)
        assert task is not None
        index = self.arns.index(task.activity_arn)
        assert self.states[position].try_hold(task.activity_arn, task.token, index)
        self.slots.hand(position, task)
        return task.token

    def stop(self, *, past_grace: bool = False) -> None:
        """Stop as the worker does: no new polls, nothing left to hand over."""
        self.control.stopping.set()
        if past_grace:
            self.control.past_deadline.set()
        self.control.drained.set()

    def ended(self, timeout: float = 10) -> bool:
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def close(self) -> None:
        self.stop(past_grace=True)
        self.ended()
        self.heartbeats.close()


@pytest.fixture
def positions(fake: FakeStepFunctions) -> Iterator[list[Positions]]:
    """Positions made by the test (``Positions(...)``) are stopped when it ends."""
    made: list[Positions] = []
    yield made
    for each in made:
        each.close()


def make(made: list[Positions], *args: Any, **options: Any) -> Positions:
    made.append(Positions(*args, **options))
    return made[-1]


class TestRunning:
    def test_tasks_handed_over_run_at_once_side_by_side(
        self, fake: FakeStepFunctions, positions: list[Positions]
    ) -> None:
        """Three tasks that return only once all three run together, on one loop."""
        p = make(positions, fake, [async_workload.Gathering], 3)
        tokens = [p.hand(at, async_workload.Gathering, '{"count": 3}') for at in range(3)]
        assert fake.wait_for(3)
        assert [fake.successes.get(token) for token in tokens] == ["3", "3", "3"]
        assert wait_until(lambda: all(state.free() for state in p.states))

    def test_the_pollers_serve_a_busy_task_list(
        self, fake: FakeStepFunctions, positions: list[Positions]
    ) -> None:
        """Twelve tasks through three positions: each is polled and answered."""
        tokens = [
            fake.add_task("async-Echo", f'{{"value": {n}, "seconds": 0.01}}') for n in range(12)
        ]
        p = make(positions, fake, [async_workload.AsyncEcho], 3)
        p.control.mark_busy(0)  # as the worker's own poll of the task list does
        assert fake.wait_for(12)
        assert [fake.successes[token] for token in tokens] == [str(n) for n in range(12)]
        assert not p.overflow

    def test_a_sync_activity_is_left_to_the_slots(
        self, fake: FakeStepFunctions, positions: list[Positions]
    ) -> None:
        sync = fake.add_task("it-Echo", '{"value": 1}')
        coroutine = fake.add_task("async-Echo", '{"value": 2}')
        p = make(positions, fake, [workloads.Echo, async_workload.AsyncEcho], 2)
        p.control.mark_busy(0)
        p.control.mark_busy(1)
        assert fake.wait_for(1)
        time.sleep(0.3)  # the pollers look again, at both task lists if they would
        assert fake.successes == {coroutine: "2"}
        assert sync not in fake.handed_out

    def test_an_instance_that_cannot_be_made_fails_the_task(
        self, fake: FakeStepFunctions, positions: list[Positions]
    ) -> None:
        p = make(positions, fake, [async_workload.AsyncBrokenInit], 1)
        token = p.hand(0, async_workload.AsyncBrokenInit)
        assert fake.wait_for(1)
        assert fake.failures[token][0] == "RuntimeError"
        assert wait_until(p.states[0].free)

    def test_a_freed_position_tells_the_worker_when_tasks_wait(
        self, fake: FakeStepFunctions, positions: list[Positions]
    ) -> None:
        p = make(positions, fake, [async_workload.AsyncEcho], 1)
        p.control.buffered(0, 1)  # a task waits in the worker's buffer
        p.hand(0, async_workload.AsyncEcho, '{"value": 1}')
        assert p.freed.wait(10)


class TestPolling:
    def test_idle_pollers_wait_instead_of_waking_each_other(
        self, fake: FakeStepFunctions, positions: list[Positions], monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """No busy task list: each poller looks about every IDLE_WAIT, not in a loop."""
        calls = [0]
        choose = Control.choose

        def counting(self: Control, turn: int, among: Any = None) -> int:
            calls[0] += 1
            return choose(self, turn, among)

        monkeypatch.setattr(Control, "choose", counting)
        make(positions, fake, [async_workload.AsyncEcho], 50)
        time.sleep(0.3)
        calls[0] = 0
        time.sleep(1.0)
        # 16 pollers looking every 50 ms: about 320 looks in a second; spinning, tens of
        # thousands.
        assert calls[0] < 1000, calls[0]

    def test_a_position_is_polled_by_one_poller_at_a_time(
        self, fake: FakeStepFunctions, positions: list[Positions], monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Handed a task while its poll is open, and done with it: not polled twice at once."""
        fake.poll_wait = 3.0
        doubled: list[int] = []
        claim = Control.claim_poll

        def claiming(self: Control, position: int, index: int) -> bool:
            if position < self.slots and self.polling(position) >= 0:
                doubled.append(position)
            return claim(self, position, index)

        monkeypatch.setattr(Control, "claim_poll", claiming)
        p = make(positions, fake, [async_workload.AsyncEcho, async_workload.Gathering], 3)
        p.control.mark_busy(0)
        assert wait_until(lambda: all(p.control.polling(at) == 0 for at in range(3)))
        p.hand(0, async_workload.Gathering, '{"count": 1}')  # ends at once, its poll open
        assert fake.wait_for(1)
        time.sleep(0.2)
        for _ in range(2):
            fake.add_task("async-Echo", '{"value": 1, "seconds": 1}')
        assert fake.wait_for(3)
        assert not doubled


class TestCancellation:
    def test_a_gone_task_is_cancelled_and_its_position_freed(
        self, fake: FakeStepFunctions, positions: list[Positions]
    ) -> None:
        async_workload.Forever.cancelled.clear()
        p = make(positions, fake, [async_workload.Forever], 1)
        token = p.hand(0, async_workload.Forever)
        fake.gone.add(token)  # its next automatic heartbeat finds it gone
        assert wait_until(lambda: token in async_workload.Forever.cancelled)
        assert wait_until(p.states[0].free)
        assert token not in fake.successes
        assert token not in fake.failures

    def test_past_the_grace_a_running_task_fails_with_worker_shutdown(
        self, fake: FakeStepFunctions, positions: list[Positions]
    ) -> None:
        async_workload.Forever.cancelled.clear()
        p = make(positions, fake, [async_workload.Forever], 1)
        token = p.hand(0, async_workload.Forever)
        p.stop(past_grace=True)
        assert fake.wait_for(1)
        assert fake.failures[token][0] == "activities.WorkerShutdown"
        assert token in async_workload.Forever.cancelled
        assert p.ended()

    def test_a_task_handed_over_after_the_grace_fails_unstarted(
        self, fake: FakeStepFunctions, positions: list[Positions]
    ) -> None:
        p = make(positions, fake, [async_workload.AsyncEcho], 1)
        p.control.past_deadline.set()
        token = p.hand(0, async_workload.AsyncEcho, '{"value": 1}')
        assert fake.wait_for(1)
        assert fake.failures[token][0] == "activities.WorkerShutdown"
        assert wait_until(p.states[0].free)

    def test_a_task_that_will_not_stop_is_given_up(
        self, fake: FakeStepFunctions, positions: list[Positions], monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Found gone, it runs on past the cancel grace: nobody answers for it, run() ends."""
        monkeypatch.setattr(_heartbeats, "CANCEL_GRACE", 0.3)
        stubborn = async_workload.AsyncStubborn
        stubborn.released.clear()
        p = make(positions, fake, [stubborn], 2)
        token = p.hand(0, stubborn)
        fake.gone.add(token)
        try:
            assert wait_until(lambda: p.slots.stuck), "the task was not given up"
            assert token in stubborn.refused
            assert p.life.recycling.is_set()
            assert p.ended(), "run() waited for the stuck task"
            assert p.reason == "worn out"
            assert not p.states[0].answering()
        finally:
            stubborn.released.set()


class TestEnding:
    def test_a_stop_lets_running_tasks_finish_and_report(
        self, fake: FakeStepFunctions, positions: list[Positions]
    ) -> None:
        p = make(positions, fake, [async_workload.AsyncEcho], 2)
        token = p.hand(1, async_workload.AsyncEcho, '{"value": "done", "seconds": 0.3}')
        p.stop()
        assert p.ended()
        assert fake.successes[token] == '"done"'
        assert p.reason == "stopped"

    def test_positions_retire_when_the_process_is_worn_out(
        self, fake: FakeStepFunctions, positions: list[Positions]
    ) -> None:
        p = make(positions, fake, [async_workload.AsyncEcho], 3, max_tasks=2)
        first = p.hand(0, async_workload.AsyncEcho, '{"value": 1}')
        second = p.hand(1, async_workload.AsyncEcho, '{"value": 2}')
        assert p.ended()
        assert p.reason == "worn out"
        assert all(state.retired() for state in p.states)
        assert (fake.successes[first], fake.successes[second]) == ("1", "2")


class TestErrors:
    def test_a_position_is_freed_when_the_framework_fails_before_the_report(
        self, fake: FakeStepFunctions, positions: list[Positions], monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """An error before the outcome is settled (a metrics file, say): the position goes on."""
        conclude = _asyncslots.conclude
        calls = [0]

        def failing(*args: Any, **kwargs: Any) -> Any:
            calls[0] += 1
            if calls[0] == 1:
                msg = "metrics file: no space left on device"
                raise OSError(msg)
            return conclude(*args, **kwargs)

        monkeypatch.setattr(_asyncslots, "conclude", failing)
        p = make(positions, fake, [async_workload.AsyncEcho], 1)
        p.hand(0, async_workload.AsyncEcho, '{"value": 1}')
        assert wait_until(p.states[0].free)
        token = p.hand(0, async_workload.AsyncEcho, '{"value": 2}')
        assert fake.wait_for(1)
        assert fake.successes == {token: "2"}
