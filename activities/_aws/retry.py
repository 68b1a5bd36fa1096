"""One retry policy for every Step Functions call, and pacing while calls are throttled.

Step Functions throttles each API (``GetActivityTask``, ``SendTaskSuccess``, ...) with a
token bucket per account and Region. A call that fails for a reason that passes
(throttling, a 5xx, a lost connection, a timeout) is retried by
:class:`~activities.ActivityClient` after a pause of :class:`RetryPolicy` (exponential
backoff with full jitter, from 50 ms), and the worker's loops retry polls and outcomes
with the same policy: the clients :func:`~activities.make_client` makes do not retry on
their own, so that no second backoff stacks under this one.

A throttled call also slows its process's next calls of the same operation: the
:class:`Pacer` spaces their starts by a gap that grows by half with each throttled call
and shrinks by a quarter with each call taken. Against a token bucket the gap settles
where about two calls in five are throttled, so a process calls at a steady rate near
what the bucket refills, instead of storming it; throttling that is random (a share of
calls refused whatever the rate) leaves the gap near zero, so the work goes on at full
speed.

Each throttled attempt's own line is DEBUG; what a process says of throttling is a
summary, one WARNING with how many calls of each operation were throttled, every one
counted once: when a burst is over (no call throttled for :data:`QUIET` seconds), or
every :data:`REPORT_EVERY` seconds while it goes on, never two within
:data:`REPORT_EVERY` seconds (what comes meanwhile goes in the next one). A summary due
while the process makes no call is said from a short-lived timer thread; one not said yet
when the client is closed is said then (:meth:`Pacer.flush`).
"""

from __future__ import annotations

import logging
import math
import os
import random
import threading
import time
import weakref
from collections import Counter
from typing import TYPE_CHECKING

import attrs

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["Pacer", "RetryPolicy"]

logger = logging.getLogger("activities.client")

#: The shortest gap the pacer keeps between two starts of an operation, in seconds; a
#: gap that shrinks below it is dropped.
MIN_GAP = 0.002

#: The longest gap, in seconds: a process calls each operation once a second at least.
MAX_GAP = 1.0

#: How the gap changes with each throttled call, and with each call taken.
GROW = 1.5
SHRINK = 0.75

#: Seconds between two warnings of one process about throttled calls, at least; and
#: the longest a burst goes on before one.
REPORT_EVERY = 10.0

#: Seconds without a throttled call after which a burst of them is over.
QUIET = 1.0

#: The most doublings of ``base`` a pause counts: ``2.0 ** 1023`` is the largest power of
#: two a float holds, and any cap is reached long before.
_MAX_DOUBLINGS = 1023


def _at_least_one(instance: object, attribute: attrs.Attribute[int], value: int) -> None:
    if value < 1:
        msg = f"{attribute.name} must be at least 1, got {value!r}"
        raise ValueError(msg)


def _positive(instance: object, attribute: attrs.Attribute[float], value: float) -> None:
    if not 0 < value < math.inf:  # NaN and infinity too: a pause must end
        msg = f"{attribute.name} must be more than 0 and finite, got {value!r}"
        raise ValueError(msg)


@attrs.frozen
class RetryPolicy:
    """How calls to Step Functions that failed for a passing reason are retried.

    The pause before attempt ``n + 1`` (after ``n`` failed) is random, from 0 up to
    ``base * 2**(n - 1)`` seconds, capped at ``cap``: full jitter, so that processes
    throttled at once do not come back at once. Any number of failures in a row (a poll
    that fails for days) gives a pause within the cap.

    Attributes:
        attempts: attempts per call of :class:`~activities.ActivityClient`'s methods, the
            first included. The worker retries outcomes until Step Functions takes them
            and polls until it stops, with the same pauses.
        base: the longest pause before the second attempt, in seconds.
        cap: the longest pause, in seconds.
    """

    attempts: int = attrs.field(default=5, validator=_at_least_one)
    base: float = attrs.field(default=0.05, validator=_positive)
    cap: float = attrs.field(default=20.0, validator=_positive)

    def pause(self, failed: int) -> float:
        """Seconds to wait before the next attempt, after ``failed`` (1 or more) failed."""
        doublings = min(max(0, failed - 1), _MAX_DOUBLINGS)
        longest = min(self.cap, self.base * 2.0**doublings)  # a float: inf at worst, never raises
        return random.uniform(0, longest)  # noqa: S311 - jitter, not crypto


