"""Noticing that Step Functions has stopped answering, and that it answers again.

Every attempt of a call is *due* an answer: a call that is not a long poll at once, a long
poll (``GetActivityTask``) within the 60 s it may be held open, and a few seconds more.
Each process that calls Step Functions keeps a :class:`Hearing`: when it last heard an
answer (an error from the service is an answer too), and since when an attempt of its
has been due one without getting it (still waiting, or ended by a timeout or a lost
connection). The worker's process reads every process's :class:`Hearing` from shared
memory, and its :class:`OutageWatch` logs one WARNING when nothing has answered for
``after`` seconds while some call was due (again at most every :data:`REPEAT` seconds
while it lasts), and one INFO when an answer comes again. An idle worker's long polls
are silent for up to a minute by design: they are not overdue, and count for nothing.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

__all__ = ["Cells", "Hearing", "OutageWatch"]

logger = logging.getLogger("activities.worker")

#: Seconds a long poll may take before its answer is overdue: the 60 s Step Functions
#: holds it, and a margin.
POLL_DUE = 65.0

#: Seconds between two warnings while the silence lasts.
REPEAT = 60.0

#: Seconds between two looks of the watch.
LOOK_EVERY = 1.0

#: The operation that is a long poll.
LONG_POLL = "GetActivityTask"


class Cells(Protocol):
    """Times, one per process: a list, or an array of shared memory."""

    def __getitem__(self, index: int, /) -> float: ...
    def __setitem__(self, index: int, value: float, /) -> None: ...
    def __iter__(self) -> Iterator[float]: ...


class Hearing:
    """What one process's calls heard from Step Functions, kept where the worker reads it.

    Thread-safe. ``answered[index]`` holds the monotonic time of the last answer (0 for
    none yet) and ``overdue[index]`` the time since which an attempt has been due an
    answer it did not get (0 for none); both default to cells of this process alone.

    Args:
        answered: the cells of last answers, one per process, shared with the worker.
        overdue: the cells of overdue attempts, alike.
        index: this process's cell.
        clock: seconds, monotonic, the same in every process (``time.monotonic``).
    """

    def __init__(
        self,
        answered: Cells | None = None,
        overdue: Cells | None = None,
        index: int = 0,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.answered_cells = answered if answered is not None else [0.0]
        self.overdue_cells = overdue if overdue is not None else [0.0]
        self._index = index
        self._clock = clock
        self._lock = threading.Lock()
        self._ids = itertools.count()
        self._open: dict[int, float] = {}  # attempt -> when its answer is due
        self._missed: float | None = None  # the earliest due of attempts that got none
        self.overdue_cells[index] = 0.0  # what a process before this one left

    def started(self, operation: str) -> int:
        """An attempt of ``operation`` starts; returns its handle."""
        due = self._clock() + (POLL_DUE if operation == LONG_POLL else 0.0)
        with self._lock:
            attempt = next(self._ids)
            self._open[attempt] = due
            self._publish()
        return attempt

    def answered(self, attempt: int) -> None:
        """Step Functions answered ``attempt`` (with a result or an error)."""
        with self._lock:
            self._open.pop(attempt, None)
            self._missed = None
            self.answered_cells[self._index] = self._clock()
            self._publish()

    def unanswered(self, attempt: int) -> None:
        """``attempt`` ended without an answer: a timeout or a lost connection."""
        with self._lock:
            due = self._open.pop(attempt, None)
            if due is not None:
                self._missed = due if self._missed is None else min(self._missed, due)
            self._publish()

    def forget(self, attempt: int) -> None:
        """``attempt`` never reached Step Functions (no credentials, bad parameters)."""
        with self._lock:
            self._open.pop(attempt, None)
            self._publish()

    def _publish(self) -> None:
        dues = [*self._open.values(), *([] if self._missed is None else [self._missed])]
        self.overdue_cells[self._index] = min(dues, default=0.0)


class OutageWatch:
    """Logs when Step Functions has answered none of the worker's calls for a while.

    Args:
        answered: every process's cell of its last answer (see :class:`Hearing`).
        overdue: every process's cell of its earliest overdue attempt.
        after: seconds without an answer, while a call is due one, before the warning.
        clock: seconds, monotonic.
    """

    def __init__(
        self,
        answered: Cells,
        overdue: Cells,
        *,
        after: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._answered = answered
        self._overdue = overdue
        self._after = after
        self._clock = clock
        self._silent_since: float | None = None  # set once warned
        self._warned_at = 0.0
        self._closed = threading.Event()
        self._thread: threading.Thread | None = None

    def silence(self) -> float:
        """Seconds since the last answer while a call is due one; 0 when none is due."""
        overdue = [due for due in self._overdue if due > 0]
        if not overdue:
            return 0.0
        since = max(max(self._answered, default=0.0), min(overdue))
        return max(0.0, self._clock() - since)

    def look(self) -> None:
        """Warn of a silence, or say it ended; called every second by :meth:`start`'s thread."""
        now = self._clock()
        silence = self.silence()
        if silence >= self._after:
            if self._silent_since is None or now - self._warned_at >= REPEAT:
                if self._silent_since is None:
                    self._silent_since = now - silence
                self._warned_at = now
                logger.warning(
                    "Step Functions has answered none of the worker's calls for %.0f s; "
                    "they are retried, and no task is given up for it",
                    now - self._silent_since,
                )
        elif self._silent_since is not None and (last := max(self._answered)) > self._silent_since:
            logger.info(
                "Step Functions answers again, after %.0f s without an answer",
                last - self._silent_since,
            )
            self._silent_since = None

    def start(self) -> None:
        """Look every second from a thread of its own, until :meth:`close`."""
        self._thread = threading.Thread(target=self._run, name="sfn-activities-watch", daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Stop looking."""
        self._closed.set()
        if self._thread is not None:
            self._thread.join(LOOK_EVERY * 2)

    def _run(self) -> None:
        while not self._closed.wait(LOOK_EVERY):
            try:
                self.look()
            except Exception:
                logger.exception("the outage watch failed; it goes on")
