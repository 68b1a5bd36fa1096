"""Delivering a task's outcome, retried until Step Functions takes it or says it is gone."""

from __future__ import annotations

import logging
import threading
import time
from typing import TYPE_CHECKING

from activities._metrics import NO_METRICS
from activities.errors import InvalidOutput, ServiceError, TaskGone, Throttled
from activities.outcome import Cancelled, Failure, Success, refused_output

if TYPE_CHECKING:
    from activities._control import Flag
    from activities._metrics import Metrics
    from activities.client import ActivityClient
    from activities.outcome import Outcome
    from activities.task import Task

__all__ = ["BackgroundDelivery", "deliver"]

logger = logging.getLogger(__name__)


def deliver(
    client: ActivityClient,
    task: Task,
    outcome: Outcome,
    *,
    give_up: Flag,
    metrics: Metrics = NO_METRICS,
) -> bool:
    """Send ``outcome`` for ``task``; ``True`` once Step Functions has taken it.

    Retried with the client's policy (:class:`~activities.RetryPolicy`: exponential
    backoff with full jitter, and pacing while throttled) until it is taken, Step
    Functions says the task is gone, or ``give_up`` is set (an immediate stop): then it
    gets one more attempt at most. Throttled attempts are logged at DEBUG (the client's
    pacer warns of throttling as a whole), other failures at WARNING. An output Step
    Functions refuses becomes an ``activities.SerializationError`` failure, so the task
    never hangs until its timeout. A :class:`~activities.Cancelled` sends nothing.
    ``metrics`` counts each retry, and the outcome Step Functions took (a
    :class:`~activities.Cancelled` when it said the task was gone).
    """
    if not isinstance(outcome, Success | Failure):
        return False
    attempt = 0
    unanswered = False  # an earlier attempt was sent but got no answer
    while True:
        try:
            client.send_outcome(task.token, outcome, attempts=1)
        except TaskGone as exc:
            if unanswered or exc.earlier_may_have_landed:
                # Not news that the outcome was lost: an attempt before may have landed.
                logger.warning(
                    "task %s is no longer known to Step Functions (%s): an earlier attempt "
                    "of its outcome, unanswered or retried, may have delivered it",
                    task.token_prefix,
                    exc,
                )
                metrics.task_ended(task, outcome)
                return False
            logger.warning(
                "task %s was closed by Step Functions before its outcome arrived: %s",
                task.token_prefix,
                exc,
            )
            metrics.task_ended(task, Cancelled(f"closed before its outcome arrived: {exc}"))
            return False
        except InvalidOutput as exc:
            if not isinstance(outcome, Success):
                logger.error("task %s: failure refused: %s", task.token_prefix, exc)  # noqa: TRY400 - the refusal says it all
                return False
            outcome = refused_output(exc)
            continue
        except ServiceError as exc:
            if give_up.is_set():
                logger.error(  # noqa: TRY400 - a known service error, no traceback needed
                    "task %s: giving up delivering its outcome at shutdown: %s",
                    task.token_prefix,
                    exc,
                )
                return False
            attempt += 1
            pause = client.retry.pause(attempt)
            logger.log(
                logging.DEBUG if isinstance(exc, Throttled) else logging.WARNING,
                "task %s: outcome not delivered (%s); retrying in %.2f s",
                task.token_prefix,
                exc,
                pause,
            )
            unanswered = unanswered or exc.unanswered
            metrics.delivery_retried(task)
            give_up.wait(pause)
            continue
        metrics.task_ended(task, outcome)
        return True


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

    def send(self, task: Task, outcome: Outcome) -> None:
        """Deliver ``outcome`` for ``task`` from a new thread."""
        thread = threading.Thread(
            target=deliver,
            args=(self._client, task, outcome),
            kwargs={"give_up": self._give_up, "metrics": self._metrics},
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
