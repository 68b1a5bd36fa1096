"""Log lines as JSON: one object per line, the task's fields as fields of their own."""

from __future__ import annotations

import datetime as dt
import io
import json
import logging
import multiprocessing
import os
import pickle
import re
import sys
import time
from typing import TYPE_CHECKING

import attrs
import pytest

from activities.jsonlog import TASK_FIELDS, JsonFormatter
from activities.worker._childlog import _stream_spec

if TYPE_CHECKING:
    from collections.abc import Iterator

#: What every line has, in this order, before the fields a call adds.
FIRST = ["time", "level", "logger", "process", "pid", "message"]

TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")


class Recorder(logging.Handler):
    """Keeps the records it is given, to compare the lines with."""

    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@attrs.define
class Logged:
    """A logger writing JSON lines to a string, and the records it wrote them of."""

    logger: logging.Logger
    stream: io.StringIO
    recorder: Recorder

    def lines(self) -> list[dict[str, object]]:
        return [json.loads(line) for line in self.stream.getvalue().splitlines()]

    def line(self) -> dict[str, object]:
        [line] = self.lines()
        return line


@pytest.fixture
def logged(monkeypatch: pytest.MonkeyPatch) -> Iterator[Logged]:
    """``tests.jsonlog`` at DEBUG, to a StringIO with JsonFormatter; put back as it was."""
    logger = logging.getLogger("tests.jsonlog")
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    recorder = Recorder()
    monkeypatch.setattr(logger, "level", logging.DEBUG)
    monkeypatch.setattr(logger, "propagate", False)
    logger.addHandler(handler)
    logger.addHandler(recorder)
    try:
        yield Logged(logger, stream, recorder)
    finally:
        logger.removeHandler(handler)
        logger.removeHandler(recorder)


def test_a_line_has_the_records_fields(logged: Logged) -> None:
    logged.logger.warning("task %s is %d s late", "AAAAKgAAAAIA", 3)
    line = logged.line()
    assert list(line) == FIRST, "nothing but the standard fields, in order"
    assert line["level"] == "WARNING"
    assert line["logger"] == "tests.jsonlog"
    assert line["process"] == multiprocessing.current_process().name
    assert line["pid"] == os.getpid()
    assert line["message"] == "task AAAAKgAAAAIA is 3 s late", "the arguments are merged in"


@pytest.mark.parametrize("level", [logging.DEBUG, logging.INFO, logging.ERROR, logging.CRITICAL])
def test_the_level_is_the_records_name_of_it(logged: Logged, level: int) -> None:
    logged.logger.log(level, "hello")
    assert logged.line()["level"] == logging.getLevelName(level)


def test_the_task_fields_given_as_extra_are_fields_of_the_line(logged: Logged) -> None:
    fields = {
        "activity": "it-Echo",
        "token_prefix": "AAAAKgAAAAIA",
        "outcome": "failed",
        "error": "Inventory.OutOfStock",
        "duration": 0.004,
    }
    assert set(fields) == set(TASK_FIELDS)
    logged.logger.info("task failed", extra=fields)
    line = logged.line()
    assert list(line) == FIRST + list(fields)
    assert {key: line[key] for key in fields} == fields
    assert isinstance(line["duration"], float), "a number stays a number"


def test_any_other_extra_is_a_field_too_except_private_ones(logged: Logged) -> None:
    logged.logger.info(
        "hi", extra={"attempt": 2, "tags": ["a", "b"], "nested": {"k": None}, "_secret": "x"}
    )
    line = logged.line()
    assert line["attempt"] == 2
    assert line["tags"] == ["a", "b"]
    assert line["nested"] == {"k": None}
    assert "_secret" not in line
    assert set(line) == {*FIRST, "attempt", "tags", "nested"}


def test_a_value_json_cannot_hold_is_written_as_its_repr(logged: Logged) -> None:
    thing = object()
    logged.logger.info("odd", extra={"thing": thing, "inside": {"deep": [thing]}, "when": {3}})
    line = logged.line()
    assert line["thing"] == repr(thing)
    assert line["inside"] == {"deep": [repr(thing)]}, "at any depth"
    assert line["when"] == "{3}"


def test_what_strict_json_cannot_hold_is_its_repr_and_the_line_parses(logged: Logged) -> None:
    """Tuple keys, NaN and a cycle would lose the line or make it invalid JSON."""
    cycle: list[object] = []
    cycle.append(cycle)
    extra = {"counts": {(1, 2): 3}, "duration": float("nan"), "cycle": cycle, "fine": 2}
    logged.logger.info("odd", extra=extra)
    text = logged.stream.getvalue().strip()
    line = json.loads(text, parse_constant=lambda constant: pytest.fail(f"{constant} in {text}"))
    assert line["counts"] == "{(1, 2): 3}"
    assert line["duration"] == "nan"
    assert line["cycle"] == "[[...]]"
    assert line["fine"] == 2
    assert line["message"] == "odd"


