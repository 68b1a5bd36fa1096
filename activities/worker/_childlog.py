"""How task processes log: as the worker's process would, at the least cost.

The worker's process describes its logging configuration once (:func:`log_plan`); each
task process sets itself up from that description (:func:`start_logging`), in one of two
ways:

- **written in place**, for the common configuration (what ``logging.basicConfig`` or the
  ``activities worker`` command makes): the root's only handlers write to the standard
  error or output with a plain formatter, and no other logger has handlers (libraries'
  ``NullHandler`` aside) or filters.
  The task process formats and writes its own lines, with the same handlers, levels and
  formatters, to the same file the worker's process writes to: a line costs the worker's
  process nothing, and lines keep the order they were written in.
- **forwarded**, for any other configuration (a file, syslog, a handler of the user's, a
  filter, pytest's capture): the task process sends its records through its pipe, and the
  worker's process handles them by the user's configuration, as its own.

Either way a task process filters records at the levels the worker's loggers had when it
started.

The command's plain format is :class:`PlainFormatter`: one line per record, whatever the
text in it (an error name made from task input cannot forge a line), then its traceback.
"""

from __future__ import annotations

import logging
import logging.handlers
import pickle
import re
import sys
import traceback
from typing import TYPE_CHECKING, TextIO

import attrs

if TYPE_CHECKING:
    import threading
    from collections.abc import Mapping
    from multiprocessing.connection import Connection
    from types import TracebackType

__all__ = [
    "LOG_FORMAT",
    "LogPlan",
    "PlainFormatter",
    "StreamSpec",
    "log_levels",
    "log_plan",
    "one_line",
    "say_to_stderr",
    "start_logging",
]

#: How the ``activities`` command's lines look: time, level, process, logger, message.
LOG_FORMAT = "%(asctime)s %(levelname)-7s %(processName)s %(name)s: %(message)s"

#: The standard streams a task process can write to in place, by file descriptor.
_STREAMS = {1: "stdout", 2: "stderr"}


_LATIN1 = 0xFF  # the last code point written as \xNN


def _escapes() -> dict[int, str]:
    """How each character that breaks or rewrites a line is written in a log line."""
    named = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
    codes = [*range(0x20), 0x7F, *range(0x80, 0xA0), 0x2028, 0x2029]
    return {
        code: named.get(chr(code), f"\\x{code:02x}" if code <= _LATIN1 else f"\\u{code:04x}")
        for code in codes
    }


#: C0 and C1 control characters, DEL, and the Unicode line and paragraph separators, as
#: escapes: ``\n``, ``\r``, ``\t``, ``\x1b``, ``\u2028``.
_ESCAPES = _escapes()

#: Any character of :data:`_ESCAPES`: a line without one (nearly every line) is kept as
#: it is, at a tenth of the cost of translating it.
_NEEDS_ESCAPE = re.compile("[" + "".join(re.escape(chr(code)) for code in _ESCAPES) + "]")


def one_line(text: str) -> str:
    r"""``text`` with its control characters escaped (``\n``, ``\x1b``): one line, no tricks."""
    return text.translate(_ESCAPES) if _NEEDS_ESCAPE.search(text) else text


class PlainFormatter(logging.Formatter):
    r"""The plain format of the ``activities`` command (:data:`LOG_FORMAT`), one line a record.

    Control characters (newlines, carriage returns, terminal escapes, the Unicode line
    separators) in the line are written as escapes (``\n``, ``\x1b``), so that text from
    task input or user code, such as an error name or an exception's message, cannot
    forge a line or rewrite the terminal. A traceback keeps its lines below; the messages
    and notes of its exceptions are escaped the same way.

    Args:
        fmt: the format of the line.
        datefmt: the format of ``asctime``.
    """

    def __init__(self, fmt: str = LOG_FORMAT, datefmt: str | None = None) -> None:
        super().__init__(fmt, datefmt)

    def formatMessage(self, record: logging.LogRecord) -> str:  # noqa: N802 - logging's name
        """The record's line, its control characters escaped."""
        return one_line(super().formatMessage(record))

    def formatException(  # noqa: N802 - logging's name
        self,
        ei: tuple[type[BaseException], BaseException, TracebackType | None]
        | tuple[None, None, None],
    ) -> str:
        """The traceback, with the messages of its exceptions on one line each."""
        if ei[1] is None:
            return super().formatException(ei)
        exception = traceback.TracebackException(type(ei[1]), ei[1], ei[2], compact=True)
        _escape_messages(exception, set())
        return "".join(exception.format()).removesuffix("\n")


def _escape_type_name(exception: traceback.TracebackException) -> None:
    """Escape the exception's type name, as written on its line, if it needs it (rarely).

    Python 3.13 keeps its parts as ``exc_type_module`` and ``exc_type_qualname`` (its
    ``exc_type`` warns when read); before, the line reads ``exc_type``'s ``__module__`` and
    ``__qualname__``, so a stand-in class with escaped names takes its place (not for a
    ``SyntaxError``, whose line the type's own class decides).
    """
    fields = exception.__dict__
    if "exc_type_qualname" in fields:
        for field in ("exc_type_module", "exc_type_qualname"):
            if isinstance(fields.get(field), str):
                fields[field] = one_line(fields[field])
        return
    kind = exception.__dict__.get("exc_type")
    if not isinstance(kind, type) or issubclass(kind, SyntaxError):
        return
    module, name = str(kind.__module__), kind.__qualname__
    if _NEEDS_ESCAPE.search(module + name):
        stand_in = type("Escaped", (Exception,), {"__module__": one_line(module)})
        stand_in.__qualname__ = one_line(name)
        exception.exc_type = stand_in