class Pacer:
    """Spaces the starts of one process's calls of each operation while it is throttled.

    Thread-safe: every thread of the process that calls Step Functions shares one.

    Args:
        clock: seconds, monotonic.
        sleep: waits a number of seconds.
        later: calls a function in a number of seconds, from another thread (a summary
            due while no call is made); a daemon :class:`threading.Timer` by default.
    """

    def __init__(
        self,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        later: Callable[[float, Callable[[], None]], None] | None = None,
    ) -> None:
        self._clock = clock
        self._sleep = sleep
        self._later = later if later is not None else _later
        self._lock = threading.Lock()
        self._gaps: dict[str, float] = {}
        self._next: dict[str, float] = {}
        self._throttled: Counter[str] = Counter()  # calls not said yet, by operation
        self._first = 0.0  # the first throttled call not said yet
        self._last = 0.0  # the last throttled call
        self._reported = -math.inf  # when the last summary was said
        self._armed = False  # a look is due later
        _PACERS.add(self)

    def gap(self, operation: str) -> float:
        """Seconds kept now between two starts of ``operation``; 0 when not throttled."""
        with self._lock:
            return self._gaps.get(operation, 0.0)

    def wait(self, operation: str) -> float:
        """Wait for the turn of a call of ``operation``; the seconds waited."""
        with self._lock:
            gap = self._gaps.get(operation, 0.0)
            if not gap:
                return 0.0
            now = self._clock()
            start = max(now, self._next.get(operation, now))
            self._next[operation] = start + gap
        if start > now:
            self._sleep(start - now)
        return start - now

    def throttled(self, operation: str) -> None:
        """A call of ``operation`` was throttled: widen the gap; warn if a summary is due."""
        with self._lock:
            gap = self._gaps.get(operation, 0.0)
            self._gaps[operation] = min(MAX_GAP, max(MIN_GAP, gap * GROW))
            now = self._clock()
            if not self._throttled:
                self._first = now
            self._throttled[operation] += 1
            self._last = now
            summary, look_in = self._look(now)
        self._say(summary, look_in)

    def taken(self, operation: str) -> None:
        """A call of ``operation`` was answered (not throttled): narrow the gap; warn if due."""
        with self._lock:
            gap = self._gaps.get(operation, 0.0)
            if gap:
                gap *= SHRINK
                self._gaps[operation] = gap if gap >= MIN_GAP else 0.0
            if not self._throttled:
                return
            summary, look_in = self._look(self._clock())
        self._say(summary, look_in)

    def flush(self) -> None:
        """Warn now of the throttled calls not said yet, if any (the client is closed)."""
        with self._lock:
            summary = self._summary(self._clock()) if self._throttled else None
        self._say(summary, None)

    def _looked_later(self) -> None:
        """The look that was due later: warn if a summary is due, else look again then."""
        with self._lock:
            self._armed = False
            summary, look_in = self._look(self._clock()) if self._throttled else (None, None)
        self._say(summary, look_in)

    def _look(self, now: float) -> tuple[_Summary | None, float | None]:
        """A summary if one is due now, else the seconds until one is; under the lock.

        Due once the burst is over (no call throttled for ``QUIET`` seconds) or has gone
        on for ``REPORT_EVERY``, and ``REPORT_EVERY`` after the summary before.
        """
        due = max(
            self._reported + REPORT_EVERY, min(self._first + REPORT_EVERY, self._last + QUIET)
        )
        if now >= due:
            return self._summary(now), None
        if self._armed:
            return None, None
        self._armed = True
        return None, due - now

    def _summary(self, now: float) -> _Summary:
        """The calls not said yet, taken, with the seconds they span; under the lock."""
        counts, self._throttled = self._throttled, Counter()
        self._reported = now
        over = now - self._last >= QUIET
        span = (self._last if over else now) - self._first
        return _Summary(counts, span, dict(self._gaps))

    def _say(self, summary: _Summary | None, look_in: float | None) -> None:
        """Log ``summary``, if any; look again in ``look_in`` seconds, if given."""
        if look_in is not None:
            try:
                self._later(look_in, self._looked_later)
            except RuntimeError:  # no new thread at interpreter shutdown: a call looks
                with self._lock:
                    self._armed = False
        if summary is not None:
            summary.warn()

    def _forked(self) -> None:
        """In a forked child: the parent says what it counted, and its timer is not here."""
        self._lock = threading.Lock()
        self._throttled = Counter()
        self._armed = False


@attrs.frozen
class _Summary:
    """Throttled calls by operation, over ``span`` seconds, and the gaps kept then."""

    counts: Counter[str]
    span: float
    gaps: dict[str, float]

    def warn(self) -> None:
        """Say how many calls were throttled, of which operations."""
        total = sum(self.counts.values())
        each = ", ".join(
            f"{name} {count} ({_pacing(self.gaps.get(name, 0.0))})"
            for name, count in self.counts.most_common()
        )
        if total == 1:
            within = ""
        elif self.span >= REPORT_EVERY:
            within = f" in {self.span:.0f} s"
        else:
            within = f" in {self.span:.1f} s"
        logger.warning(
            "Step Functions throttled %d call%s%s: %s; they are retried, and paced while it lasts",
            total,
            "" if total == 1 else "s",
            within,
            each,
        )


def _pacing(gap: float) -> str:
    return f"one start every {gap * 1000:.0f} ms" if gap else "no longer paced"


def _later(delay: float, function: Callable[[], None]) -> None:
    """Call ``function`` in ``delay`` seconds, from a daemon thread."""
    timer = threading.Timer(delay, function)
    timer.name = "sfn-activities-pacer"
    timer.daemon = True
    timer.start()


def _after_fork_in_child() -> None:
    for pacer in list(_PACERS):
        pacer._forked()


#: Every pacer of this process, made anew in a forked child (their locks, counts, timers).
_PACERS: weakref.WeakSet[Pacer] = weakref.WeakSet()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
