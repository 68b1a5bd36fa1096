"""The tutorial's code works as written: docs/tutorial.md cannot drift from the code.

Its fenced blocks are read with these conventions:

- Every ```` ```python ```` block runs, in the order of the page, in one namespace (a
  block may use what an earlier one defined), in a temporary directory that is the
  current one and first on ``sys.path``. A function named ``test_*`` that a block defines
  is called.
- An HTML comment on the line before a block marks it (it shows on neither GitHub nor
  the built docs): ``<!-- tutorial: file=NAME.py -->`` means the reader saves the block
  as ``NAME.py``: it is written there and imported as a module, not run in the namespace.
  ``endpoint`` (``<!-- tutorial: file=start_echo.py endpoint -->``) means the block needs
  a Step Functions and a worker: only the end-to-end test runs it. ``skip`` means it is
  not run at all. ``worker-log`` marks a block of lines the worker logs. ``install``
  marks the install session: it runs as written, in a directory beside a checkout named
  ``sfn-activities``, as the tutorial says.
- ```` ```console ```` blocks are terminal sessions: ``$ COMMAND`` lines, each followed
  by what it prints. The end-to-end test runs ``activities local``, the ``activities
  worker`` command and ``python3 FILE`` of each ``endpoint`` file as shown, and compares
  what they print with what is shown (times, ports, ids and counts aside).
"""

from __future__ import annotations

import importlib
import importlib.metadata
import os
import re
import shlex
import signal
import subprocess
import sys
import threading
import types
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from activities._cli.arguments import command_line
from activities.local import LocalStepFunctions, free_port
from tests.processes import ROOT
from tests.waiting import wait_until

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

TUTORIAL = ROOT / "docs" / "tutorial.md"

#: The marks a block may carry, besides ``file=NAME``.
FLAGS = {"endpoint", "install", "skip", "worker-log"}

_BLOCK = re.compile(
    r"(?:^<!--\s*tutorial:(?P<marks>[^>]*?)-->[ \t]*\n(?:[ \t]*\n)*)?"
    r"^```(?P<info>[^\n`]*)\n(?P<body>.*?)^```[ \t]*$",
    re.MULTILINE | re.DOTALL,
)


@dataclass
class Block:
    """A fenced block of the tutorial and the marks before it."""

    info: str
    body: str
    line: int
    flags: set[str] = field(default_factory=set)
    file: str | None = None

    @property
    def where(self) -> str:
        """The block's place, for messages and tracebacks."""
        return f"docs/tutorial.md:{self.line}"


def blocks() -> list[Block]:
    """The fenced blocks of the tutorial, in order."""
    text = TUTORIAL.read_text()
    found = []
    for match in _BLOCK.finditer(text):
        block = Block(
            info=match["info"].strip(),
            body=match["body"],
            line=text.count("\n", 0, match.start("info")) + 1,
        )
        for mark in (match["marks"] or "").split():
            key, _, value = mark.partition("=")
            if key == "file" and value:
                block.file = value
            elif mark in FLAGS:
                block.flags.add(mark)
            else:
                pytest.fail(f"{block.where}: unknown mark {mark!r}")
        found.append(block)
    return found


def python_blocks() -> list[Block]:
    """The Python blocks that are not marked ``skip``."""
    return [b for b in blocks() if b.info == "python" and "skip" not in b.flags]


def sessions() -> list[tuple[str, list[str]]]:
    """Every ``$ COMMAND`` of the console blocks, with the lines shown after it."""
    found: list[tuple[str, list[str]]] = []
    for block in blocks():
        if block.info != "console":
            continue
        for line in block.body.splitlines():
            if line.startswith("$ "):
                found.append((line[2:], []))
            elif found:
                found[-1][1].append(line)
    return found


def shown(command: str) -> list[str]:
    """What the tutorial shows ``command`` printing; fails if it shows no such command."""
    for seen, output in sessions():
        if seen == command:
            return output
    pytest.fail(f"docs/tutorial.md runs no `$ {command}`")