def _escape_messages(exception: traceback.TracebackException, seen: set[int]) -> None:
    """Escape the messages and notes of ``exception`` and of those chained to it, in place."""
    if id(exception) in seen:
        return
    seen.add(id(exception))
    message = getattr(exception, "_str", None)  # CPython's; without it, left as it is
    if isinstance(message, str):
        exception._str = one_line(message)  # type: ignore[attr-defined]
    _escape_type_name(exception)
    syntax = getattr(exception, "msg", None)  # a SyntaxError's message
    if isinstance(syntax, str):
        exception.msg = one_line(syntax)
    notes = getattr(exception, "__notes__", None)
    if isinstance(notes, list | tuple):
        exception.__notes__ = [one_line(note) if isinstance(note, str) else note for note in notes]
    group = getattr(exception, "exceptions", None) or ()  # an ExceptionGroup's
    chained = [exception.__cause__, exception.__context__, *group]
    for other in chained:
        if other is not None:
            _escape_messages(other, seen)


@attrs.frozen
class StreamSpec:
    """A handler of the worker's root logger that a task process can make for itself.

    Attributes:
        stream: ``"stderr"`` or ``"stdout"``.
        level: the handler's level.
        formatter: the handler's formatter (``None``: logging's default).
    """

    stream: str
    level: int
    formatter: logging.Formatter | None


@attrs.frozen
class LogPlan:
    """How a task process logs; made by :func:`log_plan` in the worker's process.

    Attributes:
        levels: the levels set on the worker's loggers, by name (``""``: the root).
        handlers: the root's handlers, to be made again in the task process; ``None``
            when records are forwarded to the worker's process instead.
        disabled: the level of :func:`logging.disable` in the worker's process.
    """

    levels: Mapping[str, int] = attrs.field(factory=dict)
    handlers: tuple[StreamSpec, ...] | None = None
    disabled: int = logging.NOTSET

    @property
    def in_place(self) -> bool:
        """Whether task processes write their own lines."""
        return self.handlers is not None


def log_plan() -> LogPlan:
    """How task processes started now are to log, by this process's configuration."""
    return LogPlan(
        levels=log_levels(), handlers=_replicable_handlers(), disabled=logging.root.manager.disable
    )


def log_levels() -> dict[str, int]:
    """The levels set on this process's loggers, by name (``""`` for the root)."""
    levels = {"": logging.getLogger().level}
    for logger_name, known in logging.root.manager.loggerDict.items():
        if isinstance(known, logging.Logger) and known.level != logging.NOTSET:
            levels[logger_name] = known.level
    return levels


def _replicable_handlers() -> tuple[StreamSpec, ...] | None:
    """The root's handlers as a task process can make them, if it can make them all."""
    root = logging.getLogger()
    if root.filters:
        return None
    for known in logging.root.manager.loggerDict.values():
        if isinstance(known, logging.Logger) and (
            any(type(handler) is not logging.NullHandler for handler in known.handlers)
            or known.filters
            or not known.propagate
            or known.disabled
        ):
            return None
    specs = []
    for handler in root.handlers:
        spec = _stream_spec(handler)
        if spec is None:
            return None
        specs.append(spec)
    return tuple(specs)


def _stream_spec(handler: logging.Handler) -> StreamSpec | None:
    """``handler`` as a task process can make it: a plain handler of a standard stream."""
    if type(handler) is not logging.StreamHandler or handler.filters:
        return None
    stream = handler.stream
    if stream not in (sys.stderr, sys.stdout, sys.__stderr__, sys.__stdout__):
        return None
    try:
        name = _STREAMS.get(stream.fileno())
    except (AttributeError, OSError, ValueError):
        return None  # not a file (a capture of the stream): nothing to write to in place
    formatter = handler.formatter
    if name is None or not _picklable(formatter):
        return None
    return StreamSpec(stream=name, level=handler.level, formatter=formatter)


def _picklable(value: object) -> bool:
    try:
        pickle.dumps(value)
    except Exception:  # noqa: BLE001 - whatever pickling raises
        return False
    return True


def start_logging(plan: LogPlan, conn: Connection, lock: threading.Lock) -> None:
    """Set this task process's logging up by ``plan``.

    ``conn`` is the pipe to the worker's process (records go through it unless they are
    written in place); ``lock`` guards it, as the process sends other messages on it.
    """
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    if plan.handlers is None:
        root.addHandler(logging.handlers.QueueHandler(_PipeQueue(conn, lock)))  # type: ignore[arg-type]
    else:
        for spec in plan.handlers:
            stream: TextIO = getattr(sys, spec.stream)
            handler = logging.StreamHandler(stream)
            handler.setLevel(spec.level)
            handler.setFormatter(spec.formatter)
            root.addHandler(handler)
    # Only what differs: setting a level, or the disabled level, visits every logger of the
    # process (to clear its cache), which copies the pages of all of them out of the heap
    # a forked process shares.
    for logger_name, level in plan.levels.items():
        logger = logging.getLogger(logger_name or None)
        if logger.level != level:
            logger.setLevel(level)
    if logging.root.manager.disable != plan.disabled:
        logging.disable(plan.disabled)


def say_to_stderr(plan: LogPlan, logger: logging.Logger, level: int, message: str) -> None:
    """Log ``message`` where it cannot be lost when the worker's process is gone.

    Written in place, it goes through this process's handlers as any line; forwarded, the
    worker's process would be the one to write it, so it is written to this process's
    standard error instead, in the command's format (or the first of the plan's).
    """
    if not logger.isEnabledFor(level):
        return
    record = logger.makeRecord(logger.name, level, __file__, 0, message, (), None)
    if plan.in_place:
        logger.handle(record)
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(PlainFormatter())
    handler.handle(record)
    handler.flush()


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
