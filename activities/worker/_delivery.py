"""Delivering a task's outcome, retried until Step Functions takes it or says it is gone."""

from __future__ import annotations

import logging
import threading
import time
from typing import TYPE_CHECKING

from activities._ops.metrics import NO_METRICS
from activities.errors import InvalidOutput, ServiceError, TaskGone
from activities.outcome import Cancelled, Failure, Success, exception_text, refused_output

if TYPE_CHECKING:
    from activities._ops.metrics import Metrics
    from activities.client import ActivityClient
    from activities.outcome import Outcome
    from activities.task import Task
    from activities.worker._control import Flag

__all__ = ["BackgroundDelivery", "deliver"]

logger = logging.getLogger(__name__)

#: Seconds an outcome refused for a reason that does not pass (a permission denied, an
#: unknown error, a bug) is retried, from its first such refusal, before it is given up:
#: long enough for a policy being fixed to propagate, short enough that a slot is not
#: held for good. Errors that pass (throttling, 5xx, timeouts) are retried until taken.
PERSISTENT_ERROR_WINDOW = 60.0

#: Attempts an outcome gets, at least, against an error that does not pass.
PERSISTENT_ERROR_ATTEMPTS = 5

#: Seconds an outcome's attempts may fail for reasons that pass before they are logged at
#: WARNING: until then the throttling summary and the outage warning say them, but an
#: error of this call alone (a proxy refusing large outputs with 502s, while polls are
#: answered) would say nothing.
QUIET_RETRIES = 60.0


def deliver(
    client: ActivityClient,
    task: Task,
    outcome: Outcome,
    *,
    give_up: Flag,
    metrics: Metrics = NO_METRICS,
    sent: bool = False,
) -> bool:
    """Send ``outcome`` for ``task``; ``True`` once Step Functions has taken it.

    Retried with the client's policy (:class:`~activities.RetryPolicy`: exponential
    backoff with full jitter, and pacing while throttled) until it is taken, Step
    Functions says the task is gone, or ``give_up`` is set (an immediate stop): then it
    gets one more attempt at most. Attempts that failed for a reason that passes are logged
    at DEBUG (the client's pacer warns of throttling, the worker's outage watch of
    silence, as a whole), other failures at WARNING; an error that is
    not Step Functions' answer (a bug) is retried too, logged at ERROR with its traceback
    the first time. An error that does not pass (``AccessDeniedException``: a policy
    without ``states:SendTaskSuccess``; a bug) is retried for
    :data:`PERSISTENT_ERROR_WINDOW` seconds and :data:`PERSISTENT_ERROR_ATTEMPTS`
    attempts, then given up, logged at ERROR with the task and the error: Step Functions
    then ends the task at its timeout. It never raises for an ``Exception``. An output Step
    Functions refuses becomes an ``activities.SerializationError`` failure, so the task
    never hangs until its timeout. A :class:`~activities.Cancelled` sends nothing.
    ``metrics`` counts each retry, and the outcome Step Functions took (a
    :class:`~activities.Cancelled` when it said the task was gone). ``sent``: another
    outcome of the task may have landed before (a task process died while sending it);
    Step Functions' saying the task is closed is then no news, logged at INFO, not counted.
    """
    if not isinstance(outcome, Success | Failure):
        return False
    attempt = 0
    unanswered = False  # an earlier attempt was sent but got no answer
    unexpected = False  # an earlier attempt met an error that is not Step Functions'
    persistent: list[float] = []  # when each attempt met an error that does not pass
    failing_since: float | None = None  # when the first attempt failed
    while True:
        try:
            client.send_outcome(task.token, outcome, attempts=1)
        except TaskGone as exc:
            _gone(task, outcome, exc, sent=sent, unanswered=unanswered, metrics=metrics)
            return False
        except InvalidOutput as exc:
            if not isinstance(outcome, Success):
                logger.error("task %s: failure refused: %s", task.token_prefix, exc)  # noqa: TRY400 - the refusal says it all
                return False
            outcome = refused_output(exc)
            continue
        except Exception as exc:  # noqa: BLE001 - an outcome is never dropped on an error
            # A ServiceError, or an error that is not Step Functions' answer (a bug, a client
            # of one's own, a plug-in of botocore's): retried alike, since dropping the
            # outcome would leave the task waiting for its timeout; an immediate stop still
            # ends the retries.
            if give_up.is_set():
                _not_delivered(task, exc, None, first=not unexpected)
                return False
            if not (isinstance(exc, ServiceError) and exc.transient):
                persistent.append(time.monotonic())
                if _past_persistence(persistent):
                    _given_up(task, exc, persistent)
                    return False
            attempt += 1
            pause = client.retry.pause(attempt)
            now = time.monotonic()
            failing_since = now if failing_since is None else failing_since
            quiet = now - failing_since < QUIET_RETRIES
            _not_delivered(task, exc, pause, first=not unexpected, quiet=quiet)
            if isinstance(exc, ServiceError):
                unanswered = unanswered or exc.unanswered
            else:
                unexpected = unanswered = True  # whether it was sent is not known
            metrics.delivery_retried(task)
            give_up.wait(pause)
            continue
        metrics.task_ended(task, outcome)
        return True


