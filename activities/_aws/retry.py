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
speed. A process logs one warning at most every :data:`REPORT_EVERY` seconds while its
calls are throttled, with how many were.
"""

from __future__ import annotations

import logging
import math
import random
import threading
import time
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

#: Seconds between two warnings of one process about throttled calls.
REPORT_EVERY = 10.0

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
    """

    def __init__(
        self,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._gaps: dict[str, float] = {}
        self._next: dict[str, float] = {}
        self._throttled: Counter[str] = Counter()
        self._reported = -REPORT_EVERY

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
        """A call of ``operation`` was throttled: widen the gap; warn now and then."""
        with self._lock:
            gap = self._gaps.get(operation, 0.0)
            self._gaps[operation] = min(MAX_GAP, max(MIN_GAP, gap * GROW))
            self._throttled[operation] += 1
            now = self._clock()
            if now - self._reported < REPORT_EVERY:
                return
            since, self._reported = self._reported, now
            counts, self._throttled = self._throttled, Counter()
            gaps = dict(self._gaps)
        total = sum(counts.values())
        each = ", ".join(
            f"{name} {count} (one start every {gaps.get(name, 0.0) * 1000:.0f} ms)"
            for name, count in counts.most_common()
        )
        window = "so far" if since < 0 else f"in {now - since:.0f} s"
        logger.warning(
            "Step Functions throttled %d call%s %s: %s; they are retried, and paced while it lasts",
            total,
            "" if total == 1 else "s",
            window,
            each,
        )

    def taken(self, operation: str) -> None:
        """A call of ``operation`` was answered (not throttled): narrow the gap."""
        with self._lock:
            gap = self._gaps.get(operation, 0.0)
            if gap:
                gap *= SHRINK
                self._gaps[operation] = gap if gap >= MIN_GAP else 0.0
