"""The hand-off: every task list polled whatever the slots, a bounded buffer, limits.

Against the in-memory Step Functions of :mod:`tests.fake_sfn`, with thread slots. An
empty poll there lasts as long as each test says: where a task list without a poll would
make a task wait, it lasts longer than the test waits for the task.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import threading
import time
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

import pytest

from activities import Activity, Worker
from activities._control import Control
from activities._handoff import PATIENCE, HandOff
from activities._heartbeats import Heartbeats
from activities._slotstate import SlotState
from activities.task import Task
from tests.fake_sfn import ARN_PREFIX, FakeStepFunctions
from tests.waiting import wait_until

if TYPE_CHECKING:
    from collections.abc import Iterator
    from multiprocessing.context import BaseContext

    from activities._slot import Slot

#: Seconds an empty poll lasts where a task list without a poll would show.
LONG_POLL = 30.0


class Gate(Activity):
    """Holds its slot until the test opens the gate."""

    name = "ho-Gate"
    opened = threading.Event()

    def run(self) -> str:
        if not Gate.opened.wait(60):
            msg = "the test never opened the gate"
            raise RuntimeError(msg)
        return "through"


class Quick(Activity):
    name = "ho-Quick"

    def run(self, value: Any = None) -> Any:
        return value


class Counted(Activity):
    """Counts how many of its tasks run at once."""

    name = "ho-Counted"
    max_concurrency = 1
    lock = threading.Lock()
    running = 0
    most = 0

    def run(self) -> None:
        with Counted.lock:
            Counted.running += 1
            Counted.most = max(Counted.most, Counted.running)
        time.sleep(0.1)
        with Counted.lock:
            Counted.running -= 1


@pytest.fixture(autouse=True)
def closed_gate() -> Iterator[None]:
    Gate.opened.clear()
    Counted.running = Counted.most = 0
    yield
    Gate.opened.set()  # no thread stays stuck behind it


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


def names(prefix: str, count: int) -> list[str]:
    return [f"{prefix}-{number:02d}" for number in range(count)]


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
        """A task on any of 60 task lists starts though only 2 slots poll for themselves."""
        fake = FakeStepFunctions(poll_wait=LONG_POLL)
        lists = names("cover", 60)
        with serving(fake, Quick, threads=2, task_lists={"ho-Quick": lists}):
            assert wait_until(lambda: all_polled(fake, lists)), "some task list has no poll"
            tokens = [fake.add_task(name, f'{{"value": "{name}"}}') for name in lists[::6]]
            assert fake.wait_for(len(tokens), timeout=LONG_POLL / 3), "a task waited for a poll"
        assert {fake.successes[token] for token in tokens} == {f'"{n}"' for n in lists[::6]}
        assert "task lists but" not in caplog.text

    def test_one_process_worth_of_slots_serves_each_task_list_in_turn(self) -> None:
        """With one slot, tasks on several task lists queue in the buffer and all run."""
        fake = FakeStepFunctions(poll_wait=LONG_POLL)
        lists = names("one", 6)
        with serving(fake, Quick, threads=1, task_lists={"ho-Quick": lists}):
            assert wait_until(lambda: all_polled(fake, lists))
            for name in lists:
                fake.add_task(name, '{"value": 1}')
            assert fake.wait_for(len(lists), timeout=LONG_POLL / 3)

    def test_a_bug_in_a_covering_poll_is_logged_and_pauses_its_task_list(
        self, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Not a poll's error (those pause by the backoff): the thread still never dies mute."""
        fake = FakeStepFunctions(poll_wait=LONG_POLL)
        lists = names("bug", 12)
        put = HandOff.put

        def broken(self: HandOff, task: Task) -> None:
            if threading.current_thread().name.startswith("sfn-activities-cover-"):
                msg = "a bug in put"
                raise RuntimeError(msg)
            put(self, task)

        monkeypatch.setattr(HandOff, "put", broken)
        with serving(fake, Quick, threads=1, task_lists={"ho-Quick": lists}) as worker:
            assert wait_until(lambda: all_polled(fake, lists))
            for name in lists:
                fake.add_task(name, "{}")
            assert wait_until(lambda: "covering task list" in caplog.text)
            control = worker._control
            assert control is not None
            paused = [
                index
                for index in range(len(lists))
                if control.paused_until(index) > time.monotonic() + 1
            ]
            assert paused, "the task list whose covering poll failed is paused"
        assert "a bug in put" in caplog.text, "logged with its traceback"


