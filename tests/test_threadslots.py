"""Thread slots and async units: the units of the worker's own process (``threads`` alone).

A unit is made, handed a task and closed here by hand, as the worker would, on the
in-memory Step Functions.
"""

from __future__ import annotations

import gc
import threading
import weakref
from typing import TYPE_CHECKING, ClassVar

import pytest

from activities import Activity
from activities.client import ActivityClient
from activities.worker._control import Control
from activities.worker._loop import SlotSettings, outcome_sender
from activities.worker._pool import thread_context
from activities.worker._serving import GraceWatch
from activities.worker._threadslots import AsyncUnit, ThreadSlot, thread_heartbeats
from tests.fake_sfn import ARN_PREFIX
from tests.waiting import wait_until

if TYPE_CHECKING:
    from collections.abc import Iterator

    from activities.worker._slot import Unit
    from tests.fake_sfn import FakeStepFunctions


class Kept(Activity):
    """Returns its input; each instance that ran a task is in ``made`` while it lives."""

    name = "it-Kept"
    made: ClassVar[weakref.WeakSet[Activity]] = weakref.WeakSet()

    def run(self, value: int) -> int:
        Kept.made.add(self)
        return value


class AsyncKept(Activity):
    """As :class:`Kept`, with ``async def run()``."""

    name = "async-Kept"
    made: ClassVar[weakref.WeakSet[Activity]] = weakref.WeakSet()

    async def run(self, value: int) -> int:
        AsyncKept.made.add(self)
        return value


class Owner:
    """The worker's side of the units: says when they are ready and when they ended."""

    def __init__(self) -> None:
        self.ready = threading.Event()
        self.exited = threading.Event()

    def on_ready(self, unit: Unit) -> None:
        self.ready.set()

    def on_exit(self, unit: Unit, reason: str, *, was_ready: bool) -> None:
        self.exited.set()

    def on_recycle(self, unit: Unit) -> None:
        pass

    def on_free(self) -> None:
        pass


class Units:
    """What the units of one worker's process share, as ``_pool.thread_units`` makes it."""

    def __init__(self, fake: FakeStepFunctions) -> None:
        self.fake = fake
        activities: list[type[Activity]] = [Kept, AsyncKept]
        self.context = thread_context()
        self.control = Control(
            self.context, [ARN_PREFIX + each.name for each in activities], slots=2
        )
        self.settings = SlotSettings(
            by_arn={ARN_PREFIX + each.name: each for each in activities},
            heartbeat_intervals={each.name: each.heartbeat_interval for each in activities},
            worker_name="w",
        )
        self.client = ActivityClient(fake, worker_name="w")  # type: ignore[arg-type]
        self.heartbeats = thread_heartbeats(self.client, 2)
        self.sender = outcome_sender(1)
        self.grace = GraceWatch(self.control)
        self.owner = Owner()

    def thread_slot(self) -> ThreadSlot:
        return ThreadSlot(
            self.settings,
            self.control,
            self.owner,
            self.context,
            client=self.client,
            heartbeats=self.heartbeats,
            grace=self.grace,
            sender=self.sender,
            position=0,
        )

    def async_unit(self) -> AsyncUnit:
        return AsyncUnit(
            self.settings,
            self.control,
            self.owner,
            self.context,
            client=self.client,
            heartbeats=self.heartbeats,
            grace=self.grace,
            positions=[1],
        )

    def run_one(self, unit: Unit, activity: type[Activity]) -> None:
        """Start ``unit``, hand its slot a task of ``activity``, wait for it, close the unit."""
        unit.start()
        assert self.owner.ready.wait(10)
        self.fake.add_task(activity.name, '{"value": 1}')
        task = self.client.poll(ARN_PREFIX + activity.name)
        assert task is not None
        [slot] = unit.slots
        assert slot.offer(task, self.control.arns.index(task.activity_arn))
        assert self.fake.wait_for(1)
        assert self.fake.successes == {task.token: "1"}  # an instance ran it
        slot.close()
        assert self.owner.exited.wait(10)

    def close(self) -> None:
        self.control.stopping.set()
        self.control.past_deadline.set()  # the grace watch's thread ends
        self.heartbeats.close()
        self.sender.shutdown()


@pytest.fixture
def units(fake: FakeStepFunctions) -> Iterator[Units]:
    made = Units(fake)
    yield made
    made.close()


def freed(made: weakref.WeakSet[Activity]) -> bool:
    gc.collect()
    return not made


class TestEnded:
    """A unit that ended is let go of: a long-lived worker replaces those that fail."""

    def test_an_ended_thread_slot_keeps_no_activity_alive(self, units: Units) -> None:
        """The grace watch forgets the slot's loop, which kept an instance per activity."""
        units.run_one(units.thread_slot(), Kept)
        assert wait_until(lambda: freed(Kept.made), timeout=10)

    def test_an_ended_async_unit_keeps_no_activity_alive(self, units: Units) -> None:
        """The grace watch forgets the unit's positions, which kept their instances."""
        units.run_one(units.async_unit(), AsyncKept)
        assert wait_until(lambda: freed(AsyncKept.made), timeout=10)
