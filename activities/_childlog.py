"""Log records of a task process, handled by the worker's process as its own.

A task process sends its records to the worker's process through its pipe, filtered at
the levels the worker's loggers had when it started (:func:`log_levels`); the worker's
process handles them by the user's logging configuration.
"""

from __future__ import annotations

import logging
import logging.handlers
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import threading
    from collections.abc import Mapping
    from multiprocessing.connection import Connection

__all__ = ["forward_logs", "log_levels"]


class _PipeQueue:
    """Where a child's :class:`logging.handlers.QueueHandler` puts records: the parent's pipe."""

    def __init__(self, conn: Connection, lock: threading.Lock) -> None:
        self._conn = conn
        self._lock = lock

    def put_nowait(self, record: logging.LogRecord) -> None:
        try:
            with self._lock:
                self._conn.send(("log", record))
        except (OSError, ValueError):
            # The worker's process is gone: say it where it can still be read.
            last = logging.lastResort
            if last is not None and record.levelno >= last.level:
                last.handle(record)


def forward_logs(conn: Connection, lock: threading.Lock, levels: Mapping[str, int]) -> None:
    """Send this process's log records to the parent through ``conn``, at its levels.

    ``lock`` guards ``conn``, which the process also sends other messages on.
    """
    queue = _PipeQueue(conn, lock)
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    root.addHandler(logging.handlers.QueueHandler(queue))  # type: ignore[arg-type]
    for logger_name, level in levels.items():
        logging.getLogger(logger_name or None).setLevel(level)


def log_levels() -> dict[str, int]:
    """The levels set on this process's loggers, by name (``""`` for the root)."""
    levels = {"": logging.getLogger().level}
    for logger_name, known in logging.root.manager.loggerDict.items():
        if isinstance(known, logging.Logger) and known.level != logging.NOTSET:
            levels[logger_name] = known.level
    return levels
