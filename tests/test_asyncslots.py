"""Async positions: many async tasks of one process on its loop, with a slot's guarantees.

The positions run in this process here, on the in-memory Step Functions: what the
worker does around them (its record of each position, handing tasks over, closing the
positions, the shutdown grace) is done by hand, as the worker and the task process would.
"""

from __future__ import annotations

import multiprocessing
import threading
from typing import TYPE_CHECKING, Any

import pytest

from activities.client import ActivityClient
from activities.task import Task
from activities.worker import _asyncslots, _heartbeats, _serving
from activities.worker._asyncslots import AsyncSlots, async_threads
from activities.worker._control import Control
from activities.worker._heartbeats import Heartbeats, Job
from activities.worker._loop import SlotSettings
from activities.worker._recycling import ProcessLife
from activities.worker._serving import GraceWatch
from activities.worker._slotstate import FINISHED, REPORTED, Answer, Cells, SlotState
from tests import async_workload, workloads
from tests.fake_sfn import ARN_PREFIX
from tests.waiting import wait_until

if TYPE_CHECKING:
    from collections.abc import Iterator

    from activities._activity import Activity
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
        self.control = Control(context, self.arns, slots=count)
        self.cells = Cells(context, count)
        #: The worker's record of each position.
        self.states = [SlotState(self.cells, at) for at in range(count)]
        self.answers = [Answer(self.cells, at) for at in range(count)]
        self.client = ActivityClient(fake, worker_name="w")  # type: ignore[arg-type]
        self.freed = threading.Event()
        self.recycled = threading.Event()
        self.life = ProcessLife("p", max_tasks, None, on_recycle=self.recycled.set)
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
            positions=[(f"p.async-{at}", at, answer) for at, answer in enumerate(self.answers)],
            heartbeats=self.heartbeats,
            freed=self.freed.set,
            life=self.life,
        )
        self.grace = GraceWatch(self.control)  # as the task process's
        self.grace.add(self.slots)
        self.reason: str | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        self.reason = self.slots.run()

    def _stuck(self, job: Job) -> None:
        if self.slots.give_up(job):
            self.life.recycle()  # as the task process does

    def hand(self, position: int, activity: type[Activity], data: str = "{}") -> str:
        """Hand a task of ``activity`` to ``position``, as the hand-off would; its token."""
        self.fake.add_task(activity.name, data)
        task = self.client.poll(ARN_PREFIX + activity.name)
        assert task is not None
        number = self.states[position].hold(task, self.arns.index(task.activity_arn))
        assert number is not None, f"position {position} is not free"
        self.slots.hand(position, number, task)
        return task.token

    def number(self, position: int, field: int) -> int:
        """One of the numbers ``position`` shares with the worker."""
        return self.cells.get(position, field)

    def close_all(self) -> None:
        """Close every position, as the worker's stop (or recycling) does."""
        for state in self.states:
            state.close()
        for position in range(len(self.states)):
            self.slots.close(position)

    def ended(self, timeout: float = 10) -> bool:
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def close(self) -> None:
        self.control.stopping.set()
        self.control.past_deadline.set()
        self.close_all()
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
        async_workload.Gathering.reset()
        p = make(positions, fake, [async_workload.Gathering], 3)
        tokens = [p.hand(at, async_workload.Gathering, '{"count": 3}') for at in range(3)]
        assert fake.wait_for(3)
        assert [fake.successes.get(token) for token in tokens] == ["3", "3", "3"]
        assert wait_until(lambda: all(state.free() for state in p.states))
        assert [(p.number(at, FINISHED), p.number(at, REPORTED)) for at in range(3)] == [(1, 1)] * 3

    def test_each_task_of_a_position_has_its_number(
        self, fake: FakeStepFunctions, positions: list[Positions]
    ) -> None:
        """The second task of a position finishes and is reported as number 2."""
        p = make(positions, fake, [async_workload.AsyncEcho], 1)
        p.hand(0, async_workload.AsyncEcho, '{"value": 1}')
        assert wait_until(p.states[0].free)
        token = p.hand(0, async_workload.AsyncEcho, '{"value": 2}')
        assert fake.wait_for(2)
        assert fake.successes[token] == "2"
        assert wait_until(lambda: p.number(0, REPORTED) == 2)
        assert p.number(0, FINISHED) == 2
        assert not p.states[0].answering()

    def test_a_sync_task_handed_to_a_position_runs_all_the_same(
        self, fake: FakeStepFunctions, positions: list[Positions]
    ) -> None:
        """The worker keeps sync tasks to slots; one that reaches a position runs in a thread."""
        p = make(positions, fake, [workloads.Echo], 1)
        token = p.hand(0, workloads.Echo, '{"value": 7}')
        assert fake.wait_for(1)
        assert fake.successes[token] == "7"

    def test_an_instance_that_cannot_be_made_fails_the_task(
        self, fake: FakeStepFunctions, positions: list[Positions]
    ) -> None:
        p = make(positions, fake, [async_workload.AsyncBrokenInit], 1)
        token = p.hand(0, async_workload.AsyncBrokenInit)
        assert fake.wait_for(1)
        assert fake.failures[token][0] == "RuntimeError"
        assert wait_until(p.states[0].free)
        assert wait_until(lambda: p.number(0, REPORTED) == 1)

    def test_a_freed_position_tells_the_worker_when_tasks_wait(
        self, fake: FakeStepFunctions, positions: list[Positions]
    ) -> None:
        p = make(positions, fake, [async_workload.AsyncEcho], 1)
        p.control.set_waiting(1)  # a task waits in the worker's buffer
        p.hand(0, async_workload.AsyncEcho, '{"value": 1}')
        assert p.freed.wait(10)

    def test_a_freed_position_says_nothing_when_no_task_waits(
        self, fake: FakeStepFunctions, positions: list[Positions]
    ) -> None:
        p = make(positions, fake, [async_workload.AsyncEcho], 1)
        p.hand(0, async_workload.AsyncEcho, '{"value": 1}')
        assert wait_until(lambda: p.number(0, REPORTED) == 1)
        assert wait_until(p.states[0].free)
        assert not p.freed.is_set()

    def test_each_task_counts_towards_the_process_s_life(
        self, fake: FakeStepFunctions, positions: list[Positions]
    ) -> None:
        """Worn out (``max_tasks``), the process asks the worker for no more tasks."""
        p = make(positions, fake, [async_workload.AsyncEcho], 3, max_tasks=2)
        p.hand(0, async_workload.AsyncEcho, '{"value": 1}')
        assert wait_until(lambda: p.number(0, REPORTED) == 1)
        assert not p.recycled.is_set()
        p.hand(1, async_workload.AsyncEcho, '{"value": 2}')
        assert p.recycled.wait(10)
        assert p.life.tasks_done == 2