def normalize(line: str) -> str:
    """A log or output line without what differs between runs: times, ids, ports, counts."""
    line = re.sub(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}", "TIME", line)
    line = re.sub(r"\bworker \S+-\d+ serving\b", "worker NAME serving", line)
    line = re.sub(r"\btask [0-9a-f]{8}-[0-9a-f]{3}\b", "task ID", line)
    return re.sub(r"\d+(\.\d+)?", "N", line).rstrip()


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """The reader's directory: current, first on sys.path; its modules forgotten after."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    before = set(sys.modules)
    yield tmp_path
    for name in set(sys.modules) - before:
        module_file = getattr(sys.modules[name], "__file__", None) or ""
        if module_file.startswith(str(tmp_path)):
            del sys.modules[name]


class TestBlocks:
    def test_the_conventions_find_the_blocks(self) -> None:
        """The files the reader saves are found, and the end-to-end has a block to run."""
        files = {b.file for b in python_blocks() if b.file}
        assert {"echo_tutorial.py", "start_echo.py", "test_echo_tutorial.py"} <= files
        assert any("endpoint" in b.flags for b in python_blocks())
        assert len(python_blocks()) >= 6

    def test_python_blocks_run(self, workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        """Each block runs after the ones before it; the tests it defines pass."""
        module = types.ModuleType("tutorial")  # a module, as a reader's code would be in
        monkeypatch.setitem(sys.modules, module.__name__, module)
        namespace = vars(module)
        ran = 0
        for block in python_blocks():
            code = compile(block.body, block.where, "exec", dont_inherit=True)  # all parse
            if block.file:
                (workdir / block.file).write_text(block.body)
            if "endpoint" in block.flags:
                continue
            defined: dict[str, Any]
            if block.file:
                module = importlib.import_module(Path(block.file).stem)
                defined = vars(module)
            else:
                before = dict(namespace)
                exec(code, namespace)  # noqa: S102 - the tutorial's own code
                defined = {k: v for k, v in namespace.items() if before.get(k) is not v}
            for name, value in defined.items():
                if name.startswith("test_") and callable(value):
                    value()
            ran += 1
        assert ran >= 5

    def test_the_endpoint_snippet_needs_no_more_than_the_exports(self) -> None:
        """It reads the endpoint from the environment: it names no URL, port or key."""
        for block in python_blocks():
            if "endpoint" in block.flags:
                assert "127.0.0.1" not in block.body, block.where
                assert "endpoint_url" not in block.body, block.where


def test_the_install_works_where_the_tutorial_stands(tmp_path: Path) -> None:
    """Its commands, run as written beside the checkout, install a working ``activities``.

    A new directory has no checkout in it: ``pip install .`` there fails, which is what
    a reader met before the tutorial installed the checkout by its path.
    """
    (block,) = [b for b in blocks() if "install" in b.flags]
    script = "\n".join(line[2:] for line in block.body.splitlines() if line.startswith("$ "))
    (tmp_path / "sfn-activities").symlink_to(ROOT, target_is_directory=True)
    env = {k: v for k, v in os.environ.items() if k not in {"VIRTUAL_ENV", "PYTHONPATH"}}
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    ran = subprocess.run(
        ["bash", "-e", "-c", script],  # noqa: S607 - the reader's shell
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert ran.returncode == 0, f"{block.where}:\n{ran.stdout}\n{ran.stderr}"
    # What `activities --help` says: the command of this checkout, installed.
    assert command_line().format_usage() in ran.stdout
    venv = tmp_path / "echo-tutorial" / ".venv"
    installed = subprocess.run(
        [venv / "bin" / "python", "-c", "import activities; print(activities.__version__)"],
        cwd=tmp_path / "echo-tutorial",
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert installed.stdout.strip() == importlib.metadata.version("sfn-activities")


class _Output:
    """Every line a process prints (stdout and stderr), read as it comes."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.lines: list[str] = []
        self._thread = threading.Thread(target=self._read, args=(process,), daemon=True)
        self._thread.start()

    def _read(self, process: subprocess.Popen[str]) -> None:
        assert process.stdout is not None
        for line in process.stdout:
            self.lines.append(line.rstrip("\n"))

    def has(self, predicate: Callable[[str], bool]) -> Callable[[], bool]:
        return lambda: any(predicate(line) for line in self.lines)

    def __str__(self) -> str:
        return "\n".join(self.lines)


