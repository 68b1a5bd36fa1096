"""How a worker's pool stops (activities._stop): when it is drained."""

from __future__ import annotations

import multiprocessing
import threading
import time

from activities._control import Control
from activities._stop import Stop

ARNS = ["arn:a", "arn:b"]


class IdleHandOff:
    """A hand-off with no task waiting and no poll of its own open."""

    def idle(self) -> bool:
        return True

    def fail_waiting(self, error: Exception) -> int:
        return 0


class Delivered:
    def wait(self, timeout: float) -> bool:
        return True


def drain(control: Control) -> None:
    stop = Stop(
        control,
        IdleHandOff(),  # type: ignore[arg-type]
        units=list,
        fail=lambda held, error: None,
        failures=Delivered(),  # type: ignore[arg-type]
        grace=30,
    )
    assert stop.drain(time.monotonic() + 30, threading.Event())


class TestDrained:
    def test_drained_once_no_poll_is_open_and_no_task_waits(self) -> None:
        control = Control(multiprocessing.get_context("spawn"), ARNS, slots=2, pollers=None)
        control.stopping.set()
        drain(control)
        assert control.drained.is_set()

    def test_not_while_a_task_is_on_its_way_to_the_buffer(self) -> None:
        """A slot's poll brought a task after the slot was handed one: it is sent to the
        worker's buffer. Its poll counts as done before the worker has the task; drained
        then would end the idle slots, and the task would wait out the grace and fail."""
        control = Control(multiprocessing.get_context("spawn"), ARNS, slots=2, pollers=None)
        control.stopping.set()
        control.overflowed(1)
        drain(control)
        assert not control.drained.is_set()
        control.overflow_taken(1)
        drain(control)
        assert control.drained.is_set()
