"""Heartbeats of held tasks: their cadence, yields coalesced to it, automatic ones, the
hand-over from the buffer to a slot, and a task found gone.

Most tests run on a clock of the test's (:class:`Clock`): the ticker thread reads it too,
so nothing falls due unless the test moves it, and each test counts the heartbeats sent
per task over minutes of that clock in a moment of the machine's. Their first heartbeats
come a whole cadence after the receipt (no :data:`SPREAD`), but in :class:`TestSpread`.
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING

import attrs
import pytest

from activities import Activity, TaskGone
from activities.task import Task
from activities.worker import _heartbeats as heartbeats_module
from activities.worker._heartbeats import DEFAULT_CADENCE, SPREAD, Heartbeats, Job, cadence
from tests.waiting import wait_until

if TYPE_CHECKING:
    from collections.abc import Iterator


class Quiet(Activity):
    def run(self) -> None: ...


class Declared(Activity):
    """Its states' HeartbeatSeconds are 60: a heartbeat every 20 s."""

    heartbeat_seconds = 60

    def run(self) -> None: ...


class Interval(Activity):
    heartbeat_interval = 5

    def run(self) -> None: ...


class Recorder:
    """Stands in for an ActivityClient: counts heartbeats, or says the task is gone."""

    def __init__(self, *, gone: bool = False) -> None:
        self.sent: list[str] = []
        self.gone = gone

    def send_heartbeat(self, token: str) -> None:
        self.sent.append(token)
        if self.gone:
            msg = "SendTaskHeartbeat: TaskTimedOut: gone"
            raise TaskGone(msg, code="TaskTimedOut", operation="SendTaskHeartbeat")


class Clock:
    """The heartbeats' time: it moves only when the test moves it."""

    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


def task(*, age: float = 0.0) -> Task:
    """A task a poll received ``age`` seconds ago."""
    started_at = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=age)
    return Task(
        token="token-1", activity_arn="arn:a", worker_name="w", input="{}", started_at=started_at
    )


def later(task: Task, seconds: float) -> Task:
    """``task`` as a slot sees it ``seconds`` of the test's clock after its receipt."""
    return attrs.evolve(task, started_at=task.started_at - dt.timedelta(seconds=seconds))


@pytest.fixture(autouse=True)
def unspread(monkeypatch: pytest.MonkeyPatch) -> None:
    """Heartbeats fall due whole cadences after the receipt: counts over time are exact."""
    monkeypatch.setattr(heartbeats_module, "SPREAD", 0.0)


@pytest.fixture
def client() -> Recorder:
    return Recorder()


@pytest.fixture
def stuck() -> list[Job]:
    return []


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def beats(client: Recorder, stuck: list[Job], clock: Clock) -> Iterator[Heartbeats]:
    heartbeats = Heartbeats(client, on_stuck=stuck.append, clock=clock)  # type: ignore[arg-type]
    yield heartbeats
    heartbeats.close()


def run_for(
    beats: Heartbeats, clock: Clock, seconds: float, *, yielding: Job | None = None
) -> None:
    """Move the clock ``seconds`` in steps of 0.1 s, the ticker looking at each step (and
    ``yielding`` asking for a heartbeat at each); every heartbeat sent lands before the next."""
    for _ in range(round(seconds * 10)):
        clock.now += 0.1
        if yielding is not None:
            beats.ask(yielding)
        beats._tick()
        assert wait_until(lambda: not any(job.in_flight for job in list(beats._jobs)))


def count(client: Recorder) -> int:
    """Heartbeats sent for the test's task."""
    return client.sent.count("token-1")


