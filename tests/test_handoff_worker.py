"""A worker's hand-off: a worker with thread slots against the in-memory Step Functions.

The worker runs against :mod:`tests.fake_sfn`, where an empty poll lasts as long as each
test says: where a task list without a poll would make a task wait, it lasts longer than
the test waits for the task. :class:`~activities.worker._handoff.HandOff` alone is tested
in ``tests/test_handoff.py``; the activities are :mod:`tests.handoff_rig`'s.
"""

from __future__ import annotations

import collections
import contextlib
import threading
import time
from typing import TYPE_CHECKING, Any

import pytest

from activities import Activity, Worker
from tests.fake_sfn import ARN_PREFIX, FakeStepFunctions
from tests.handoff_rig import LONG_POLL, Counted, Gate, Quick, gate_closed, names
from tests.waiting import wait_until

if TYPE_CHECKING:
    from collections.abc import Iterator


@pytest.fixture(autouse=True)
def closed_gate() -> Iterator[None]:
    yield from gate_closed()


class CountedPolls(FakeStepFunctions):
    """The in-memory Step Functions, counting the polls open at once and on each task list."""

    def __init__(self, poll_wait: float) -> None:
        super().__init__(poll_wait=poll_wait)
        self._count_lock = threading.Lock()
        self._open = 0
        #: The most polls open at once so far.
        self.most = 0
        #: Polls made, by task list.
        self.made: collections.Counter[str] = collections.Counter()

    def get_activity_task(self, activityArn: str, workerName: str) -> dict[str, str]:  # noqa: N803 - boto3's names
        with self._count_lock:
            self._open += 1
            self.most = max(self.most, self._open)
            self.made[activityArn.removeprefix(ARN_PREFIX)] += 1
        try:
            return super().get_activity_task(activityArn, workerName)
        finally:
            with self._count_lock:
                self._open -= 1


@contextlib.contextmanager
def serving(
    fake: FakeStepFunctions, *activities: type[Activity], **options: Any
) -> Iterator[Worker]:
    """A started thread worker, stopped at once (its polls ended) when the block ends."""
    worker = Worker(activities, client=fake, **options)  # type: ignore[arg-type]
    worker.start()
    try:
        yield worker
    finally:
        fake.close()
        worker.terminate()


def one_waiting(fake: FakeStepFunctions, worker: Worker, value: int) -> tuple[str, str]:
    """The tokens of a Gate task that holds the only slot, and of a task waiting behind it."""
    running = fake.add_task("ho-Gate", "{}")
    assert wait_until(lambda: gate_runs(worker))
    waiting = fake.add_task("ho-Quick", f'{{"value": {value}}}')
    assert wait_until(lambda: worker._handoff is not None and worker._handoff.waiting() == 1)
    return running, waiting


def gate_runs(worker: Worker) -> bool:
    """Whether a slot runs the Gate task (it is no longer waiting for one)."""
    return any(slot.state.answering() for slot in worker._current_slots())


def all_polled(fake: FakeStepFunctions, task_lists: list[str]) -> bool:
    return all(fake.polling[ARN_PREFIX + name] >= 1 for name in task_lists)


class TestCoverage:
    def test_sixty_task_lists_and_two_slots_all_have_a_poll(
        self, caplog: pytest.LogCaptureFixture
    ) -> None:
        """A task on any of 60 task lists starts at once, though there are only 2 slots."""
        fake = FakeStepFunctions(poll_wait=LONG_POLL)
        lists = names("cover", 60)
        with serving(fake, Quick, threads=2, task_lists={"ho-Quick": lists}):
            assert wait_until(lambda: all_polled(fake, lists)), "some task list has no poll"
            tokens = [fake.add_task(name, f'{{"value": "{name}"}}') for name in lists[::6]]
            assert fake.wait_for(len(tokens), timeout=LONG_POLL / 3), "a task waited for a poll"
        assert {fake.successes[token] for token in tokens} == {f'"{n}"' for n in lists[::6]}
        assert "task lists but" not in caplog.text

    def test_one_slot_serves_each_task_list_in_turn(self) -> None:
        """With one slot, tasks on several task lists queue in the buffer and all run."""
        fake = FakeStepFunctions(poll_wait=LONG_POLL)
        lists = names("one", 6)
        with serving(fake, Quick, threads=1, task_lists={"ho-Quick": lists}):
            assert wait_until(lambda: all_polled(fake, lists))
            for name in lists:
                fake.add_task(name, '{"value": 1}')
            assert fake.wait_for(len(lists), timeout=LONG_POLL / 3)

    def test_pollers_cap_the_polls_open_at_once(self) -> None:
        fake = CountedPolls(poll_wait=0.2)
        lists = names("capped", 2)
        with serving(fake, Quick, threads=4, pollers=2, task_lists={"ho-Quick": lists}):
            tokens = [fake.add_task(lists[number % 2], "{}") for number in range(20)]
            assert fake.wait_for(len(tokens), timeout=LONG_POLL / 3)
        assert fake.most <= 2
        assert set(fake.successes) == set(tokens)

    @pytest.mark.parametrize("options", [{"pollers": 3}, {"buffer": 2}], ids=["pollers", "room"])
    def test_fewer_polls_than_task_lists_still_reach_every_task_list(
        self, options: dict[str, int]
    ) -> None:
        """Three polls, six task lists: a task on the last one runs once a poll comes by."""
        fake = CountedPolls(poll_wait=0.05)
        lists = names("few", 6)
        with serving(fake, Quick, threads=1, task_lists={"ho-Quick": lists}, **options):
            assert wait_until(lambda: sum(fake.made.values()) >= 60)
            late = fake.add_task(lists[-1], '{"value": 1}')
            assert fake.wait_for(1, timeout=5), f"polled: {dict(fake.made)}"
        assert fake.successes[late] == "1"


