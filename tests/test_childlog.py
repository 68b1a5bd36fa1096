"""How task processes log: in place for a plain configuration, forwarded otherwise."""

from __future__ import annotations

import contextlib
import logging
import pickle
import subprocess
import sys
import textwrap
import threading
from typing import TYPE_CHECKING

import pytest

from activities.worker._childlog import (
    LogPlan,
    PlainFormatter,
    StreamSpec,
    log_levels,
    log_plan,
    one_line,
    start_logging,
)

if TYPE_CHECKING:
    from collections.abc import Iterator


@contextlib.contextmanager
def plain_root() -> Iterator[logging.Logger]:
    """The root logger without handlers (pytest's, which it adds as a test runs, put back)."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    for handler in handlers:
        root.removeHandler(handler)
    try:
        yield root
    finally:
        for handler in root.handlers[:]:
            root.removeHandler(handler)
        for handler in handlers:
            root.addHandler(handler)
        root.setLevel(level)


def test_task_processes_get_the_levels_set_in_the_worker(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Levels set on loggers (and the root's) are what a task process filters with."""
    monkeypatch.setattr(logging.getLogger("tests.noisy"), "level", logging.ERROR)
    monkeypatch.setattr(logging.getLogger(), "level", logging.INFO)
    levels = log_levels()
    assert levels[""] == logging.INFO
    assert levels["tests.noisy"] == logging.ERROR
    assert all(level != logging.NOTSET for level in levels.values())


def test_a_plain_handler_of_standard_error_is_made_again_in_place() -> None:
    """What basicConfig makes: task processes write their own lines, same format and level."""
    handler = logging.StreamHandler(sys.__stderr__)
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    handler.setLevel(logging.INFO)
    with plain_root() as root:
        root.addHandler(handler)
        plan = log_plan()
    assert plan.in_place
    assert plan.handlers is not None
    [spec] = plan.handlers
    assert (spec.stream, spec.level) == ("stderr", logging.INFO)
    assert spec.formatter is not None
    assert spec.formatter._fmt == "%(levelname)s %(message)s"
    assert pickle.loads(pickle.dumps(plan)).handlers[0].stream == "stderr"


def test_no_handler_at_all_is_in_place_too() -> None:
    """Unconfigured logging: task processes fall back on logging's last resort, as we do."""
    with plain_root():
        assert log_plan().handlers == ()


@pytest.mark.parametrize(
    "configure",
    [
        pytest.param(lambda root, path: root.addHandler(logging.FileHandler(path)), id="file"),
        pytest.param(
            lambda root, path: root.addHandler(logging.StreamHandler(sys.__stdin__)),
            id="stream-not-for-output",
        ),
        pytest.param(
            lambda root, path: (
                root.addHandler(logging.StreamHandler(sys.__stderr__)),
                root.addFilter(logging.Filter("activities")),
            ),
            id="root-filter",
        ),
        pytest.param(
            lambda root, path: (
                root.addHandler(logging.StreamHandler(sys.__stderr__)),
                logging.getLogger("tests.own").addHandler(logging.StreamHandler(sys.__stdout__)),
            ),
            id="handler-elsewhere",
        ),
        pytest.param(
            lambda root, path: (
                root.addHandler(logging.StreamHandler(sys.__stderr__)),
                setattr(logging.getLogger("tests.quiet"), "propagate", False),
            ),
            id="no-propagation",
        ),
    ],
)
def test_any_other_configuration_is_forwarded(tmp_path: object, configure: object) -> None:
    """Files, filters, other loggers' handlers: the worker's process handles the records."""
    path = f"{tmp_path}/log.txt"
    with plain_root() as root:
        try:
            configure(root, path)  # type: ignore[operator]
            plan = log_plan()
        finally:
            for name in ("tests.own", "tests.quiet"):
                other = logging.getLogger(name)
                for handler in other.handlers[:]:
                    other.removeHandler(handler)
                other.propagate = True
            root.filters.clear()
            for handler in root.handlers[:]:
                if isinstance(handler, logging.FileHandler):
                    handler.close()
    assert not plan.in_place


def test_pytests_capture_is_forwarded(caplog: pytest.LogCaptureFixture) -> None:
    """A capture handler is no stream a task process can write to: records are forwarded."""
    assert not log_plan().in_place