class TestCancellation:
    def test_a_gone_task_is_cancelled_and_its_number_reported(
        self, fake: FakeStepFunctions, positions: list[Positions]
    ) -> None:
        """Nothing is sent for it, and the position answers for it no more."""
        async_workload.Forever.cancelled.clear()
        p = make(positions, fake, [async_workload.Forever], 1)
        token = p.hand(0, async_workload.Forever)
        fake.gone.add(token)  # its next automatic heartbeat finds it gone
        assert wait_until(lambda: token in async_workload.Forever.cancelled)
        assert wait_until(lambda: p.number(0, REPORTED) == 1)
        assert p.number(0, FINISHED) == 1
        assert p.states[0].free()
        assert not p.states[0].answering()
        assert token not in fake.successes
        assert token not in fake.failures

    def test_past_the_grace_a_running_task_fails_with_worker_shutdown_once(
        self, fake: FakeStepFunctions, positions: list[Positions]
    ) -> None:
        """The grace's end (at_grace) and the coroutine's cancellation race: one outcome is sent."""
        async_workload.Forever.cancelled.clear()
        p = make(positions, fake, [async_workload.Forever], 1)
        token = p.hand(0, async_workload.Forever)
        p.control.stopping.set()
        p.control.past_deadline.set()
        assert fake.wait_for(1)
        assert fake.failures[token][0] == "activities.WorkerShutdown"
        assert wait_until(lambda: token in async_workload.Forever.cancelled)
        assert wait_until(lambda: p.number(0, FINISHED) == 1)
        assert p.number(0, REPORTED) == 1
        p.close_all()
        assert p.ended()
        assert fake.calls["SendTaskFailure"] == 1
        assert not fake.successes

    def test_what_a_task_returns_after_the_grace_took_it_is_dropped(
        self, fake: FakeStepFunctions, positions: list[Positions]
    ) -> None:
        """at_grace first: the failure is sent; the coroutine, cancelled, returns a success."""
        p = make(positions, fake, [async_workload.AsyncIgnoresCancel], 1)
        token = p.hand(0, async_workload.AsyncIgnoresCancel)
        assert wait_until(lambda: p.answers[0].running() is not None)
        p.slots.at_grace()  # what the process's GraceWatch does at the grace's end
        assert fake.wait_for(1)
        assert fake.failures[token][0] == "activities.WorkerShutdown"
        assert wait_until(lambda: p.number(0, REPORTED) == 1)
        assert p.number(0, FINISHED) == 0, "still running"
        assert not p.states[0].answering()
        p.control.past_deadline.set()  # the coroutine is cancelled: it returns "done anyway"
        assert wait_until(lambda: p.number(0, FINISHED) == 1)
        p.close_all()
        assert p.ended()  # no outcome of it is in flight
        assert fake.successes == {}
        assert fake.calls["SendTaskFailure"] == 1

    def test_the_grace_takes_nothing_whose_outcome_is_on_its_way(
        self, fake: FakeStepFunctions, positions: list[Positions], monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """The coroutine ended first: its success is sent, and at_grace sends no failure."""
        sending, release = threading.Event(), threading.Event()
        send = fake.send_task_success

        def slow_success(taskToken: str, output: str) -> dict[str, str]:  # noqa: N803
            sending.set()
            assert release.wait(10)
            return send(taskToken=taskToken, output=output)

        monkeypatch.setattr(fake, "send_task_success", slow_success)
        p = make(positions, fake, [async_workload.AsyncEcho], 1)
        token = p.hand(0, async_workload.AsyncEcho, '{"value": 1}')
        assert sending.wait(10)
        assert p.number(0, FINISHED) == 1
        p.slots.at_grace()
        release.set()
        assert fake.wait_for(1)
        assert wait_until(lambda: p.number(0, REPORTED) == 1)
        p.close_all()
        assert p.ended()
        assert fake.successes == {token: "1"}
        assert fake.calls["SendTaskFailure"] == 0

    def test_a_task_handed_over_after_the_grace_fails_unstarted(
        self, fake: FakeStepFunctions, positions: list[Positions]
    ) -> None:
        async_workload.Gathering.reset()
        p = make(positions, fake, [async_workload.Gathering], 1)
        p.control.past_deadline.set()
        token = p.hand(0, async_workload.Gathering, '{"count": 1}')
        assert fake.wait_for(1)
        assert fake.failures[token][0] == "activities.WorkerShutdown"
        assert async_workload.Gathering.most == 0, "it ran"
        assert wait_until(lambda: p.number(0, REPORTED) == 1)
        assert p.number(0, FINISHED) == 1
        assert fake.calls["SendTaskFailure"] == 1

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
            assert p.recycled.is_set()
            assert p.number(0, REPORTED) == 1
            assert p.number(0, FINISHED) == 0, "it still runs"
            assert not p.states[0].answering()
            p.close_all()
            assert p.ended(), "run() waited for the stuck task"
            assert p.reason == "stopped"
            assert token not in fake.successes
            assert token not in fake.failures
        finally:
            stubborn.released.set()

    def test_a_task_not_of_these_positions_is_not_given_up(
        self, fake: FakeStepFunctions, positions: list[Positions]
    ) -> None:
        p = make(positions, fake, [async_workload.AsyncEcho], 1)
        task = Task(token="t" * 40, activity_arn=p.arns[0], worker_name="w", input="{}")
        assert not p.slots.give_up(Job(task, async_workload.AsyncEcho, None))
        assert not p.slots.stuck


class TestEnding:
    def test_a_stop_lets_running_tasks_finish_and_report(
        self, fake: FakeStepFunctions, positions: list[Positions]
    ) -> None:
        """Closed while a task runs: run() returns once its outcome is sent."""
        p = make(positions, fake, [async_workload.AsyncEcho], 2)
        token = p.hand(1, async_workload.AsyncEcho, '{"value": "done", "seconds": 0.3}')
        p.control.stopping.set()
        p.close_all()
        assert p.ended()
        assert fake.successes[token] == '"done"'
        assert p.number(1, REPORTED) == 1
        assert p.reason == "stopped"

    def test_run_goes_on_while_a_position_is_open(
        self, fake: FakeStepFunctions, positions: list[Positions]
    ) -> None:
        """One position of two closed, and nothing runs: run() still serves the other."""
        p = make(positions, fake, [async_workload.AsyncEcho], 2)
        p.states[0].close()
        p.slots.close(0)
        assert not p.ended(timeout=0.3)
        token = p.hand(1, async_workload.AsyncEcho, '{"value": 3}')
        assert fake.wait_for(1)
        assert fake.successes[token] == "3"
        p.slots.close(1)
        assert p.ended()


class TestErrors:
    def test_a_position_is_freed_when_the_framework_fails_before_the_report(
        self, fake: FakeStepFunctions, positions: list[Positions], monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """An error before the outcome is settled (a metrics file, say): the position goes on."""
        conclude = _serving.conclude
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
        assert p.number(0, REPORTED) == 1, "the worker would think it still answers for it"
        token = p.hand(0, async_workload.AsyncEcho, '{"value": 2}')
        assert fake.wait_for(1)
        assert fake.successes == {token: "2"}


class TestThreads:
    @pytest.mark.parametrize(("positions", "threads"), [(1, 1), (3, 3), (16, 16), (100, 16)])
    def test_outcome_threads_are_few(self, positions: int, threads: int) -> None:
        assert async_threads(positions) == threads
