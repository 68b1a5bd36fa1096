"""How a worker's pool stops (activities._stop): when it is drained."""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import threading
import time

import pytest

from activities._control import Control
from activities._stop import Stop, stop_on_signals

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


def stop_of(control: Control) -> Stop:
    return Stop(
        control,
        IdleHandOff(),  # type: ignore[arg-type]
        units=list,
        fail=lambda held, error: None,
        failures=Delivered(),  # type: ignore[arg-type]
        grace=30,
    )


def drain(control: Control) -> None:
    assert stop_of(control).drain(time.monotonic() + 30, threading.Event())


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


class TestWhatAStopSays:
    """The start of a graceful stop is one line: what it waits for, what a second signal costs."""

    @pytest.fixture
    def said(self, caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
        caplog.set_level(logging.INFO, logger="activities.worker")
        return caplog

    @staticmethod
    def polling(control: Control, polls: int) -> None:
        for position in range(polls):
            assert control.claim_poll(position, 0)

    def test_a_signal_begins_it_in_one_line(self, said: pytest.LogCaptureFixture) -> None:
        """Ctrl-C on an idle worker: its open polls may take a minute, and a second Ctrl-C
        fails the tasks and loses what an open poll brings."""
        control = Control(multiprocessing.get_context("spawn"), ARNS, slots=2, pollers=None)
        self.polling(control, 2)
        stop = stop_of(control)
        at_once = threading.Event()
        with stop_on_signals(graceful=stop.announce, at_once=at_once.set):
            os.kill(os.getpid(), signal.SIGINT)  # handled in this thread, before kill returns
        [line] = [record.getMessage() for record in said.records]
        assert line == (
            "SIGINT: stopping gracefully: no new polls; 2 polls still open may each take up to "
            "60 s to return, and a task one brings still runs; running tasks have 30 s to "
            "finish; a second signal stops at once: running tasks and tasks waiting for a slot "
            "fail with WorkerShutdown, and a task an open poll brings is lost until its timeout"
        )
        assert not at_once.is_set()

    def test_a_second_signal_says_what_it_costs(self, said: pytest.LogCaptureFixture) -> None:
        control = Control(multiprocessing.get_context("spawn"), ARNS, slots=2, pollers=None)
        stop = stop_of(control)
        at_once = threading.Event()
        with stop_on_signals(graceful=stop.announce, at_once=at_once.set):
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

    def test_a_stop_asked_in_code_names_no_signal(self, said: pytest.LogCaptureFixture) -> None:
        """worker.stop() has no second signal to warn of."""
        control = Control(multiprocessing.get_context("spawn"), ARNS, slots=2, pollers=None)
        self.polling(control, 1)
        stop_of(control).announce()
        [line] = [record.getMessage() for record in said.records]
        assert line == (
            "stopping gracefully: no new polls; 1 poll still open may take up to 60 s to "
            "return, and a task one brings still runs; running tasks have 30 s to finish"
        )
