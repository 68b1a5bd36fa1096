"""The hand-off: every task a poll brings goes to a free slot or waits, bounded, for one.

:class:`HandOff` itself, with slots of the test's (:class:`Taker`, which hold a task until
the test finishes it) and a client whose polls the test answers
(:class:`~tests.fake_polls.ScriptedClient`). A worker's hand-off, with thread slots against
the in-memory Step Functions, is tested in ``tests/test_handoff_worker.py``.
"""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING

import pytest

from activities import RetryPolicy
from activities.errors import ServiceError, WorkerShutdown
from activities.worker._handoff import HandOff
from activities.worker._heartbeats import DEFAULT_CADENCE
from tests.fake_polls import ScriptedClient, arn, task
from tests.handoff_rig import (
    AsyncQuick,
    Declared,
    Paced,
    Quick,
    Rig,
    Taker,
    async_position,
    gate_closed,
    names,
    running,
)
from tests.waiting import wait_until

if TYPE_CHECKING:
    from collections.abc import Iterator

    from activities.task import Task


@pytest.fixture(autouse=True)
def closed_gate() -> Iterator[None]:
    yield from gate_closed()


class TestTake:
    def test_a_task_goes_to_a_free_slot_at_once(self) -> None:
        slot = Taker(0)
        rig = Rig([slot], {"a": Quick})
        rig.handoff.take(task("a", "t1"))
        assert slot.tokens == ["t1"]
        assert rig.handoff.waiting() == 0
        assert rig.beats.begun == [], "nothing waits, nothing is heartbeated by the hand-off"

    def test_with_no_free_slot_a_task_waits_heartbeated(self) -> None:
        """It waits in the buffer, heartbeated, and goes to the first slot that frees."""
        slot = Taker(0)
        rig = Rig([slot], {"a": Quick, "b": Quick})
        rig.handoff.take(task("a", "t1"))
        rig.handoff.take(task("b", "t2"))
        assert slot.tokens == ["t1"]
        assert rig.handoff.waiting() == 1
        assert rig.control.tasks_waiting() == 1
        assert rig.handoff.buffered_by_task_list() == [0, 1]
        [job] = rig.beats.begun
        assert (job.task.token, job.automatic, job.cadence) == ("t2", True, DEFAULT_CADENCE)
        rig.handoff._dispatch()
        assert rig.handoff.waiting() == 1, "the slot is still busy"
        slot.finish()
        rig.handoff._dispatch()
        assert slot.tokens == ["t1", "t2"]
        assert rig.handoff.waiting() == 0
        assert rig.control.tasks_waiting() == 0
        assert rig.handoff.buffered_by_task_list() == [0, 0]
        assert rig.beats.handed == [job], "no heartbeats from the buffer once it runs"
        assert rig.beats.ended == []

    def test_a_waiting_task_is_heartbeated_at_its_activitys_cadence(self) -> None:
        """A third of its heartbeat_seconds; the worker's interval when shorter."""
        slot = Taker(0)
        rig = Rig([slot], {"a": Quick, "b": Declared, "c": Quick}, intervals={"ho-Quick": 4.0})
        for name, token in (("a", "t1"), ("b", "t2"), ("c", "t3")):
            rig.handoff.take(task(name, token))
        cadences = {job.task.token: (job.automatic, job.cadence) for job in rig.beats.begun}
        assert cadences == {"t2": (True, 20.0), "t3": (True, 4.0)}

    def test_without_the_workers_intervals_the_classes_are_used(self) -> None:
        rig = Rig([Taker(0)], {"a": Quick, "b": Paced})
        rig.handoff.take(task("a", "t1"))
        rig.handoff.take(task("b", "t2"))
        [job] = rig.beats.begun
        assert (job.task.token, job.cadence) == ("t2", 7.0)

    def test_first_come_first_served(self) -> None:
        """A task polled while others wait goes behind them, though a slot is free."""
        slot = Taker(0)
        rig = Rig([slot], {"a": Quick})
        for token in ("t1", "t2"):
            rig.handoff.take(task("a", token))
        slot.finish()
        rig.handoff.take(task("a", "t3"))
        assert slot.tokens == ["t1"]
        rig.handoff._dispatch()
        assert slot.tokens == ["t1", "t2"]
        assert [job.task.token for job in rig.handoff._waiting] == ["t3"]

    def test_an_async_task_goes_to_an_async_position_first(self) -> None:
        slot, position = Taker(0), async_position(1)
        rig = Rig([slot, position], {"a": AsyncQuick}, sync_positions=[0])
        rig.handoff.take(task("a", "t1"))
        assert (slot.tokens, position.tokens) == ([], ["t1"])
        rig.handoff.take(task("a", "t2"))
        assert (slot.tokens, position.tokens) == (["t2"], ["t1"]), "a slot when none is free"

    def test_a_sync_task_never_goes_to_an_async_position(self) -> None:
        position, slot = async_position(0), Taker(1)
        rig = Rig([position, slot], {"s": Quick}, sync_positions=[1])
        rig.handoff.take(task("s", "t1"))
        rig.handoff.take(task("s", "t2"))
        rig.handoff._dispatch()
        assert (slot.tokens, position.tokens) == (["t1"], [])
        assert rig.handoff.waiting() == 1

    def test_a_sync_task_waiting_for_a_slot_lets_an_async_one_pass(self) -> None:
        """Oldest first, but not behind a task no free slot can take."""
        slot, position = Taker(0), async_position(1)
        rig = Rig([slot, position], {"s": Quick, "a": AsyncQuick}, sync_positions=[0])
        rig.handoff.take(task("s", "t-busy"))  # the slot runs a sync task
        rig.handoff.put(task("s", "t-sync"))
        rig.handoff.put(task("a", "t-async"))
        rig.handoff._dispatch()
        assert position.tokens == ["t-async"]
        assert [job.task.token for job in rig.handoff._waiting] == ["t-sync"]

    def test_a_slot_not_ready_or_closed_is_handed_nothing(self) -> None:
        starting, closed = Taker(0, ready=False), Taker(1)
        rig = Rig([starting, closed], {"a": Quick})
        rig.handoff.close_slots([closed])
        rig.handoff.take(task("a", "t1"))
        rig.handoff._dispatch()
        assert (starting.tokens, closed.tokens) == ([], [])
        assert rig.handoff.waiting() == 1
        starting.ready = True
        rig.handoff._dispatch()
        assert starting.tokens == ["t1"]