class TestBuffer:
    def test_no_more_tasks_are_received_than_the_buffer_holds(self) -> None:
        """With the only slot busy, polls stop once the buffer's room is taken."""
        fake = FakeStepFunctions(poll_wait=LONG_POLL)
        lists = names("bound", 3)
        with serving(fake, Gate, threads=1, buffer=2, task_lists={"ho-Gate": lists}) as worker:
            fake.add_task(lists[0], "{}")
            assert wait_until(lambda: gate_runs(worker))
            assert wait_until(lambda: sum(fake.polling.values()) == 2), "polls within room"
            for name in lists:
                fake.add_task(name, "{}")
            assert wait_until(lambda: len(fake.handed_out) == 3)
            assert worker._handoff is not None
            assert wait_until(lambda: worker._handoff.waiting() == 2)  # type: ignore[union-attr]
            assert sum(fake.polling.values()) == 0, "a poll opened with the buffer full"
            assert len(fake.handed_out) == 3
            Gate.opened.set()
            assert fake.wait_for(4, timeout=LONG_POLL / 3)
        assert len(fake.successes) == 4

    def test_waiting_tasks_are_heartbeated(self, short_cadence: None) -> None:
        """A task waiting for a slot gets heartbeats, so HeartbeatSeconds does not expire."""
        fake = FakeStepFunctions(poll_wait=LONG_POLL)
        with serving(fake, Gate, Quick, threads=1) as worker:
            _, waiting = one_waiting(fake, worker, 2)
            assert wait_until(lambda: fake.heartbeats[waiting] >= 2, timeout=10)
            Gate.opened.set()
            assert fake.wait_for(2)
        assert fake.successes[waiting] == "2"

    def test_a_waiting_task_that_is_gone_is_dropped(self, short_cadence: None) -> None:
        """A heartbeat that finds a waiting task gone drops it: no slot is spent on it."""
        fake = FakeStepFunctions(poll_wait=LONG_POLL)
        with serving(fake, Gate, Quick, threads=1) as worker:
            _, waiting = one_waiting(fake, worker, 3)
            fake.gone.add(waiting)
            assert wait_until(lambda: worker._handoff.waiting() == 0, timeout=10)  # type: ignore[union-attr]
            Gate.opened.set()
            assert fake.wait_for(1)
        assert waiting not in fake.successes
        assert waiting not in fake.failures


class TestStop:
    def test_a_waiting_task_runs_within_the_grace(self) -> None:
        """At a graceful stop, tasks waiting for a slot still run when one frees in time."""
        fake = FakeStepFunctions(poll_wait=0.5)
        worker = Worker([Gate, Quick], threads=1, client=fake, shutdown_grace=30)  # type: ignore[arg-type]
        worker.start()
        _, waiting = one_waiting(fake, worker, 4)
        worker.request_stop()
        Gate.opened.set()
        assert worker.join(timeout=30)
        assert worker.clean
        assert fake.successes[waiting] == "4"
        assert not fake.outstanding()

    def test_a_waiting_task_fails_with_worker_shutdown_past_the_grace(self) -> None:
        fake = FakeStepFunctions(poll_wait=0.5)
        worker = Worker([Gate, Quick], threads=1, client=fake, shutdown_grace=0.2)  # type: ignore[arg-type]
        worker.start()
        running, waiting = one_waiting(fake, worker, 5)
        worker.request_stop()
        assert worker.join(timeout=30)
        assert not worker.clean
        assert fake.failures[waiting][0] == "activities.WorkerShutdown"
        assert fake.failures[running][0] == "activities.WorkerShutdown"
        assert not fake.outstanding()

    def test_an_immediate_stop_fails_waiting_tasks(self) -> None:
        fake = FakeStepFunctions(poll_wait=0.5)
        worker = Worker([Gate, Quick], threads=1, client=fake)  # type: ignore[arg-type]
        worker.start()
        _, waiting = one_waiting(fake, worker, 6)
        fake.close()
        worker.terminate()
        assert fake.failures[waiting][0] == "activities.WorkerShutdown"