def test_a_task_process_writes_its_own_lines_in_place() -> None:
    """start_logging with a plan of a plain handler: lines on the process's own stderr."""
    plan = LogPlan(
        levels={"": logging.INFO, "tests.noisy": logging.ERROR},
        handlers=(StreamSpec("stderr", logging.NOTSET, logging.Formatter("<%(message)s>")),),
    )
    script = textwrap.dedent(
        """
        import logging, pickle, sys, threading
        from activities.worker._childlog import start_logging
        plan = pickle.loads(bytes.fromhex(sys.argv[1]))
        start_logging(plan, None, threading.Lock())  # the pipe is not used in place
        logging.getLogger("tests.task").info("task started")
        logging.getLogger("tests.noisy").warning("filtered out")
        logging.getLogger("tests.task").debug("below the level")
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script, pickle.dumps(plan).hex()],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    assert done.stderr == "<task started>\n"


def test_levels_already_set_are_left_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    """Setting a level visits every logger (logging clears their caches): in a forked task
    process that copies their pages out of the shared heap, so only what differs is set."""
    cleared: list[object] = []

    def clear(manager: logging.Manager) -> None:  # bound as a method, unlike list.append
        cleared.append(manager)

    monkeypatch.setattr(logging.Manager, "_clear_cache", clear)
    monkeypatch.setattr(logging.getLogger("tests.same"), "level", logging.WARNING)
    monkeypatch.setattr(logging.getLogger("tests.other"), "level", logging.WARNING)
    conn, lock = object(), threading.Lock()
    with plain_root() as root:
        same = LogPlan(
            levels={"": root.level, "tests.same": logging.WARNING},
            handlers=(),
            disabled=logging.root.manager.disable,
        )
        start_logging(same, conn, lock)  # type: ignore[arg-type]
        assert cleared == []
        differs = LogPlan(
            levels={"tests.other": logging.ERROR},
            handlers=(),
            disabled=logging.root.manager.disable,
        )
        start_logging(differs, conn, lock)  # type: ignore[arg-type]
        assert len(cleared) == 1
    assert logging.getLogger("tests.other").level == logging.ERROR


def test_a_disabled_level_that_differs_is_applied(monkeypatch: pytest.MonkeyPatch) -> None:
    """logging.disable() in the worker holds in its task processes too."""
    monkeypatch.setattr(logging.root.manager, "disable", logging.NOTSET)
    with plain_root():
        start_logging(LogPlan(handlers=(), disabled=logging.INFO), object(), threading.Lock())  # type: ignore[arg-type]
        assert logging.root.manager.disable == logging.INFO
        assert not logging.getLogger("tests.quiet").isEnabledFor(logging.INFO)


def plain_lines(record: logging.LogRecord) -> list[str]:
    """The lines the command's plain format writes for ``record``."""
    return PlainFormatter().format(record).split("\n")


class TestPlainFormatter:
    def test_an_error_name_with_a_newline_stays_on_its_line(self) -> None:
        """An error name made from task input cannot forge a log line."""
        record = logging.makeLogRecord(
            {"msg": "task %s failed with %s", "args": ("AAAA", "X\nFAKE LINE"), "levelno": 20}
        )
        [line] = plain_lines(record)
        assert line.endswith("task AAAA failed with X\\nFAKE LINE")

    @pytest.mark.parametrize(
        ("raw", "escaped"),
        [
            ("\r", "\\r"),
            ("\x1b[2J", "\\x1b[2J"),
            ("\x00", "\\x00"),
            ("\x7f", "\\x7f"),
            ("\x85", "\\x85"),
            ("\x9b", "\\x9b"),
            ("\u2028", "\\u2028"),
            ("\u2029", "\\u2029"),
            ("\t", "\\t"),
        ],
    )
    def test_control_characters_are_escaped(self, raw: str, escaped: str) -> None:
        record = logging.makeLogRecord({"msg": f"a{raw}b"})
        [line] = plain_lines(record)
        assert line.endswith(f"a{escaped}b")
        assert one_line(f"é{raw}😀") == f"é{escaped}😀", "other characters are left alone"

    def test_a_traceback_keeps_its_lines_and_escapes_the_messages_in_it(self) -> None:
        try:
            try:
                raise KeyError("first\nFAKE CAUSE")
            except KeyError as exc:
                error = ValueError("X\nFAKE LINE")
                error.add_note("note\nFAKE NOTE")
                raise error from exc
        except ValueError:
            record = logging.makeLogRecord({"msg": "failed", "exc_info": sys.exc_info()})
        lines = plain_lines(record)
        assert lines[0].endswith("failed")
        assert lines[1] == "Traceback (most recent call last):"
        assert "ValueError: X\\nFAKE LINE" in lines
        assert "note\\nFAKE NOTE" in lines
        assert "KeyError: 'first\\nFAKE CAUSE'" in lines
        assert not [line for line in lines if line.startswith("FAKE")]

    def test_an_exception_type_named_from_input_stays_on_its_line(self) -> None:
        """A class made at run time with a name of the input's: its line is still one line."""
        forged = type("Evil\nFAKE ERROR forged", (Exception,), {"__module__": "m\nFAKE"})
        try:
            raise forged("message")
        except Exception:  # noqa: BLE001 - the class is made above
            record = logging.makeLogRecord({"msg": "failed", "exc_info": sys.exc_info()})
        lines = plain_lines(record)
        assert not [line for line in lines if line.startswith("FAKE")], lines
        assert lines[-1] == "m\\nFAKE.Evil\\nFAKE ERROR forged: message"

    def test_an_exception_whose_str_raises_is_formatted(self) -> None:
        class Unprintable(Exception):
            def __str__(self) -> str:
                return self.missing  # type: ignore[attr-defined, no-any-return]

        try:
            raise Unprintable
        except Unprintable:
            record = logging.makeLogRecord({"msg": "failed", "exc_info": sys.exc_info()})
        assert plain_lines(record)[-1].endswith("Unprintable: <exception str() failed>")

    def test_task_processes_write_with_it_in_place(self) -> None:
        """It pickles, so a task process makes the same handler for itself."""
        handler = logging.StreamHandler(sys.__stderr__)
        handler.setFormatter(PlainFormatter())
        with plain_root() as root:
            root.addHandler(handler)
            plan = log_plan()
        assert plan.handlers is not None
        [spec] = plan.handlers
        assert isinstance(pickle.loads(pickle.dumps(spec)).formatter, PlainFormatter)

    def test_the_command_writes_its_lines_with_it(self) -> None:
        code = (
            "import logging, sys\n"
            "from activities import cli\n"
            "cli.main(['list', 'tests.workloads'])\n"
            "logging.getLogger('tests').warning('failed with %s', 'X\\nFAKE LINE')\n"
        )
        done = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
        )
        [line] = [line for line in done.stderr.splitlines() if "failed with" in line]
        assert line.endswith("WARNING MainProcess tests: failed with X\\nFAKE LINE")
        assert "FAKE LINE" not in done.stderr.replace(line, "")
