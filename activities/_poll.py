"""One long poll for a slot or an async position, and what a failed poll means.

:func:`poll_once` claims the poll in the worker's shared :class:`~activities._control.Control`
(so that the hand-off sees it), holds the task it brings in the slot's
:class:`~activities._slotstate.SlotState`, or gives it to the worker's buffer when the slot
was handed a task meanwhile; :func:`task_lists_of` says which task lists slots and async
positions poll. :func:`poll_failed` pauses a task list after an error, with
the retry policy's backoff; the worker's own coverage polls use it too.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from activities.errors import ActivityDoesNotExist, ServiceError, Throttled

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from activities._activity import Activity
    from activities._control import Control
    from activities._metrics import Metrics
    from activities._retry import RetryPolicy
    from activities._slotstate import SlotState
    from activities.client import ActivityClient
    from activities.task import Task

__all__ = ["poll_failed", "poll_once", "task_lists_of"]

logger = logging.getLogger(__name__)


def poll_once(
    client: ActivityClient,
    control: Control,
    state: SlotState,
    position: int,
    index: int,
    *,
    metrics: Metrics,
    overflow: Callable[[Task, int], None],
) -> Task | None:
    """Long-poll task list ``index`` once for the free slot (or async position) ``position``.

    The task it brings is held in ``state`` and returned, to run at once; ``None`` when
    the poll brought none, failed (its task list pauses), or could not start (stopping,
    the slot was handed a task meanwhile). A task brought while the slot was handed one
    goes to ``overflow`` (the worker's buffer), with ``position``: on its way, it counts
    in ``control`` (see :meth:`~activities._control.Control.overflowed`).
    """
    with control.poll_permit() as permitted:
        if not permitted or not state.claim_poll(index):
            return None
        arn = control.arns[index]
        try:
            task = client.poll(arn, keep_trying=control.stopping.is_unset)
        except Exception as exc:  # noqa: BLE001 - polling never ends on an error
            control.done_polling(position)
            metrics.polled(arn, "error")
            poll_failed(control, index, exc, client.retry)
            return None
        try:
            metrics.polled(arn, "empty" if task is None else "task")
            if task is None:
                control.poll_succeeded(index)
                return None
            control.mark_busy(index)
            if state.try_hold(task.activity_arn, task.token, index):
                return task  # it runs at once, in the thread that polled: no thread switch
            control.overflowed(position)  # handed a task from the buffer meanwhile
            overflow(task, position)
            return None
        finally:
            control.done_polling(position)


def poll_failed(
    control: Control, index: int, exc: BaseException, retry: RetryPolicy, *, log: bool = True
) -> None:
    """Pause the polls of task list ``index`` after ``exc``, with ``retry``'s backoff; say so.

    Throttling is logged at DEBUG (the client's pacer warns of it as a whole), what else
    passes (service and network errors) at WARNING, the rest at ERROR. Never raises, and
    never leaves the task list unpaused: a loop that polled again at once would spend the
    account's ``GetActivityTask`` quota in a few seconds.
    """
    name = control.arns[index].rpartition(":")[2]
    try:
        errors = control.poll_failed(index)
        # An error that passes was retried in place already, and the pacer slows a throttled
        # operation: a short pause. One that stays (a missing activity, a denied permission)
        # starts where the in-place attempts would have ended, so as not to poll every few ms.
        transient = isinstance(exc, ServiceError) and exc.transient
        pause = retry.pause(errors if transient else errors + retry.attempts - 1)
    except Exception:
        pause = retry.cap
        logger.exception(
            "polling %s: no backoff for its error; its next poll in %.1f s", name, pause
        )
    control.pause(index, pause)
    if not log:
        return
    if isinstance(exc, Throttled):
        logger.debug("polling %s throttled (%s); its next poll in %.2f s", name, exc, pause)
    elif isinstance(exc, ActivityDoesNotExist):
        logger.error("polling %s failed: %s; its next poll in %.1f s", name, exc, pause)
    elif isinstance(exc, ServiceError):
        logger.warning("polling %s failed: %s; its next poll in %.1f s", name, exc, pause)
    else:
        logger.error("polling %s failed; its next poll in %.1f s", name, pause, exc_info=exc)


def task_lists_of(
    control: Control, by_arn: Mapping[str, type[Activity]], *, asynchronous: bool
) -> tuple[int, ...]:
    """The task lists (indices in ``control``) of the async activities, or of the sync ones.

    Where a process has async positions, they poll the first, its slots the second.
    """
    return tuple(
        index for index, arn in enumerate(control.arns) if by_arn[arn]._is_async() == asynchronous
    )
