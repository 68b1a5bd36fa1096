"""Log lines as JSON objects, one per line, for log pipelines (``--log-format json``).

::

    {"time": "2026-12-01T19:52:03.114Z", "level": "INFO", "logger": "activities.task",
     "process": "sfn-activities-process-1", "pid": 4242,
     "message": "task AAAAKgAAAAIA succeeded: Echo in 0.004 s",
     "activity": "Echo", "token_prefix": "AAAAKgAAAAIA", "outcome": "succeeded",
     "duration": 0.004}

The worker's lines about a task carry its fields (:data:`TASK_FIELDS`) as ``extra``;
:class:`JsonFormatter` writes them, and any other ``extra`` that JSON can hold, as
fields of their own. It holds no state, so task processes write their lines in place
with it, as with the plain format.
"""

from __future__ import annotations

import datetime as dt
import json
import logging

__all__ = ["TASK_FIELDS", "JsonFormatter"]

#: The fields of a line about one task, where they apply, in this order. The activity's
#: name in Step Functions (its task list), the start of the task token, ``succeeded``,
#: ``failed`` or ``cancelled``, the Step Functions error name of a failure, and the
#: seconds the task ran.
TASK_FIELDS = ("activity", "token_prefix", "outcome", "error", "duration")

#: What JSON leaves raw inside a string (it escapes C0 controls itself) but a reader of
#: lines may break a line at or a terminal obey: DEL, the C1 controls (NEL among them) and
#: the Unicode line and paragraph separators. Written as ``\uXXXX`` escapes.
_UNSAFE = {code: f"\\u{code:04x}" for code in (0x7F, *range(0x80, 0xA0), 0x2028, 0x2029)}

#: What every record has: not written as fields of their own.
_STANDARD = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}


class JsonFormatter(logging.Formatter):
    """Format a record as one line of JSON: time, level, logger, process, message, fields.

    ``time`` is UTC, ISO 8601 with milliseconds; ``exception`` and ``stack`` hold a
    traceback when the record has one. Fields a call adds with ``extra=`` follow; a value
    strict JSON cannot hold (an object, a dict with tuple keys, NaN) is written as its
    ``repr()``, so that a line is never lost and always parses. Control characters and
    the Unicode line separators are escaped: a record is one line, whatever its text.
    """

    def format(self, record: logging.LogRecord) -> str:
        """The record as one line of JSON."""
        line: dict[str, object] = {
            "time": _utc(record.created),
            "level": record.levelname,
            "logger": record.name,
            "process": record.processName,
            "pid": record.process,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                line[key] = value
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            line["exception"] = record.exc_text
        if record.stack_info:
            line["stack"] = self.formatStack(record.stack_info)
        try:
            text = json.dumps(line, default=repr, ensure_ascii=False, allow_nan=False)
        except (TypeError, ValueError):  # keys JSON cannot hold, NaN, a cycle
            line = {key: _strict(field) for key, field in line.items()}
            text = json.dumps(line, default=repr, ensure_ascii=False, allow_nan=False)
        return text.translate(_UNSAFE)  # only ever inside a string, where \uXXXX is valid


def _strict(value: object) -> object:
    """``value`` if strict JSON can hold it, else its ``repr()``."""
    try:
        json.dumps(value, default=repr, allow_nan=False)
    except (TypeError, ValueError):
        return repr(value)
    return value


def _utc(created: float) -> str:
    moment = dt.datetime.fromtimestamp(created, dt.UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")