def _command(line: str) -> list[str]:
    """A tutorial command line as this interpreter's environment runs it."""
    words = shlex.split(line)
    if words[0] == "activities":
        script = Path(sys.executable).with_name("activities")
        return [str(script), *words[1:]] if script.exists() else [sys.executable, "-m", *words]
    if words[0] == "python3":
        return [sys.executable, *words[1:]]
    pytest.fail(f"the test does not know how to run `{line}`")


def _stop(process: subprocess.Popen[str], *signals: tuple[signal.Signals, float]) -> None:
    """Send each signal to the process's group and wait as long as said; SIGKILL at last."""
    for signum, seconds in (*signals, (signal.SIGKILL, 10)):
        if process.poll() is not None:
            break
        os.killpg(process.pid, signum)
        try:
            process.wait(seconds)
        except subprocess.TimeoutExpired:
            continue
    process.wait()


@pytest.mark.integration
def test_end_to_end_as_the_tutorial_says(tmp_path: Path) -> None:
    """activities local, the worker and the snippet, run as shown, print what is shown."""
    for block in python_blocks():
        if block.file:
            (tmp_path / block.file).write_text(block.body)
    clean = {k: v for k, v in os.environ.items() if not k.startswith("AWS_") and k != "PYTHONPATH"}
    local_lines = shown("activities local")
    (worker_line,) = [c for c, _ in sessions() if c.startswith("activities worker ")]
    snippets = [b.file for b in python_blocks() if "endpoint" in b.flags and b.file]
    processes: list[subprocess.Popen[str]] = []

    def launch(command: str, env: dict[str, str]) -> tuple[subprocess.Popen[str], _Output]:
        process = subprocess.Popen(
            _command(command),
            cwd=tmp_path,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        processes.append(process)
        return process, _Output(process)

    try:
        # Terminal 1. A fixed free port only so that the test knows it; the output is
        # compared with the tutorial's, which shows `activities local` alone.
        local, local_out = launch(f"activities local --port {free_port()}", clean)
        ready = wait_until(local_out.has(lambda line: line == "Ctrl-C stops it."), timeout=150)
        assert ready, f"activities local did not say it was ready:\n{local_out}"
        printed = [x for x in local_out.lines if "(first use only)" not in x]
        assert [normalize(x) for x in printed] == [normalize(x) for x in local_lines]
        exports = dict(
            line.strip().removeprefix("export ").split("=", 1)
            for line in local_out.lines
            if line.strip().startswith("export ")
        )
        assert set(exports) == set(LocalStepFunctions().environment())
        env = {**clean, **exports}

        # Terminal 2.
        worker, worker_out = launch(worker_line, env)
        started = wait_until(worker_out.has(lambda line: "ready:" in line))
        assert started, f"the worker did not start:\n{worker_out}"

        # Terminal 3.
        for snippet in snippets:
            ran = subprocess.run(
                _command(f"python3 {snippet}"),
                cwd=tmp_path,
                env=env,
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
            )
            assert ran.returncode == 0, f"{ran.stderr}\nthe worker said:\n{worker_out}"
            assert ran.stdout.splitlines() == shown(f"python3 {snippet}")

        logged = [
            line
            for block in blocks()
            if "worker-log" in block.flags
            for line in block.body.splitlines()
        ]
        expected = [normalize(line) for line in shown(worker_line) + logged]
        done = wait_until(lambda: set(expected) <= {normalize(x) for x in worker_out.lines})
        assert done, f"the worker's log differs from the tutorial's:\n{worker_out}"

        # Ctrl-C, twice: a graceful stop would wait up to 60 s for the worker's polls.
        _stop(worker, (signal.SIGINT, 1), (signal.SIGINT, 15))
        _stop(local, (signal.SIGINT, 30))  # LocalStack gets 10 s, then SIGKILL
        assert local.returncode == 0, str(local_out)
    finally:
        for process in processes:
            _stop(process, (signal.SIGTERM, 1), (signal.SIGTERM, 15))
            if process.stdout is not None:
                process.stdout.close()