class TestRoom:
    def test_the_room_is_the_slots_and_the_buffer_less_the_tasks_held(self) -> None:
        """Two slots and a buffer of three: room for five tasks, each held takes one."""
        rig = Rig([Taker(0), Taker(1)], {"a": Quick}, capacity=3)
        rooms = [rig.handoff.room(False)]
        for number in range(5):
            rig.handoff.take(task("a", f"t{number}"))
            rooms.append(rig.handoff.room(False))
        assert rooms == [5, 4, 3, 2, 1, 0]
        rig.slots[0].finish()
        assert rig.handoff.room(False) == 1

    def test_the_room_of_sync_tasks_counts_the_slots_that_take_them(self) -> None:
        """With async positions, sync tasks have the sync slots and the buffer only."""
        slot, position = Taker(0), async_position(1)
        rig = Rig([slot, position], {"s": Quick, "a": AsyncQuick}, capacity=2, sync_positions=[0])
        assert (rig.handoff.room(False), rig.handoff.room(True)) == (4, 3)
        rig.handoff.take(task("a", "t-async"))  # to the position
        assert (rig.handoff.room(False), rig.handoff.room(True)) == (3, 3)
        rig.handoff.take(task("s", "t-sync"))  # to the slot
        rig.handoff.take(task("a", "t-waits"))
        assert (rig.handoff.room(False), rig.handoff.room(True)) == (1, 2)