class TestCadence:
    @pytest.mark.parametrize(
        ("seconds", "interval", "expected"),
        [
            (60, None, 20.0),  # a third of HeartbeatSeconds
            (60, 5, 5),  # the interval, when shorter
            (60, 30, 20.0),  # a third, when the interval is longer
            (3, None, 1.0),  # the least heartbeat_seconds: a heartbeat a second
            (None, 30, 30),  # the interval alone
            (None, None, DEFAULT_CADENCE),
        ],
    )
    def test_a_third_of_heartbeat_seconds_or_the_interval_or_the_default(
        self, seconds: int | None, interval: float | None, expected: float
    ) -> None:
        activity = type("A", (Activity,), {"heartbeat_seconds": seconds})
        assert cadence(activity, interval) == expected

    def test_the_default_suits_heartbeat_seconds_of_30_and_more(self) -> None:
        """The documented assumption: a heartbeat at least every third of 30 s."""
        assert DEFAULT_CADENCE <= 30 / 3


class TestYielding:
    """A task that yields every 0.1 s, for a minute of the clock."""

    def test_without_heartbeat_seconds_a_heartbeat_every_default_cadence(
        self, beats: Heartbeats, client: Recorder, clock: Clock
    ) -> None:
        job = beats.begin(task(), Quiet, None)
        run_for(beats, clock, 59.5, yielding=job)
        assert count(client) == 5  # at 10, 20, 30, 40 and 50 s: not 600, nor 60

    def test_with_heartbeat_seconds_a_heartbeat_every_third_of_it(
        self, beats: Heartbeats, client: Recorder, clock: Clock
    ) -> None:
        job = beats.begin(task(), Declared, None)
        run_for(beats, clock, 59.5, yielding=job)
        assert count(client) == 2  # at 20 and 40 s

    def test_yields_in_quick_succession_cost_nothing_before_the_cadence(
        self, beats: Heartbeats, client: Recorder, clock: Clock
    ) -> None:
        """The task's receipt is as good as a heartbeat: a short task costs none."""
        job = beats.begin(task(), Quiet, None)
        for _ in range(1000):
            beats.ask(job)
        clock.now += DEFAULT_CADENCE - 0.5
        for _ in range(1000):
            beats.ask(job)
        assert wait_until(lambda: not job.in_flight)
        assert client.sent == []
        clock.now += 1
        for _ in range(1000):
            beats.ask(job)
        assert wait_until(lambda: client.sent)
        assert wait_until(lambda: not job.in_flight)
        assert client.sent == ["token-1"]

    def test_a_yield_after_an_automatic_heartbeat_sends_nothing_more(
        self, beats: Heartbeats, client: Recorder, clock: Clock
    ) -> None:
        job = beats.begin(task(), Declared, None)
        run_for(beats, clock, 20.5)
        assert count(client) == 1
        for _ in range(100):
            beats.ask(job)
        assert wait_until(lambda: not job.in_flight)
        assert count(client) == 1

    def test_the_cadence_counts_from_the_receipt_not_the_start(
        self, beats: Heartbeats, client: Recorder, clock: Clock
    ) -> None:
        """A task received 15 s before it starts is due at 20 s from its receipt: 5 s on."""
        job = beats.begin(task(age=15), Quiet, None)
        run_for(beats, clock, 4.5, yielding=job)
        assert count(client) == 0
        run_for(beats, clock, 1.0, yielding=job)
        assert count(client) == 1


class TestNotYielding:
    def test_without_heartbeat_seconds_or_an_interval_none(
        self, beats: Heartbeats, client: Recorder, clock: Clock
    ) -> None:
        beats.begin(task(), Quiet, None)
        run_for(beats, clock, 100)
        assert count(client) == 0

    def test_with_heartbeat_seconds_every_third_of_it(
        self, beats: Heartbeats, client: Recorder, clock: Clock
    ) -> None:
        """A task that never yields stays alive: automatic heartbeats at 20, 40, 60 s."""
        beats.begin(task(), Declared, None)
        run_for(beats, clock, 19.5)
        assert count(client) == 0
        run_for(beats, clock, 41)
        assert count(client) == 3

    def test_with_an_interval_every_interval(
        self, beats: Heartbeats, client: Recorder, clock: Clock
    ) -> None:
        beats.begin(task(), Interval, Interval.heartbeat_interval)
        run_for(beats, clock, 29.5)
        assert count(client) == 5

    def test_the_workers_interval_is_the_one_used(
        self, beats: Heartbeats, client: Recorder, clock: Clock
    ) -> None:
        """An override (the slot passes it) wins over the class's, and over a third of
        heartbeat_seconds when it is shorter."""
        beats.begin(task(), Declared, 10)
        run_for(beats, clock, 59.5)
        assert count(client) == 5

    def test_no_heartbeat_after_the_end(
        self, beats: Heartbeats, client: Recorder, clock: Clock
    ) -> None:
        job = beats.begin(task(), Declared, None)
        run_for(beats, clock, 20.5)
        beats.end(job)
        run_for(beats, clock, 60)
        assert count(client) == 1