class TestBuffer:
    def test_no_more_tasks_are_received_than_the_buffer_holds(self) -> None:
        """With the only slot busy, polls stop once the buffer's room is taken."""
        fake = FakeStepFunctions(poll_wait=LONG_POLL)
        lists = names("bound", 3)
        with serving(fake, Gate, threads=1, buffer=2, task_lists={"ho-Gate": lists}) as worker:
            fake.add_task(lists[0], "{}")
            assert wait_until(lambda: gate_runs(worker))
            assert wait_until(lambda: sum(fake.polling.values()) == 2), "coverage within room"
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

    def test_waiting_tasks_are_heartbeated(self) -> None:
        """A task waiting for a slot gets heartbeats, so HeartbeatSeconds does not expire."""
        fake = FakeStepFunctions(poll_wait=LONG_POLL)
        with serving(fake, Gate, Quick, threads=1) as worker:
            _, waiting = one_waiting(fake, worker, 2)
            assert wait_until(lambda: fake.heartbeats[waiting] >= 2, timeout=10)
            Gate.opened.set()
            assert fake.wait_for(2)
        assert fake.successes[waiting] == "2"

    def test_a_waiting_task_that_is_gone_is_dropped(self) -> None:
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


class TestLimits:
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


class TestPick:
    """Which free slot a waiting task goes to: async positions take async tasks only."""

    @staticmethod
    def handoff(slots: int) -> HandOff:
        control = Control(
            multiprocessing.get_context("spawn"), ["arn:a"], slots=slots, pollers=None
        )
        return HandOff(
            None,  # type: ignore[arg-type]
            control,
            by_arn={"arn:a": Quick},
            capacity=1,
            heartbeats=None,  # type: ignore[arg-type]
            slots=list,
            fail=lambda *_: None,
        )

    @staticmethod
    def slot(position: int, *, takes_sync: bool) -> Slot:
        return SimpleNamespace(position=position, takes_sync=takes_sync)  # type: ignore[return-value]

    def test_an_async_task_goes_to_an_async_position_first(self) -> None:
        sync, position = self.slot(0, takes_sync=True), self.slot(1, takes_sync=False)
        pick = self.handoff(2)._pick
        assert pick([sync, position], 0.0, asynchronous=True) is position
        assert pick([sync], 0.0, asynchronous=True) is sync

    def test_an_async_task_waits_a_moment_for_a_polling_position(self) -> None:
        """A position whose poll is open may be free for it soon: the slot stays for sync work."""
        sync, position = self.slot(0, takes_sync=True), self.slot(1, takes_sync=False)
        handoff = self.handoff(2)
        handoff._control.claim_poll(1, 0)
        handoff._control.mark_busy(0)
        assert handoff._pick([sync, position], 0.0, asynchronous=True) is None
        assert handoff._pick([sync, position], PATIENCE, asynchronous=True) is position

    def test_a_sync_task_never_goes_to_an_async_position(self) -> None:
        sync, position = self.slot(0, takes_sync=True), self.slot(1, takes_sync=False)
        pick = self.handoff(2)._pick
        assert pick([position, sync], 0.0, asynchronous=False) is sync
        assert pick([position], 0.0, asynchronous=False) is None

    def test_a_sync_task_waiting_for_a_slot_lets_an_async_one_pass(self) -> None:
        """Oldest first, but not behind a task no free slot can take."""
        context = multiprocessing.get_context("spawn")
        control = Control(context, ["arn:sync", "arn:async"], slots=2, pollers=None)
        slot, position = Taker(context, control, 0, True), Taker(context, control, 1, False)
        assert slot.state.try_hold("arn:sync", "busy", 0)  # the slot runs a sync task
        heartbeats = Heartbeats(None, on_stuck=lambda _: None)  # type: ignore[arg-type]
        handoff = HandOff(
            None,  # type: ignore[arg-type]
            control,
            by_arn={"arn:sync": Quick, "arn:async": AsyncQuick},
            capacity=2,
            heartbeats=heartbeats,
            slots=lambda: [slot, position],
            fail=lambda *_: None,
        )
        try:
            handoff.put(Task(token="t-sync", activity_arn="arn:sync", worker_name="w", input=""))
            handoff.put(Task(token="t-async", activity_arn="arn:async", worker_name="w", input=""))
            handoff._dispatch()
        finally:
            heartbeats.close()
        assert [task.token for task in position.taken] == ["t-async"]
        assert handoff.waiting() == 1


class AsyncQuick(Activity):
    name = "ho-AsyncQuick"

    async def run(self) -> None: ...


class Taker:
    """A slot that keeps what it is handed."""

    def __init__(
        self, context: BaseContext, control: Control, position: int, takes_sync: bool
    ) -> None:
        self.name, self.position, self.takes_sync, self.ready = (
            f"s{position}",
            position,
            takes_sync,
            True,
        )
        self.state = SlotState(context, control, position)
        self.taken: list[Task] = []

    def offer(self, task: Task, index: int) -> bool:
        if not self.state.try_hold(task.activity_arn, task.token, index):
            return False
        self.taken.append(task)
        return True