class TestLimits:
    def test_max_concurrency_holds_across_slots(self) -> None:
        """Two task lists of one activity with max_concurrency 1: one task at a time."""
        first, second = Taker(0), Taker(1)
        rig = Rig([first, second], {"l1": Quick, "l2": Quick}, groups=[0, 0], limits=[1])
        rig.handoff.take(task("l1", "t1"))
        rig.handoff.take(task("l2", "t2"))
        rig.handoff._dispatch()
        assert (first.tokens, second.tokens) == (["t1"], [])
        assert rig.handoff.waiting() == 1
        first.finish()
        rig.handoff._dispatch()
        assert first.tokens + second.tokens == ["t1", "t2"]

    def test_two_polls_bringing_tasks_at_once_never_pass_the_limit(self) -> None:
        """The limit is read under the lock that hands tasks: two pollers cannot both pass it."""
        entered, release = threading.Event(), threading.Event()

        class SlowTaker(Taker):
            def offer(self, task: Task, index: int) -> bool:
                entered.set()
                release.wait(5)  # the second poller takes its task meanwhile
                return super().offer(task, index)

        first, second = SlowTaker(0), Taker(1)
        rig = Rig([first, second], {"l1": Quick, "l2": Quick}, groups=[0, 0], limits=[1])
        one = threading.Thread(target=rig.handoff.take, args=(task("l1", "t1"),))
        other = threading.Thread(target=rig.handoff.take, args=(task("l2", "t2"),))
        one.start()
        assert entered.wait(5)
        other.start()
        time.sleep(0.2)  # the second poller waits for the hand-off, or (wrongly) passed it
        release.set()
        one.join(5)
        other.join(5)
        assert (first.tokens, second.tokens) == (["t1"], [])
        assert rig.handoff.waiting() == 1

    def test_a_task_at_its_limit_lets_another_activitys_pass(self) -> None:
        slots = [Taker(0), Taker(1), Taker(2)]
        rig = Rig(slots, {"l": Quick, "u": Quick}, groups=[0, 1], limits=[1, None])
        for token, name in [("t1", "l"), ("t2", "l"), ("t3", "u")]:
            rig.handoff.take(task(name, token))
        rig.handoff._dispatch()
        assert sorted(token for slot in slots for token in slot.tokens) == ["t1", "t3"]
        assert [job.task.token for job in rig.handoff._waiting] == ["t2"]

    def test_an_activity_at_its_limit_is_not_polled(self) -> None:
        """Its tasks held, running or waiting, count: at its limit its task lists get no poll."""
        slot = Taker(0)
        rig = Rig([slot, Taker(1)], {"l": Quick, "u": Quick}, groups=[0, 1], limits=[1, None])
        assert rig.handoff._may_poll(0)
        rig.handoff.take(task("l", "t1"))
        assert not rig.handoff._may_poll(0), "one runs"
        assert rig.handoff._may_poll(1), "no limit"
        slot.finish()
        assert rig.handoff._may_poll(0)
        rig.handoff.take(task("l", "t2"))
        rig.handoff.take(task("l", "t3"))
        slot.finish()
        assert not rig.handoff._may_poll(0), "one waits"
        rig.handoff._dispatch()
        assert slot.tokens == ["t1", "t2", "t3"]
        assert not rig.handoff._may_poll(0), "it runs now"
        slot.finish()
        assert rig.handoff._may_poll(0)

    @pytest.mark.usefixtures("never_busy")
    def test_an_activity_at_its_limit_leaves_its_tasks_in_step_functions(self) -> None:
        """While its one task runs, its task list has no poll open; once it ends, it has."""
        slot = Taker(0)
        client = ScriptedClient()
        rig = Rig([slot, Taker(1)], {"l": Quick}, client=client, limits=[1])
        with running(rig):
            assert client.wait_open(lambda open_: open_[arn("l")] == 1)
            client.answer(arn("l"), task("l", "t1"))
            assert wait_until(lambda: slot.tokens == ["t1"])
            assert client.wait_open(lambda open_: open_[arn("l")] == 0)
            rig.turns()
            assert client.open_now() == 0
            assert client.polls[arn("l")] == 1
            slot.finish()
            assert client.wait_open(lambda open_: open_[arn("l")] == 1)


class TestWaiting:
    def test_a_waiting_task_found_gone_is_dropped(self, caplog: pytest.LogCaptureFixture) -> None:
        """A heartbeat found it gone: no slot is spent on it, and it is not failed."""
        slot = Taker(0)
        rig = Rig([slot], {"a": Quick})
        rig.handoff.take(task("a", "t1"))
        rig.handoff.take(task("a", "t-gone"))
        [job] = rig.beats.begun
        job.gone_at = time.monotonic()
        rig.handoff._dispatch()
        assert rig.handoff.waiting() == 0
        assert rig.beats.ended == [job]
        slot.finish()
        rig.handoff._dispatch()
        assert slot.tokens == ["t1"]
        assert rig.failed == []
        assert "was gone before a slot was free" in caplog.text

    def test_fail_waiting_fails_every_waiting_task(self) -> None:
        rig = Rig([Taker(0)], {"a": Quick, "b": Quick}, capacity=3)
        for token, name in [("t1", "a"), ("t2", "a"), ("t3", "b")]:
            rig.handoff.take(task(name, token))
        error = WorkerShutdown("the grace is over")
        assert rig.handoff.fail_waiting(error) == 2
        assert rig.failed == [("t2", error), ("t3", error)]
        assert rig.handoff.waiting() == 0
        assert rig.control.tasks_waiting() == 0
        assert rig.handoff.buffered_by_task_list() == [0, 0]
        assert rig.beats.ended == rig.beats.begun
        assert rig.slots[0].tokens == ["t1"], "a running task is not the hand-off's to fail"

    def test_past_the_grace_nothing_more_is_handed_and_new_tasks_fail(self) -> None:
        """The worker fails what waits; a task polled now is failed with WorkerShutdown."""
        slot = Taker(0)
        rig = Rig([slot], {"a": Quick})
        rig.handoff.take(task("a", "t1"))
        rig.handoff.take(task("a", "t2"))
        slot.finish()
        rig.control.past_deadline.set()
        rig.handoff._dispatch()
        assert slot.tokens == ["t1"]
        rig.handoff.put(task("a", "t3"))
        [(token, error)] = rig.failed
        assert token == "t3"
        assert isinstance(error, WorkerShutdown)

    def test_a_task_put_after_close_is_failed(self) -> None:
        rig = Rig([Taker(0)], {"a": Quick})
        rig.handoff.close()
        rig.handoff.put(task("a", "t1"))
        assert [(token, type(error)) for token, error in rig.failed] == [("t1", WorkerShutdown)]
        assert rig.handoff.waiting() == 0
        assert rig.beats.begun == []