def test_an_exception_is_written_with_its_traceback(logged: Logged) -> None:
    def fail() -> None:
        msg = "not a quantity"
        raise ValueError(msg)

    try:
        fail()
    except ValueError:
        logged.logger.exception("run() raised")
    line = logged.line()
    assert line["message"] == "run() raised", "the traceback is not in the message"
    assert line["level"] == "ERROR"
    exception = line["exception"]
    assert isinstance(exception, str)
    assert exception.startswith("Traceback (most recent call last):\n")
    assert "in fail\n" in exception
    assert exception.endswith("ValueError: not a quantity")
    assert "stack" not in line


def test_a_records_formatted_exception_text_is_written_too() -> None:
    """A record made elsewhere may carry its traceback as text only."""
    record = logging.makeLogRecord({"msg": "boom", "exc_text": "Traceback ...\nKeyError: 'x'"})
    line = json.loads(JsonFormatter().format(record))
    assert line["exception"] == "Traceback ...\nKeyError: 'x'"
    assert "exc_text" not in line


def test_no_exception_no_exception_field(logged: Logged) -> None:
    logged.logger.error("no traceback here")
    assert "exception" not in logged.line()


def test_a_stack_asked_for_is_written(logged: Logged) -> None:
    logged.logger.info("where am I", stack_info=True)
    line = logged.line()
    stack = line["stack"]
    assert isinstance(stack, str)
    assert stack.startswith("Stack (most recent call last):\n")
    assert "test_a_stack_asked_for_is_written" in stack
    assert "exception" not in line


def test_the_time_is_the_records_in_utc_with_milliseconds(logged: Logged) -> None:
    logged.logger.info("now")
    written = logged.line()["time"]
    assert isinstance(written, str)
    assert TIME.fullmatch(written), written
    [record] = logged.recorder.records
    created = dt.datetime.fromtimestamp(record.created, dt.UTC)
    expected = created.replace(microsecond=created.microsecond // 1000 * 1000)
    assert dt.datetime.fromisoformat(written.replace("Z", "+00:00")) == expected


@pytest.fixture
def new_york(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The local time zone is New York's for the test (where time.tzset exists)."""
    if not hasattr(time, "tzset"):
        pytest.skip("no time.tzset here")
    monkeypatch.setenv("TZ", "America/New_York")
    time.tzset()
    try:
        yield
    finally:
        monkeypatch.undo()
        time.tzset()


@pytest.mark.usefixtures("new_york")
@pytest.mark.parametrize(
    ("created", "expected"),
    [
        (0.0, "1970-01-01T00:00:00.000Z"),
        (1_700_000_000.123, "2023-11-14T22:13:20.123Z"),
        (1_700_000_000.9999, "2023-11-14T22:13:20.999Z"),
    ],
)
def test_the_time_is_utc_whatever_the_local_time_zone(created: float, expected: str) -> None:
    assert time.localtime(0).tm_hour != 0, "the local time zone is not UTC"
    record = logging.makeLogRecord({"msg": "then", "created": created})
    assert json.loads(JsonFormatter().format(record))["time"] == expected


def test_one_line_per_record_whatever_the_message(logged: Logged) -> None:
    logged.logger.info("first\nsecond\r\nthird")
    try:
        msg = "bad\ninput"
        raise KeyError(msg)
    except KeyError:
        logged.logger.exception("multi\nline")
    logged.logger.info("café ✓")
    text = logged.stream.getvalue()
    assert text.count("\n") == 3, "a newline ends each record, and no other"
    lines = logged.lines()
    assert [line["message"] for line in lines] == [
        "first\nsecond\r\nthird",
        "multi\nline",
        "café ✓",
    ]
    assert "café ✓" in text, "non-ASCII text is written as it is"


@pytest.mark.parametrize("separator", ["\u2028", "\u2029", "\x85", "\x1b", "\x7f", "\x9b"])
def test_unicode_line_separators_and_c1_controls_are_escaped(
    logged: Logged, separator: str
) -> None:
    """A reader that splits lines as Python does (str.splitlines) sees one record too."""
    logged.logger.warning("failed with %s", f"X{separator}FAKE", extra={"error": f"E{separator}"})
    text = logged.stream.getvalue()
    assert separator not in text
    assert len(text.splitlines()) == 1
    line = logged.line()
    assert (line["message"], line["error"]) == (f"failed with X{separator}FAKE", f"E{separator}")


def test_the_formatter_is_picklable_for_task_processes(logged: Logged) -> None:
    logged.logger.info("pickled", extra={"activity": "it-Echo"})
    [record] = logged.recorder.records
    formatter = JsonFormatter()
    copy = pickle.loads(pickle.dumps(formatter))
    assert type(copy) is JsonFormatter
    assert copy.format(record) == formatter.format(record)


def test_a_standard_error_handler_with_it_is_made_again_in_task_processes() -> None:
    """Task processes write their JSON lines in place, as with the plain format."""
    handler = logging.StreamHandler(sys.__stderr__)
    handler.setFormatter(JsonFormatter())
    handler.setLevel(logging.INFO)
    spec = _stream_spec(handler)
    assert spec is not None
    assert (spec.stream, spec.level) == ("stderr", logging.INFO)
    assert type(spec.formatter) is JsonFormatter
    again = pickle.loads(pickle.dumps(spec))
    assert type(again.formatter) is JsonFormatter
