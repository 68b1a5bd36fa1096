"""Delivering outcomes and heartbeats for the worker, retried until the task is known gone."""

from __future__ import annotations

import concurrent.futures
import logging
import random
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING

from activities.errors import InvalidOutput, SerializationError, ServiceError, TaskGone
from activities.outcome import Failure, Success, failure_from_exception

if TYPE_CHECKING:
    from collections.abc import Callable

    from activities.client import ActivityClient
    from activities.outcome import Outcome
    from activities.task import Task

__all__ = ["Delivery"]

logger = logging.getLogger(__name__)

#: First pause, in seconds, before retrying an outcome that could not be delivered.
RETRY_BASE = 0.5

#: Longest pause, in seconds, between retries of an outcome.
RETRY_CAP = 30.0


def backoff(attempt: int, base: float = RETRY_BASE, cap: float = RETRY_CAP) -> float:
    """Exponential backoff with full jitter: a random pause up to ``base * 2**attempt``."""
    return random.uniform(0, min(cap, base * 2**attempt))  # noqa: S311 - jitter, not crypto


class Delivery:
    """Sends task outcomes and heartbeats from a few threads.

    An outcome is retried, with exponential backoff and jitter, until Step Functions takes
    it or says the task is gone; botocore's own retries come first. Only :meth:`abandon`
    (an immediate shutdown) gives up on the outcomes still pending.

    Args:
        client: the client to send with.
        threads: how many sends may be in flight at once.
    """

    def __init__(self, client: ActivityClient, *, threads: int) -> None:
        self._client = client
        self._executor = ThreadPoolExecutor(threads, thread_name_prefix="sfn-activities-send")
        # Heartbeats have threads of their own: outcomes waiting out a backoff must not
        # hold up the heartbeats that keep running tasks alive.
        self._heartbeats = ThreadPoolExecutor(
            threads, thread_name_prefix="sfn-activities-heartbeat"
        )
        self._abandoned = threading.Event()
        self._closed = False
        self._lock = threading.Lock()
        self._pending: set[Future[None]] = set()

    def send_outcome(self, task: Task, outcome: Outcome) -> None:
        """Deliver ``outcome`` for ``task`` in the background; a Cancelled sends nothing."""
        if isinstance(outcome, Success | Failure):
            self._submit(self._deliver, task, outcome)

    def send_heartbeat(self, task: Task, on_gone: Callable[[TaskGone], None]) -> Future[None]:
        """Send one heartbeat for ``task``; call ``on_gone`` if the task is gone."""
        return self._submit(self._heartbeat, task, on_gone, executor=self._heartbeats)

    def drain(self, timeout: float | None) -> bool:
        """Wait until every pending send is done; ``False`` if some were still pending."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            with self._lock:
                pending = set(self._pending)
            if not pending:
                return True
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                return False
            concurrent.futures.wait(pending, timeout=remaining)

    def abandon(self) -> None:
        """Stop retrying: pending outcomes get one more attempt at most."""
        self._abandoned.set()

    def close(self, *, wait: bool = True) -> None:
        """Stop the send threads once what is pending is done (waiting for it if ``wait``)."""
        self._closed = True
        self._executor.shutdown(wait=wait, cancel_futures=False)
        self._heartbeats.shutdown(wait=wait, cancel_futures=False)

    def _submit(
        self,
        function: Callable[..., None],
        *args: object,
        executor: ThreadPoolExecutor | None = None,
    ) -> Future[None]:
        if self._closed:
            # The worker has stopped: what a straggling thread asks for now is dropped.
            logger.debug("delivery closed: %s dropped", getattr(function, "__name__", function))
            dropped: Future[None] = Future()
            dropped.set_result(None)
            return dropped
        future = (executor or self._executor).submit(function, *args)
        with self._lock:
            self._pending.add(future)
        future.add_done_callback(self._forget)
        return future

    def _forget(self, future: Future[None]) -> None:
        with self._lock:
            self._pending.discard(future)

    def _deliver(self, task: Task, outcome: Success | Failure) -> None:
        attempt = 0
        while True:
            try:
                self._client.send_outcome(task.token, outcome)
            except TaskGone as exc:
                logger.warning(
                    "task %s was closed by Step Functions before its outcome arrived: %s",
                    task.token_prefix,
                    exc,
                )
                return
            except InvalidOutput as exc:
                if not isinstance(outcome, Success):
                    logger.error("task %s: failure refused: %s", task.token_prefix, exc)  # noqa: TRY400 - the refusal says it all
                    return
                outcome = failure_from_exception(
                    SerializationError(f"Step Functions refused the output: {exc}")
                )
                continue
            except ServiceError as exc:
                if self._abandoned.is_set():
                    logger.error(  # noqa: TRY400 - a known service error, no traceback needed
                        "task %s: giving up delivering its outcome at shutdown: %s",
                        task.token_prefix,
                        exc,
                    )
                    return
                pause = backoff(attempt)
                logger.warning(
                    "task %s: outcome not delivered (%s); retrying in %.1f s",
                    task.token_prefix,
                    exc,
                    pause,
                )
                attempt += 1
                self._abandoned.wait(pause)
                continue
            return

    def _heartbeat(self, task: Task, on_gone: Callable[[TaskGone], None]) -> None:
        try:
            self._client.send_heartbeat(task.token)
        except TaskGone as exc:
            on_gone(exc)
        except ServiceError as exc:
            logger.warning("heartbeat for task %s failed: %s", task.token_prefix, exc)