class TestWorkerLimits:
    def test_max_concurrency_holds_across_slots(self) -> None:
        """Four free slots, but at most one task of the activity is held at a time."""
        fake = FakeStepFunctions(poll_wait=LONG_POLL)
        lists = names("limited", 3)
        with serving(fake, Counted, threads=4, task_lists={"ho-Counted": lists}):
            tokens = [fake.add_task(lists[number % 3], "{}") for number in range(6)]
            assert fake.wait_for(6, timeout=LONG_POLL / 3)
        assert set(fake.successes) == set(tokens)
        assert Counted.most == 1

    def test_the_worker_overrides_max_concurrency(self) -> None:
        fake = FakeStepFunctions(poll_wait=LONG_POLL)
        with serving(fake, Counted, threads=4, max_concurrency={"ho-Counted": 2}) as worker:
            assert worker.max_concurrency == {"ho-Counted": 2}
            for _ in range(6):
                fake.add_task("ho-Counted", "{}")
            assert fake.wait_for(6, timeout=LONG_POLL / 3)
        assert 1 <= Counted.most <= 2

    @pytest.mark.usefixtures("never_busy")
    def test_an_activity_at_its_limit_leaves_its_tasks_in_step_functions(self) -> None:
        """While its one task runs, its task list is not polled: the rest stay queued."""
        fake = FakeStepFunctions(poll_wait=LONG_POLL)
        with serving(fake, Gate, threads=3, max_concurrency={"ho-Gate": 1}):
            fake.add_task("ho-Gate", "{}")
            assert wait_until(lambda: len(fake.handed_out) == 1)
            fake.add_task("ho-Gate", "{}")
            assert wait_until(lambda: fake.polling[ARN_PREFIX + "ho-Gate"] == 0)
            assert len(fake.handed_out) == 1
            Gate.opened.set()
            assert fake.wait_for(2, timeout=LONG_POLL / 3)


class TestCost:
    @pytest.mark.parametrize(("threads", "lists"), [(8, 1), (1, 6), (4, 12)])
    def test_an_idle_worker_polls_each_task_list_about_once_per_poll(
        self, threads: int, lists: int
    ) -> None:
        """No busy polling, and no more polls than task lists, whatever the slots."""
        poll = 0.25
        fake = FakeStepFunctions(poll_wait=poll)
        served = names("idle", lists)
        with serving(fake, Quick, threads=threads, task_lists={"ho-Quick": served}):
            assert wait_until(lambda: all_polled(fake, served))
            time.sleep(poll * 2)  # the polls of the start have returned
            before = fake.calls["GetActivityTask"]
            periods = 8
            time.sleep(poll * periods)
            calls = fake.calls["GetActivityTask"] - before
        # One poll per task list per period; two at most in the moments one hands over.
        assert calls <= lists * (periods + 1) * 1.5, calls
        assert calls >= lists * (periods - 2), "some task list went unpolled"


class TestDrain:
    def test_a_graceful_stop_waits_for_the_workers_own_polls(self) -> None:
        """A poll open at the stop is not abandoned, even past the grace: its task is failed."""
        fake = FakeStepFunctions(poll_wait=3.0)
        worker = Worker([Quick], threads=1, client=fake, shutdown_grace=0.1)  # type: ignore[arg-type]
        worker.start()
        assert wait_until(lambda: fake.polling[ARN_PREFIX + "ho-Quick"] == 1)
        worker.request_stop()
        assert not worker.join(timeout=1.0), "the worker stopped with a poll still open"
        late = fake.add_task("ho-Quick", '{"value": 7}')
        assert worker.join(timeout=30)
        assert fake.polling[ARN_PREFIX + "ho-Quick"] == 0
        assert late in fake.failures or late in fake.successes
        assert not fake.outstanding(), "a task was received and forgotten"