class TestWaiting:
    """A task in the worker's buffer is heartbeated at its activity's cadence."""

    @pytest.mark.parametrize(
        ("activity", "expected"),
        [(Quiet, 5), (Declared, 2)],
        ids=["default cadence", "heartbeat_seconds 60"],
    )
    def test_every_cadence_though_it_never_yields(
        self,
        beats: Heartbeats,
        client: Recorder,
        clock: Clock,
        activity: type[Activity],
        expected: int,
    ) -> None:
        beats.begin(task(), activity, None, waiting=True)
        run_for(beats, clock, 59.5)
        assert count(client) == expected

    def test_its_slot_takes_up_the_same_due_times(
        self, beats: Heartbeats, client: Recorder, clock: Clock
    ) -> None:
        """Handed over at 25 s, after the heartbeat at 20: the slot's next is at 40, not 45."""
        waiting = beats.begin(task(), Declared, None, waiting=True)
        run_for(beats, clock, 25)
        assert count(client) == 1
        beats.hand_over(waiting)
        running = beats.begin(later(waiting.task, 25), Declared, None)  # as the slot begins it
        assert running.due == pytest.approx(waiting.received + 40, abs=0.5)
        run_for(beats, clock, 34.5)
        assert count(client) == 2  # at 20 (waiting) and 40 (running), over 59.5 s

    def test_a_heartbeat_due_as_it_leaves_the_buffer_is_sent(
        self, beats: Heartbeats, client: Recorder, clock: Clock
    ) -> None:
        """Due at 20 s, not yet sent by the ticker: the hand-over sends it, not the slot."""
        waiting = beats.begin(task(), Declared, None, waiting=True)
        clock.now += 20.5
        beats.hand_over(waiting)
        assert wait_until(lambda: client.sent)
        running = beats.begin(later(waiting.task, 20.5), Declared, None)
        assert running.due == pytest.approx(waiting.received + 40, abs=0.5)

    def test_a_heartbeat_due_just_after_it_leaves_is_sent_at_once(
        self, beats: Heartbeats, client: Recorder, clock: Clock
    ) -> None:
        """Due at 20 s, handed over at 19.8 s: the slot may begin it after 20 s and would
        wait for 40 s; the hand-over sends it."""
        waiting = beats.begin(task(), Declared, None, waiting=True)
        clock.now += 19.8
        beats.hand_over(waiting)
        assert wait_until(lambda: client.sent)

    def test_nothing_is_sent_at_a_hand_over_when_nothing_is_due(
        self, beats: Heartbeats, client: Recorder, clock: Clock
    ) -> None:
        waiting = beats.begin(task(), Declared, None, waiting=True)
        clock.now += 19
        beats.hand_over(waiting)
        assert wait_until(lambda: not waiting.in_flight)
        run_for(beats, clock, 5)  # the buffer's job is no longer heartbeated
        assert client.sent == []


