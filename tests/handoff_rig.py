"""The rig of the hand-off's tests: their activities, slots the test holds, its polls.

:class:`Rig` is a :class:`~activities.worker._handoff.HandOff` with slots of the test's
(:class:`Taker`, which hold a task until the test finishes it) and a client whose polls
the test answers (:class:`~tests.fake_polls.ScriptedClient`). The activities are those
``tests/test_handoff.py`` and ``tests/test_handoff_worker.py`` run.
"""

from __future__ import annotations

import contextlib
import threading
import time
from typing import TYPE_CHECKING, Any

from activities import Activity
from activities.worker._control import Control
from activities.worker._handoff import HandOff
from activities.worker._heartbeats import Job
from activities.worker._pool import thread_context
from activities.worker._slotstate import FINISHED, REPORTED, Cells, SlotState
from tests.fake_polls import ScriptedClient, arn
from tests.waiting import wait_until

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence

    from activities.task import Task

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


class Declared(Activity):
    """States with HeartbeatSeconds 60: heartbeated every 20 s."""

    name = "ho-Declared"
    heartbeat_seconds = 60

    def run(self) -> None: ...


class Paced(Activity):
    name = "ho-Paced"
    heartbeat_interval = 7.0

    def run(self) -> None: ...


class AsyncQuick(Activity):
    name = "ho-AsyncQuick"

    async def run(self) -> None: ...


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


def gate_closed() -> Iterator[None]:
    """Gate closed and Counted at 0 for a test; the gate opened after it."""
    Gate.opened.clear()
    Counted.running = Counted.most = 0
    yield
    Gate.opened.set()  # no thread stays stuck behind it


def names(prefix: str, count: int) -> list[str]:
    return [f"{prefix}-{number:02d}" for number in range(count)]


# -- the hand-off, with the test's slots ----------------------------------------------------


class Taker:
    """A slot that holds each task it is handed until the test finishes it."""

    kind = "thread"

    def __init__(self, position: int, *, takes_sync: bool = True, ready: bool = True) -> None:
        self.name = f"slot-{position}"
        self.position = position
        self.takes_sync = takes_sync
        self.ready = ready
        self.cells = Cells(thread_context(), 1)
        self.state = SlotState(self.cells, 0)
        self.taken: list[Task] = []
        self.number = 0
        self.closes = 0

    def offer(self, task: Task, index: int) -> bool:
        number = self.state.hold(task, index)
        if number is None:
            return False
        self.number = number
        self.taken.append(task)
        return True

    def close(self) -> None:
        self.closes += 1
        self.state.close()

    def finish(self) -> None:
        """The task handed last returned, and was reported."""
        self.cells.set(0, FINISHED, self.number)
        self.cells.set(0, REPORTED, self.number)

    @property
    def tokens(self) -> list[str]:
        return [task.token for task in self.taken]


def async_position(position: int) -> Taker:
    return Taker(position, takes_sync=False)


class Beats:
    """Stands in for the worker's Heartbeats: records what begins, ends and goes to a slot."""

    def __init__(self) -> None:
        self.begun: list[Job] = []
        self.ended: list[Job] = []
        self.handed: list[Job] = []

    def begin(
        self, task: Task, activity: type[Activity], interval: float | None, *, waiting: bool = False
    ) -> Job:
        job = Job(task, activity, interval, waiting=waiting)
        self.begun.append(job)
        return job

    def end(self, job: Job) -> None:
        self.ended.append(job)

    def hand_over(self, job: Job) -> None:
        self.handed.append(job)


class Rig:
    """A hand-off over the test's slots, task lists and client, and what it failed."""

    def __init__(
        self,
        slots: Sequence[Taker],
        served: dict[str, type[Activity]],
        *,
        capacity: int = 2,
        client: ScriptedClient | None = None,
        most_polls: int = 1_000,
        **options: Any,
    ) -> None:
        self.slots = list(slots)
        self.client = client or ScriptedClient()
        self.beats = Beats()
        self.failed: list[tuple[str, Exception]] = []
        self.control = Control(thread_context(), [arn(name) for name in served], slots=len(slots))
        self.handoff = HandOff(
            self.client,  # type: ignore[arg-type]
            self.control,
            by_arn={arn(name): activity for name, activity in served.items()},
            capacity=capacity,
            heartbeats=self.beats,  # type: ignore[arg-type]
            slots=lambda: self.slots,  # type: ignore[arg-type,return-value]
            fail=lambda task, error: self.failed.append((task.token, error)),
            most_polls=most_polls,
            **options,
        )

    def held(self) -> int:
        """Tasks held: running (read first: a task only leaves the buffer for a slot), waiting."""
        busy = sum(slot.state.busy() for slot in self.slots)
        return busy + self.handoff.waiting()

    def turns(self, count: int = 3) -> None:
        """Wait for the hand-off's loop to look again ``count`` times (it fills the polls)."""
        for _ in range(count):
            before = self.handoff.looked_at
            assert wait_until(lambda before=before: self.handoff.looked_at > before)


@contextlib.contextmanager
def running(rig: Rig) -> Iterator[Rig]:
    """The hand-off's loop and polls for the block; its polls end when it ends."""
    rig.handoff.start()
    try:
        yield rig
    finally:
        rig.control.stopping.set()
        rig.client.close()
        rig.handoff.close()
        assert wait_until(lambda: rig.handoff.polls_open() == 0), "a poller never returned"
