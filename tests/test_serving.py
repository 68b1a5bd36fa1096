"""What every place that runs a task does around it; here the shutdown grace's watch."""

from __future__ import annotations

import threading

from activities.worker._control import Control
from activities.worker._pool import thread_context
from activities.worker._serving import GraceWatch


class Server:
    """Runs tasks in a process; says when the grace's end failed them."""

    def __init__(self) -> None:
        self.failed = threading.Event()

    def at_grace(self) -> None:
        self.failed.set()


class TestGraceWatch:
    def test_a_server_forgotten_is_not_failed_at_the_grace_end(self) -> None:
        """Only the servers still added are told the grace ended."""
        control = Control(thread_context(), ["arn:a"], slots=2)
        grace = GraceWatch(control)
        kept, ended = Server(), Server()
        grace.add(ended)  # told first, were it still there
        grace.add(kept)
        grace.forget(ended)
        grace.forget(ended)  # twice: nothing more happens
        control.past_deadline.set()
        assert kept.failed.wait(10)
        assert not ended.failed.is_set()