class TestSlots:
    def test_close_slots_closes_only_the_open_ones(self) -> None:
        open_, closed = Taker(0), Taker(1)
        closed.state.close()  # its unit ended, say
        rig = Rig([open_, closed], {"a": Quick})
        rig.handoff.close_slots([open_, closed])
        assert (open_.closes, closed.closes) == (1, 0)
        rig.handoff.close_slots([open_])
        assert open_.closes == 1, "not told twice"

    def test_running_cells_say_what_each_position_runs(self) -> None:
        slots = [Taker(2), Taker(0), Taker(1)]
        rig = Rig(slots, {"a": Quick, "b": Quick})
        assert rig.handoff.running_cells() == [-1, -1, -1]
        rig.handoff.take(task("b", "t1"))
        rig.handoff.take(task("a", "t2"))
        assert rig.handoff.running_cells() == [0, -1, 1], "by position"
        slots[0].finish()
        assert rig.handoff.running_cells() == [0, -1, -1]

    def test_buffered_by_task_list(self) -> None:
        rig = Rig([Taker(0)], {"a": Quick, "b": Quick, "c": Quick}, capacity=4)
        for token, name in [("t1", "a"), ("t2", "c"), ("t3", "c"), ("t4", "a")]:
            rig.handoff.take(task(name, token))
        assert rig.handoff.buffered_by_task_list() == [1, 0, 2]

    def test_idle_when_nothing_waits_and_no_poll_is_open(self) -> None:
        rig = Rig([Taker(0)], {"a": Quick})
        assert rig.handoff.idle()
        rig.handoff.take(task("a", "t1"))
        assert rig.handoff.idle(), "a running task is the slots'"
        rig.handoff.take(task("a", "t2"))
        assert not rig.handoff.idle()
        rig.handoff.fail_waiting(WorkerShutdown("stop"))
        rig.handoff.lists.open[0] += 1  # a poll opens
        assert rig.handoff.polls_open() == 1
        assert not rig.handoff.idle()