def _gone(
    task: Task, outcome: Outcome, exc: TaskGone, *, sent: bool, unanswered: bool, metrics: Metrics
) -> None:
    """Say that Step Functions no longer knows the task, and count how it ended."""
    if sent:
        logger.info(
            "task %s was closed already: the outcome its process sent landed (%s)",
            task.token_prefix,
            exc,
        )
        return
    if unanswered or exc.earlier_may_have_landed:
        # Not news that the outcome was lost: an attempt before may have landed.
        logger.warning(
            "task %s is no longer known to Step Functions (%s): an earlier attempt "
            "of its outcome, unanswered or retried, may have delivered it",
            task.token_prefix,
            exc,
        )
        metrics.task_ended(task, outcome)
        return
    logger.warning(
        "task %s was closed by Step Functions before its outcome arrived: %s",
        task.token_prefix,
        exc,
    )
    metrics.task_ended(task, Cancelled(f"closed before its outcome arrived: {exc}"))


def _past_persistence(times: list[float]) -> bool:
    """Whether an error that does not pass has had its attempts and its window."""
    return (
        len(times) >= PERSISTENT_ERROR_ATTEMPTS and times[-1] - times[0] >= PERSISTENT_ERROR_WINDOW
    )


def _given_up(task: Task, exc: Exception, times: list[float]) -> None:
    """Say that ``task``'s outcome is given up after ``exc``, which did not pass."""
    logger.error(
        "task %s of %s: outcome given up after %d attempts in %.0f s: %s: %s; Step "
        "Functions will end the task at its timeout",
        task.token_prefix,
        task.activity_name,
        len(times),
        times[-1] - times[0],
        type(exc).__name__,
        exception_text(exc),
        extra={"activity": task.activity_name, "token_prefix": task.token_prefix},
    )


def _not_delivered(
    task: Task, exc: Exception, pause: float | None, *, first: bool, quiet: bool = True
) -> None:
    """Log an attempt of ``task``'s outcome that failed with ``exc``; ``None``: given up.

    An error that passes (throttling, a timeout, a 5xx) at DEBUG while ``quiet`` (the
    outcome has been failing for less than :data:`QUIET_RETRIES`), since the pacer and the
    outage watch sum those up, at WARNING after; another service error at WARNING, and an
    error that is not Step Functions' answer at ERROR with its traceback, the first time
    for the task.
    """
    if pause is None:
        what = "giving up delivering its outcome at shutdown"
    else:
        what = f"outcome not delivered; retrying in {pause:.2f} s"
    if not isinstance(exc, ServiceError) and first:
        logger.error("task %s: %s: unexpected error", task.token_prefix, what, exc_info=exc)
    elif pause is None:
        logger.error("task %s: %s: %s", task.token_prefix, what, exception_text(exc))
    else:
        # What passes is summed up: throttling by the pacer, no answer (a timeout, a lost
        # connection, a 5xx) by the outage watch.
        passes = isinstance(exc, ServiceError) and exc.transient
        level = logging.DEBUG if passes and quiet else logging.WARNING
        logger.log(level, "task %s: %s: %s", task.token_prefix, what, exception_text(exc))


class BackgroundDelivery:
    """Outcomes delivered from threads of their own, for the worker's failures of tasks.

    Args:
        client: the client to send with.
        give_up: set at an immediate stop: outcomes get one more attempt at most.
        metrics: what retries are counted in.
    """

    def __init__(
        self, client: ActivityClient, give_up: Flag, *, metrics: Metrics = NO_METRICS
    ) -> None:
        self._client = client
        self._give_up = give_up
        self._metrics = metrics
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []

    def send(self, task: Task, outcome: Outcome, *, sent: bool = False) -> None:
        """Deliver ``outcome`` for ``task`` from a new thread (``sent``: see :func:`deliver`)."""
        thread = threading.Thread(
            target=deliver,
            args=(self._client, task, outcome),
            kwargs={"give_up": self._give_up, "metrics": self._metrics, "sent": sent},
            name="sfn-activities-fail",
            daemon=True,
        )
        with self._lock:
            self._threads.append(thread)
        thread.start()

    def wait(self, timeout: float) -> bool:
        """Wait until every outcome sent is delivered; ``False`` if some were not in time."""
        deadline = time.monotonic() + timeout
        with self._lock:
            threads = list(self._threads)
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        return not any(thread.is_alive() for thread in threads)
