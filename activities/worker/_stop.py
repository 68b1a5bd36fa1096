"""How a worker's pool stops: drained gracefully, or at once.

A graceful stop (the first SIGTERM or Ctrl-C, :meth:`~activities.Worker.stop`) starts no
new poll, lets the polls in flight return and what they bring run, then closes the slots
(no task comes any more: each unit ends once its tasks are reported), and gives running
tasks the shutdown grace. Past it, the worker fails the tasks waiting for a slot, each
process fails the tasks it still runs (all with ``activities.WorkerShutdown``), and the
worker stops the processes that answer for nothing any more; one that still has not
reported its tasks a minute later is stopped, and the worker fails them. A stop at once (a
second signal, :meth:`~activities.Worker.terminate`) stops the processes and fails their
tasks now. Either way the worker's own failures are delivered before it says it stopped.

:class:`Stop` is the worker's, made as it starts; the worker keeps the flags that say
whether it is stopping.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import signal
import threading
import time
from typing import TYPE_CHECKING

from activities.errors import WorkerShutdown
from activities.worker._heartbeats import TICK
from activities.worker._settings import plural
from activities.worker._slot import take_all

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from types import FrameType

    from activities.worker._control import Control
    from activities.worker._delivery import BackgroundDelivery
    from activities.worker._handoff import HandOff
    from activities.worker._slot import Unit
    from activities.worker._slotstate import Held

__all__ = ["Stop", "stop_on_signals"]

logger = logging.getLogger("activities.worker")  # what users see the worker say

#: Seconds an immediate stop waits for the failures of running tasks to be delivered.
TERMINATE_DELIVERY_TIMEOUT = 5.0

#: Seconds a graceful stop waits, after the shutdown grace, for outcomes still being
#: delivered; then they get one more attempt.
DRAIN_DELIVERY_TIMEOUT = 60.0

#: Seconds between two lines saying what a graceful stop still waits for.
DRAIN_REPORT_INTERVAL = 10.0

#: Seconds a long poll lasts when no task comes (Step Functions' 60).
POLL_SECONDS = 60

#: What a stop at once does to tasks, as the line of a graceful stop's start says.
AT_ONCE_COST = (
    "running tasks and tasks waiting for a slot fail with WorkerShutdown, and a task an "
    "open poll brings is lost until its timeout"
)

#: The name of the signal that is beginning a graceful stop, while its handler runs.
_received: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "sfn_activities_stop_signal", default=None
)


class Stop:
    """Stop a worker's units: drain them, or stop them at once.

    Args:
        control: the worker's shared state.
        handoff: the worker's own polls and the tasks waiting for a slot.
        units: the units running now.
        fail: fail a task a slot held, on the worker's behalf, in the background.
        failures: where those failures are delivered.
        grace: the shutdown grace, in seconds.
    """

    def __init__(
        self,
        control: Control,
        handoff: HandOff,
        *,
        units: Callable[[], list[Unit]],
        fail: Callable[[Held, Exception], None],
        failures: BackgroundDelivery,
        grace: float,
    ) -> None:
        self._control = control
        self._handoff = handoff
        self._units = units
        self._fail = fail
        self._failures = failures
        self._grace = grace

    def announce(self) -> None:
        """Say in one line, as a graceful stop begins, what it waits for.

        When a signal began it (:func:`stop_on_signals`), the line also says what a second
        one costs.
        """
        polls = self._handoff.polls_open()
        received = _received.get()
        line, arguments = "stopping gracefully: no new polls", list[object]()
        if received:
            line, arguments = "%s: " + line, [received]
        if polls:
            line += "; %s still open %s up to %.0f s to return, and a task one brings still runs"
            arguments += [
                plural(polls, "poll"),
                "may take" if polls == 1 else "may each take",
                POLL_SECONDS,
            ]
        line += "; running tasks have %.0f s to finish"
        arguments.append(self._grace)
        if received:
            line += "; a second signal stops at once: %s"
            arguments.append(AT_ONCE_COST)
        logger.info(line, *arguments)

    def drain(self, deadline: float, terminating: threading.Event) -> bool:
        """Wait for the units to end; past ``deadline``, fail and stop what still runs.

        Returns whether it was clean: every task ended within the grace, and every
        outcome and failure was delivered; returns at once, early, when ``terminating``
        is set (a stop at once took over).
        """
        control, handoff = self._control, self._handoff
        delivered = True
        closed = False
        given_up = deadline + DRAIN_DELIVERY_TIMEOUT
        next_report = time.monotonic() + DRAIN_REPORT_INTERVAL
        while not terminating.is_set():
            units = self._units()
            now = time.monotonic()
            if now >= next_report:
                next_report += DRAIN_REPORT_INTERVAL
                self._report(units)
            if now >= deadline and self._past_deadline(units):
                delivered = False  # tasks failed with WorkerShutdown
            if not closed and handoff.idle():
                # No poll is open and no task waits: none can arrive any more.
                handoff.close_slots([slot for unit in units for slot in unit.slots])
                closed = True
            if now >= given_up and not control.give_up.is_set():
                logger.error("some outcomes were still undelivered when the worker stopped")
                delivered = False
                control.give_up.set()
                self._stop_unreported(units)
            # Past the grace, a thread still running a task its process failed is not
            # waited for; the worker's own polls are: what they bring runs, or is failed.
            if closed and not any(
                unit.is_alive() and (now < deadline or _answering(unit)) for unit in units
            ):
                break
            time.sleep(TICK)
        if terminating.is_set():
            return delivered
        if not self._failures.wait(DRAIN_DELIVERY_TIMEOUT):
            delivered = False
            logger.error("some failures were still undelivered when the worker stopped")
        return delivered

    def at_once(self) -> None:
        """Stop the task processes now; fail their tasks, and those waiting, with WorkerShutdown.

        Thread slots cannot be stopped: their process fails the tasks they run (see
        :class:`~activities.worker._serving.GraceWatch`), with one attempt each.
        """
        control = self._control
        for flag in (control.give_up, control.stopping, control.past_deadline):
            flag.set()
        units = self._units()
        stopped = [unit for unit in units if unit.terminate()]
        for held in take_all(stopped):
            self._fail(held, WorkerShutdown("the worker was stopped at once while the task ran"))
        self._handoff.close()
        self._handoff.fail_waiting(
            WorkerShutdown("the worker was stopped at once while the task waited for a slot")
        )
        ends = time.monotonic() + TERMINATE_DELIVERY_TIMEOUT
        others = [unit for unit in units if unit not in stopped]
        while time.monotonic() < ends and any(_answering(unit) for unit in others):
            time.sleep(TICK)
        self._failures.wait(max(0.0, ends - time.monotonic()))

    def _past_deadline(self, units: list[Unit]) -> bool:
        """The grace is over: fail what waits; stop the processes that answer for nothing.

        Each process fails the tasks it still runs itself, as the flag tells it; the
        worker stops it once it has reported them (its tasks' threads cannot be ended
        otherwise). Whether, the first time, a task still ran or waited.
        """
        control = self._control
        first = not control.past_deadline.is_set()
        if first:
            control.past_deadline.set()
            failed = self._handoff.fail_waiting(
                WorkerShutdown(
                    f"the task was still waiting for a slot when the shutdown grace of "
                    f"{self._grace:.0f} s expired"
                )
            )
            if failed:
                logger.warning("failed %d tasks that were waiting for a slot", failed)
            first = bool(failed) or any(slot.state.busy() for unit in units for slot in unit.slots)
        for unit in units:
            if unit.is_alive() and unit.kind == "process" and not _answering(unit):
                unit.terminate()
        return first

    def _stop_unreported(self, units: list[Unit]) -> None:
        """A minute past the grace: stop the processes that still have not reported; fail theirs."""
        late = [unit for unit in units if unit.is_alive() and _answering(unit) and unit.terminate()]
        for held in take_all(late):
            self._fail(
                held,
                WorkerShutdown(
                    f"the task was still running when the shutdown grace of "
                    f"{self._grace:.0f} s expired"
                ),
            )

    def _report(self, units: list[Unit]) -> None:
        """Say what a graceful stop still waits for."""
        running = sum(slot.state.answering() for unit in units for slot in unit.slots)
        logger.info(
            "still stopping: %s running, %s waiting for a slot, %s open",
            plural(running, "task"),
            plural(self._handoff.waiting(), "task"),
            plural(self._handoff.polls_open(), "poll"),
        )


def _answering(unit: Unit) -> bool:
    """Whether a slot of ``unit`` runs or reports a task the worker has not taken."""
    return any(slot.state.answering() for slot in unit.slots)


@contextlib.contextmanager
def stop_on_signals(*, graceful: Callable[[], None], at_once: Callable[[], None]) -> Iterator[None]:
    """Within: the first SIGINT or SIGTERM calls ``graceful``, a second one ``at_once``.

    ``graceful`` runs in the handler; a :meth:`Stop.announce` it makes names the signal
    and what a second one costs.

    ``at_once`` runs in a thread of its own (it waits for deliveries). The handlers
    before are restored after. Call from the main thread.
    """
    received = 0

    def on_signal(signum: int, _: FrameType | None) -> None:
        # Counted first: a second signal can arrive while the first is being handled.
        nonlocal received
        received += 1
        name = signal.Signals(signum).name
        if received > 1:
            logger.warning("%s again: stopping at once: %s", name, AT_ONCE_COST)
            threading.Thread(target=at_once, daemon=True).start()
        else:
            token = _received.set(name)  # graceful() says it began the stop, in one line
            try:
                graceful()
            finally:
                _received.reset(token)

    previous = {
        signum: signal.signal(signum, on_signal) for signum in (signal.SIGINT, signal.SIGTERM)
    }
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
