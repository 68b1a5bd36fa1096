"""When a task process is recycled: after so many tasks, above so much memory, or stuck.

A recycled process asks the worker for no new task: the worker closes its slots, those
running finish and are reported, then it exits and the worker starts another in its place
(:mod:`activities.worker._process`).
"""

from __future__ import annotations

import logging
import os
import threading
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["ProcessLife"]

logger = logging.getLogger(__name__)


class ProcessLife:
    """When a task process is to be recycled; shared by its slots, in the process.

    Args:
        name: the process's name, for logs.
        max_tasks: recycle after this many tasks (of all its slots).
        max_memory: recycle when its resident memory is above this many bytes after a task.
        on_recycle: asks the worker for no more tasks; called once, as recycling begins.
    """

    def __init__(
        self,
        name: str,
        max_tasks: int | None,
        max_memory: int | None,
        on_recycle: Callable[[], None] = lambda: None,
    ) -> None:
        self.recycling = threading.Event()
        self._on_recycle = on_recycle
        self.tasks_done = 0
        self._name = name
        self._max_tasks = max_tasks
        self._max_memory = max_memory
        self._lock = threading.Lock()

    def task_done(self) -> bool:
        """A slot finished a task; whether the process is to be recycled (now or before)."""
        with self._lock:
            self.tasks_done += 1
            done = self.tasks_done
        if self.recycling.is_set():
            return True
        if self._max_tasks is not None and done >= self._max_tasks:
            self.recycle(f"{self._name} ran {done} tasks: replacing it")
        elif self._max_memory is not None:
            memory = _own_memory()
            if memory is not None and memory > self._max_memory:
                self.recycle(f"{self._name} uses {memory // 2**20} MiB: replacing it")
        return self.recycling.is_set()

    def recycle(self, why: str = "") -> None:
        """Take no new task; the process exits once its slots have ended. Says ``why``."""
        with self._lock:
            if self.recycling.is_set():
                return
            self.recycling.set()
        if why:
            logger.info("%s", why)
        self._on_recycle()


def _own_memory() -> int | None:
    """This process's resident set size, read from /proc (Linux)."""
    try:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None