class TestSpread:
    """Tasks received together heartbeat over half a cadence, each at a point of its own."""

    @pytest.fixture(autouse=True)
    def spread(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setattr(heartbeats_module, "SPREAD", SPREAD)

    def test_first_heartbeats_within_half_a_cadence_to_a_cadence_apart(self) -> None:
        jobs = [
            Job(attrs.evolve(task(), token=f"token-{n}"), Quiet, None, now=0.0) for n in range(200)
        ]
        firsts = sorted(job.due - job.received for job in jobs)
        assert firsts[0] > DEFAULT_CADENCE / 2
        assert firsts[-1] <= DEFAULT_CADENCE
        assert firsts[-1] - firsts[0] > DEFAULT_CADENCE / 4, "bunched"
        assert all(job.next_due(job.due) - job.due == pytest.approx(10.0) for job in jobs)

    def test_a_task_has_the_same_due_times_in_the_buffer_and_in_its_slot(self) -> None:
        waiting = Job(task(), Declared, None, waiting=True, now=0.0)
        running = Job(later(waiting.task, 25), Declared, None, now=25.0)
        assert waiting.phase == running.phase > 0
        assert running.due == pytest.approx(waiting.next_due(25.0), abs=0.1)

    def test_a_short_task_costs_no_heartbeat(
        self, beats: Heartbeats, client: Recorder, clock: Clock
    ) -> None:
        """Shorter than half its cadence: no heartbeat, however often it yields."""
        for n in range(50):
            job = beats.begin(attrs.evolve(task(), token=f"token-{n}"), Quiet, None)
            run_for(beats, clock, DEFAULT_CADENCE / 2 - 0.1, yielding=job)
            beats.end(job)
        assert client.sent == []


class TestGone:
    def test_a_task_found_gone_raises_at_the_next_ask(self, stuck: list[Job], clock: Clock) -> None:
        client = Recorder(gone=True)
        beats = Heartbeats(client, on_stuck=stuck.append, clock=clock)  # type: ignore[arg-type]
        try:
            job = beats.begin(task(), Quiet, None)
            clock.now += DEFAULT_CADENCE + 0.5
            beats.ask(job)
            assert wait_until(lambda: job.gone_at is not None)
            with pytest.raises(TaskGone):
                beats.ask(job)
            clock.now += DEFAULT_CADENCE
            with pytest.raises(TaskGone):
                beats.ask(job)
            beats._tick()
            assert len(client.sent) == 1, "a gone task got more heartbeats"
        finally:
            beats.close()

    def test_a_gone_task_that_runs_on_is_reported_stuck_once(
        self, monkeypatch: pytest.MonkeyPatch, stuck: list[Job]
    ) -> None:
        """After CANCEL_GRACE, the slot is told, so that a process can be replaced."""
        monkeypatch.setattr(heartbeats_module, "CANCEL_GRACE", 0.0)
        beats = Heartbeats(Recorder(gone=True), on_stuck=stuck.append)  # type: ignore[arg-type]
        try:
            job = beats.begin(task(), Quiet, 0.01)
            assert wait_until(lambda: stuck)
            assert not wait_until(lambda: len(stuck) > 1, timeout=0.6)
            assert stuck == [job]
        finally:
            beats.close()


def test_automatic_heartbeats_on_the_real_clock(client: Recorder, stuck: list[Job]) -> None:
    """The ticker thread sends them by itself, every ``interval`` seconds, until the end."""
    beats = Heartbeats(client, on_stuck=stuck.append)  # type: ignore[arg-type]
    try:
        job = beats.begin(task(), Quiet, 0.05)
        assert wait_until(lambda: len(client.sent) >= 2)
        beats.end(job)
        sent = len(client.sent)
        assert not wait_until(lambda: len(client.sent) > sent + 1, timeout=0.6), "after the end"
    finally:
        beats.close()


def test_nothing_is_sent_after_close(beats: Heartbeats, client: Recorder, clock: Clock) -> None:
    """A straggler asking for a heartbeat once the worker has stopped gets nothing sent."""
    job = beats.begin(task(), Declared, None)
    beats.close()
    clock.now += 60
    beats.ask(job)
    beats._tick()
    assert client.sent == []