class TestPolls:
    def test_sixty_task_lists_and_two_slots_each_keep_a_poll(self) -> None:
        """The worker's default buffer (one per task list) leaves room for a poll on each."""
        client = ScriptedClient()
        served = names("cover", 60)
        rig = Rig([Taker(0), Taker(1)], dict.fromkeys(served, Quick), capacity=60, client=client)
        with running(rig):
            assert client.wait_open(lambda open_: all(open_[arn(name)] == 1 for name in served))
            rig.turns()
            assert client.most == 60

    def test_polls_open_and_tasks_held_never_exceed_the_slots_and_the_buffer(self) -> None:
        """Two slots and a buffer of three, sixty task lists: five polls, fewer as tasks come."""
        limit = 5
        served = names("room", 60)
        slots = [Taker(0), Taker(1)]
        client = ScriptedClient(limit=limit)
        rig = Rig(slots, dict.fromkeys(served, Quick), capacity=3, client=client)
        client.held = rig.held
        with running(rig):
            assert client.wait_open(lambda open_: sum(open_.values()) == limit)
            for number in range(limit):
                client.answer(client.open_on()[0], task(served[0], f"t{number}"))
                assert wait_until(lambda number=number: rig.held() == number + 1)
                assert client.wait_open(
                    lambda open_, number=number: sum(open_.values()) == limit - number - 1
                )
            assert [len(slot.taken) for slot in slots] == [1, 1]
            assert rig.handoff.waiting() == 3
            rig.turns()
            assert client.open_now() == 0, "no poll opens with the buffer full"
            slots[0].finish()  # a waiting task goes to it: room for one poll
            assert client.wait_open(lambda open_: sum(open_.values()) == 1)
            rig.turns()
        assert client.over == []
        assert client.most == limit

    @pytest.mark.usefixtures("long_busy")
    def test_a_busy_task_list_gets_more_polls_than_an_idle_one(self) -> None:
        client = ScriptedClient()
        rig = Rig(
            [Taker(n) for n in range(4)], {"busy": Quick, "idle": Quick}, capacity=4, client=client
        )
        with running(rig):
            assert client.wait_open(lambda open_: open_[arn("busy")] == open_[arn("idle")] == 1)
            client.answer(arn("busy"), task("busy", "t1"))
            # Room for eight: one task held, one poll on the idle task list, six on the busy one.
            assert client.wait_open(lambda open_: open_[arn("busy")] == 6)
            rig.turns()
            assert (client.open[arn("busy")], client.open[arn("idle")]) == (6, 1)

    def test_pollers_cap_the_polls_open_at_once(self) -> None:
        client = ScriptedClient()
        served = names("cap", 6)
        rig = Rig(
            [Taker(0), Taker(1)],
            dict.fromkeys(served, Quick),
            capacity=6,
            client=client,
            most_polls=2,
        )
        with running(rig):
            assert client.wait_open(lambda open_: sum(open_.values()) == 2)
            client.answer(client.open_on()[0], None)
            assert wait_until(lambda: sum(client.polls.values()) == 3)
            rig.turns()
            assert client.open_now() == 2
        assert client.most == 2

    def test_no_poll_opens_before_a_slot_is_ready(self) -> None:
        """A task received is already ageing: none is polled for before a slot can run it."""
        slot = Taker(0, ready=False)
        client = ScriptedClient()
        rig = Rig([slot], {"a": Quick}, client=client)
        with running(rig):
            rig.turns()
            assert client.open_now() == 0
            slot.ready = True
            assert client.wait_open(lambda open_: open_[arn("a")] == 1)

    def test_no_poll_opens_once_stopping(self) -> None:
        client = ScriptedClient()
        rig = Rig([Taker(0)], {"a": Quick}, client=client)
        with running(rig):
            assert client.wait_open(lambda open_: open_[arn("a")] == 1)
            rig.control.stopping.set()
            client.answer(arn("a"), None)
            assert client.wait_open(lambda open_: open_[arn("a")] == 0)
            rig.turns()
            assert client.polls[arn("a")] == 1
            assert rig.handoff.idle()

    def test_a_poll_error_pauses_its_task_list_only(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setattr("random.uniform", lambda low, high: high)  # the longest pause
        client = ScriptedClient(RetryPolicy(base=30.0, cap=60.0))
        rig = Rig([Taker(0)], {"a": Quick, "b": Quick}, client=client)
        with running(rig):
            assert client.wait_open(lambda open_: open_[arn("a")] == open_[arn("b")] == 1)
            client.answer(arn("a"), ServiceError("denied", code="AccessDeniedException"))
            assert client.wait_open(lambda open_: open_[arn("a")] == 0)
            client.answer(arn("b"), None)
            assert wait_until(lambda: client.polls[arn("b")] == 2)
            rig.turns()
            assert (client.open[arn("a")], client.open[arn("b")]) == (0, 1)
            assert rig.handoff.lists.paused(0, time.monotonic())

    def test_a_bug_in_a_poller_thread_is_logged_and_polling_goes_on(
        self, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        bugs: list[Exception] = []
        may_poll = HandOff._may_poll

        def broken(self: HandOff, index: int) -> bool:
            if bugs and threading.current_thread().name == "sfn-activities-poll":
                raise bugs.pop()
            return may_poll(self, index)

        monkeypatch.setattr(HandOff, "_may_poll", broken)
        client = ScriptedClient()
        rig = Rig([Taker(0)], {"a": Quick}, client=client)
        with running(rig):
            assert client.wait_open(lambda open_: open_[arn("a")] == 1)
            bugs.append(RuntimeError("a bug in a poller"))
            client.answer(arn("a"), None)
            assert wait_until(lambda: client.polls[arn("a")] == 2), "polled again"
            assert client.wait_open(lambda open_: open_[arn("a")] == 1)
        assert not bugs, "the poller met the bug"
        assert "a poller of the worker failed" in caplog.text
        assert "a bug in a poller" in caplog.text, "logged with its traceback"


# -- a worker, with thread slots --------------------------------------------------------------
