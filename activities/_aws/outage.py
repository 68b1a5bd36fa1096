"""Noticing that Step Functions has stopped answering, and that it answers again.

Every attempt of a call is *due* an answer: a call that is not a long poll at once, a long
poll (``GetActivityTask``) within the 60 s it may be held open, and a few seconds more.
Each process that calls Step Functions keeps a :class:`Hearing`: when it last heard an
answer (an error from the service is an answer too, but for a 5xx or a request timeout,
which say nothing of the call), and since when an attempt of its has been due one without
getting it (still waiting, or ended by a timeout or a lost connection: then due since it
ended, if not before). The worker's process reads every process's :class:`Hearing` from
shared memory, and its :class:`OutageWatch` logs one WARNING when nothing has answered for
``after`` seconds while some call was due (again at most every :data:`REPEAT` seconds
while it lasts), and one INFO when an answer comes again: the summary of the attempts
that :class:`~activities.ActivityClient` retried meanwhile, each logged at DEBUG. An idle
worker's long polls are silent for up to a minute by design: they are not overdue, and
count for nothing.

A client with no worker (:class:`~activities.ActivityClient` used alone) warns by itself:
its :class:`Hearing` has a watch of its own (``warn_after``), which looks when an attempt
ends without an answer, and says so on the ``activities.client`` logger, with the same
repeats and INFO line.
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
_client_logger = logging.getLogger("activities.client")

#: Seconds a long poll may take before its answer is overdue: the 60 s Step Functions
#: holds it, and a margin.
POLL_DUE = 65.0

#: Seconds between two warnings while the silence lasts.
REPEAT = 60.0

#: Seconds between two looks of the watch.
LOOK_EVERY = 1.0

#: The operation that is a long poll.
LONG_POLL = "GetActivityTask"

#: Seconds without an answer before a client with no worker warns (the worker's default
#: ``silence_warning``).
ALONE_AFTER = 15.0


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
        warn_after: warn of a silence of this many seconds by itself, from the calls'
            threads (a client with no worker); ``None``: the worker's watch does.
    """

    def __init__(
        self,
        answered: Cells | None = None,
        overdue: Cells | None = None,
        index: int = 0,
        *,
        clock: Callable[[], float] = time.monotonic,
        warn_after: float | None = None,
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
        self._watch = (
            None
            if warn_after is None
            else OutageWatch(
                self.answered_cells, self.overdue_cells, after=warn_after, clock=clock, alone=True
            )
        )

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
        if self._watch is not None and self._watch.warned:
            self._watch.look()

    def unanswered(self, attempt: int) -> None:
        """``attempt`` ended without an answer: a timeout, a lost connection, a 5xx."""
        with self._lock:
            due = self._open.pop(attempt, None)
            if due is not None:
                due = min(due, self._clock())  # a poll refused at once is due now
                self._missed = due if self._missed is None else min(self._missed, due)
            self._publish()
        if self._watch is not None:
            self._watch.look()

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

    Thread-safe.

    Args:
        answered: every process's cell of its last answer (see :class:`Hearing`).
        overdue: every process's cell of its earliest overdue attempt.
        after: seconds without an answer, while a call is due one, before the warning.
        clock: seconds, monotonic.
        alone: the watch of a client with no worker (see :class:`Hearing`): its lines are
            the client's, ``activities.client``.
    """

    def __init__(
        self,
        answered: Cells,
        overdue: Cells,
        *,
        after: float,
        clock: Callable[[], float] = time.monotonic,
        alone: bool = False,
    ) -> None:
        self._answered = answered
        self._overdue = overdue
        self._after = after
        self._clock = clock
        self._logger = _client_logger if alone else logger
        self._whose = "this client's calls" if alone else "the worker's calls"
        self._consequence = (
            "each is retried up to its attempts"
            if alone
            else "they are retried, and no task is given up for it"
        )
        self._lock = threading.Lock()
        self._silent_since: float | None = None  # set once warned
        self._warned_at = 0.0
        self._closed = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def warned(self) -> bool:
        """Whether a silence was warned of, and its end not said yet."""
        return self._silent_since is not None

    def silence(self) -> float:
        """Seconds since the last answer while a call is due one; 0 when none is due."""
        overdue = [due for due in self._overdue if due > 0]
        if not overdue:
            return 0.0
        since = max(max(self._answered, default=0.0), min(overdue))
        return max(0.0, self._clock() - since)

    def look(self) -> None:
        """Warn of a silence, or say it ended; called every second by :meth:`start`'s thread."""
        with self._lock:
            now = self._clock()
            silence = self.silence()
            if silence >= self._after:
                if self._silent_since is not None and now - self._warned_at < REPEAT:
                    return
                if self._silent_since is None:
                    self._silent_since = now - silence
                self._warned_at = now
                level, seconds = logging.WARNING, now - self._silent_since
            elif self._silent_since is not None and (last := max(self._answered)) > (
                self._silent_since
            ):
                level, seconds = logging.INFO, last - self._silent_since
                self._silent_since = None
            else:
                return
        if level == logging.WARNING:
            self._logger.warning(
                "Step Functions has answered none of %s for %.0f s; %s",
                self._whose,
                seconds,
                self._consequence,
            )
        else:
            self._logger.info(
                "Step Functions answers again, after %.0f s without an answer", seconds
            )

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
                self._logger.exception("the outage watch failed; it goes on")
