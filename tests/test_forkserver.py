"""Task processes forked from a preloaded forkserver, with what spawn gave them."""

from __future__ import annotations

import contextlib
import multiprocessing.connection
import multiprocessing.forkserver
import multiprocessing.resource_tracker
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from activities.worker import _forkserver
from activities.worker._forkserver import FRAMEWORK_MODULES, StartState, preload_modules
from tests.processes import ROOT, bench_environment, children, forkservers, name, task_processes
from tests.waiting import wait_until

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    WorkerOf = Callable[..., subprocess.Popen[str]]


#: The private state of multiprocessing a forkserver forked from the worker sets up, as
#: Python 3.11 to 3.13 have it (a forkserver's, the resource tracker's).
KNOWN_SERVER_STATE = {
    "_forkserver_address",
    "_forkserver_alive_fd",
    "_forkserver_pid",
    "_inherited_fds",
    "_lock",
    "_preload_modules",
}
KNOWN_TRACKER_STATE = {"_fd", "_lock", "_pid"} | (
    {"_exitcode"} if sys.version_info >= (3, 13) else set()
)


def test_the_private_state_the_copy_sets_up_is_all_multiprocessing_has() -> None:
    """A Python release that adds, renames or drops a piece of it fails here, not in a worker.

    Where the copy is not made (3.14 added an authentication key), nothing private is used.
    """
    if sys.version_info >= (3, 14):
        assert not _forkserver.can_fork()
        return
    assert set(vars(multiprocessing.forkserver.ForkServer())) == KNOWN_SERVER_STATE
    assert set(vars(multiprocessing.resource_tracker.ResourceTracker())) == KNOWN_TRACKER_STATE
    assert _forkserver._SERVER is multiprocessing.forkserver._forkserver  # type: ignore[attr-defined]
    assert _forkserver._TRACKER is multiprocessing.resource_tracker._resource_tracker  # type: ignore[attr-defined]
    assert _forkserver._ARBITRARY_ADDRESS("AF_UNIX")


def test_the_activities_modules_come_first_and_the_framework_last() -> None:
    """The framework's module freezes the heap: it is imported after everything else."""
    modules = preload_modules(["app.a", "app.b", "app.a"], preload=True)
    assert modules == ["app.a", "app.b", *FRAMEWORK_MODULES]
    assert modules[-1] == "activities.worker._preload"


def test_without_preload_only_the_framework_is_imported() -> None:
    assert preload_modules(["app.a"], preload=False) == list(FRAMEWORK_MODULES)


def test_what_a_task_process_is_started_with_needs_no_new_import() -> None:
    """Every module the pickle of a task process names (its pipes, the shared flags, its
    slots' numbers, the settings, the activities) is imported by the worker before the
    fork: imported in a forked task process, a module costs it the pages its import
    writes to (see ``UNPICKLING_MODULES``)."""
    script = textwrap.dedent(
        """
        import functools, importlib, io, pickletools, sys
        from activities.worker._forkserver import FRAMEWORK_MODULES
        import tests.preload_workload  # an activity's module: the worker imported it
        for module in FRAMEWORK_MODULES[:-1]:
            importlib.import_module(module)
        before = set(sys.modules)
        import multiprocessing
        from multiprocessing import context, popen_forkserver, reduction
        from activities.worker._childlog import log_plan
        from activities.worker._control import Control
        from activities.worker._forkserver import StartState
        from activities.worker._loop import SlotSettings
        from activities.worker._taskprocess import child_main
        from activities._aws.sfnclient import make_client
        from activities.worker._slotstate import Cells

        class Popen:  # what multiprocessing pickles a forkserver child's arguments under
            def duplicate_for_child(self, fd):
                return fd
            def DupFd(self, fd):
                return popen_forkserver._DupFd(fd)

        forkserver = multiprocessing.get_context("forkserver")
        control = Control(forkserver, ["arn:a", "arn:b"], slots=2)
        settings = SlotSettings(
            by_arn={"arn:a": tests.preload_workload.Recorded},
            heartbeat_intervals={"preload-Recorded": None},
            worker_name="w",
            client_factory=functools.partial(make_client, region_name="us-east-1"),
            log_plan=log_plan(),
        )
        process = forkserver.Process(  # as activities.worker._process.TaskProcess makes it
            target=child_main,
            args=(*forkserver.Pipe(duplex=False), "process-1", StartState.now()),
            kwargs={
                "settings": settings,
                "control": control,
                "cells": Cells(forkserver, 2),
                "slots": [("process-1", 0, 0)],
                "async_slots": [("process-1.async-1", 1, 1)],
            },
        )
        buffer = io.BytesIO()
        context.set_spawning_popen(Popen())
        try:
            reduction.ForkingPickler(buffer).dump(process)
        finally:
            context.set_spawning_popen(None)
        # The modules named by the pickle: STACK_GLOBAL takes the two strings pushed last,
        # as such or from the memo; None stands for anything else pushed.
        pushed, memo, named = [], {}, set()
        for opcode, argument, _ in pickletools.genops(buffer.getvalue()):
            if opcode.name in ("SHORT_BINUNICODE", "BINUNICODE", "UNICODE"):
                pushed.append(argument)
            elif opcode.name in ("BINGET", "LONG_BINGET", "GET"):
                pushed.append(memo.get(int(argument)))
            elif opcode.name == "MEMOIZE":
                memo[len(memo)] = pushed[-1]
            elif opcode.name in ("BINPUT", "LONG_BINPUT", "PUT"):
                memo[int(argument)] = pushed[-1]
            elif opcode.name == "STACK_GLOBAL":
                named.add(pushed[-2])
                pushed.append(None)
            elif opcode.name == "GLOBAL":
                named.add(argument.split(" ")[0])
                pushed.append(None)
            elif opcode.name not in ("PROTO", "FRAME", "STOP"):
                pushed.append(None)
        print(" ".join(sorted(named)))
        print(" ".join(sorted(named - before)) or "-")
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr
    named, missing = done.stdout.splitlines()
    # The scan finds what the pickle names (it would pass on finding nothing at all).
    assert {
        "activities.worker._control",
        "activities.worker._loop",
        "activities.worker._taskprocess",
        "activities.worker._slotstate",
        "multiprocessing.connection",
        "multiprocessing.popen_forkserver",
        "multiprocessing.sharedctypes",
        "tests.preload_workload",
    } <= set(named.split())
    assert missing == "-"


def test_a_task_process_gets_the_environment_and_directory_of_its_start(
    tmp_path: Path,
) -> None:
    """Not those of the forkserver, which started earlier: as spawn would give them."""
    script = textwrap.dedent(
        """
        import os, pickle, sys
        from activities.worker._forkserver import StartState
        start = pickle.loads(bytes.fromhex(sys.argv[1]))
        os.environ["LEFT_OVER"] = "from the forkserver"
        start.apply()
        print(os.environ.get("SET_LATER"), os.environ.get("LEFT_OVER"), os.getcwd())
        """
    )
    start = StartState(environ={**os.environ, "SET_LATER": "yes"}, cwd=str(tmp_path))
    done = subprocess.run(
        [sys.executable, "-c", script, __import__("pickle").dumps(start).hex()],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
        cwd=ROOT,
    )
    assert done.stdout.split() == ["yes", "None", str(tmp_path)]


@pytest.fixture
def worker_of(bench_endpoint: str, tmp_path: Path) -> Iterator[WorkerOf]:
    """Start ``activities worker MODULE`` (tests.preload_workload) with options; stop it after."""
    started: list[subprocess.Popen[str]] = []

    def start(*options: str, module: str = "tests.preload_workload") -> subprocess.Popen[str]:
        environment = bench_environment(bench_endpoint)
        environment["SFN_TEST_IMPORT_LOG"] = str(tmp_path / "imports.txt")
        environment.pop("SFN_TEST_IMPORTED_IN", None)  # see tests.import_once_workload
        command = [sys.executable, "-m", "activities", "worker", module]
        process = subprocess.Popen(
            [*command, "--processes", "2", *options],
            cwd=ROOT,
            env=environment,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        started.append(process)
        return process

    yield start
    for process in started:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
        process.communicate()


def _ready(process: subprocess.Popen[str]) -> list[str]:
    """The worker's lines until all its slots are up (all of them if it ended first)."""
    assert process.stdout is not None
    lines = []
    for line in process.stdout:
        lines.append(line)
        if "ready: all 2 slots are up" in line:
            break
    return lines


def _importers(tmp_path: Path) -> set[int]:
    return {int(pid) for pid in (tmp_path / "imports.txt").read_text().split()}


def test_activity_modules_are_imported_once_by_the_worker_alone(
    worker_of: WorkerOf, tmp_path: Path
) -> None:
    """Its forkserver is a copy of its process, and task processes copies of that one."""
    worker = worker_of()
    assert "ready: all 2 slots are up" in "".join(_ready(worker))
    [server] = forkservers(worker.pid)
    assert name(server) == "sfn-forkserver"
    assert wait_until(lambda: len(task_processes(worker.pid)) == 2)
    assert {name(pid) for pid in task_processes(worker.pid)} == {"sfn-task"}
    assert _importers(tmp_path) == {worker.pid}


def test_without_preload_each_task_process_imports_them(
    worker_of: WorkerOf, tmp_path: Path
) -> None:
    """--no-preload: for modules whose import has side effects each process must have."""
    worker = worker_of("--no-preload")
    assert "ready: all 2 slots are up" in "".join(_ready(worker))
    assert wait_until(lambda: len(task_processes(worker.pid)) == 2)
    assert _importers(tmp_path) == {worker.pid, *task_processes(worker.pid)}


def _signal_mask(pid: int, field: str) -> int:
    """A signal set of ``/proc/PID/status`` (``SigBlk``, ``SigIgn``) as a bit mask."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1], 16)
    raise AssertionError(field)


STOP_BITS = (1 << (signal.SIGINT - 1)) | (1 << (signal.SIGTERM - 1))


def test_a_signal_to_the_process_group_is_left_to_the_worker(worker_of: WorkerOf) -> None:
    """SIGTERM reaches the forkserver and task processes too; the worker alone stops them."""
    worker = worker_of()
    lines = _ready(worker)
    assert wait_until(lambda: len(task_processes(worker.pid)) == 2)
    [server] = forkservers(worker.pid)
    # The forkserver never unblocks them (it would die, and the worker lose its children).
    assert _signal_mask(server, "SigBlk") & STOP_BITS == STOP_BITS
    for task_process in task_processes(worker.pid):
        assert _signal_mask(task_process, "SigIgn") & STOP_BITS == STOP_BITS
    os.killpg(worker.pid, signal.SIGTERM)
    output, _ = worker.communicate(timeout=120)
    output = "".join(lines) + output
    assert worker.returncode == 0, output
    assert "SIGTERM: stopping gracefully" in output
    # A task process killed by the signal, or lost with its forkserver, would be said to
    # have ended ("exit code 255", "killed by signal 15") and, had it held a task, failed it.
    assert "exit code" not in output
    assert "killed by signal" not in output
    assert "stopped" in output


SCRIPT = """
import logging, os, sys
from activities import Activity, Worker

with open(os.environ["SFN_TEST_IMPORT_LOG"], "a") as imports:
    imports.write(f"{os.getpid()} {__name__}\\n")


class ScriptEcho(Activity):
    name = "preload-ScriptEcho"

    def run(self, value):
        return value


if __name__ == "__main__":
    logging.basicConfig(level="INFO")
    sys.exit(Worker([ScriptEcho], processes=2).run())
"""


def test_a_script_serving_its_own_activities_runs_its_main_block_once(
    bench_endpoint: str, tmp_path: Path
) -> None:
    """`python script.py`: imported once, as __main__; its processes are copies of it."""
    script = tmp_path / "serve_script.py"
    script.write_text(SCRIPT)
    environment = bench_environment(bench_endpoint)
    environment["SFN_TEST_IMPORT_LOG"] = str(tmp_path / "imports.txt")
    worker = subprocess.Popen(
        [sys.executable, str(script)],
        cwd=tmp_path,
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        assert "ready: all 2 slots are up" in "".join(_ready(worker))
        assert wait_until(lambda: len(task_processes(worker.pid)) == 2)
        imports = (tmp_path / "imports.txt").read_text().split("\n")
        assert list(filter(None, imports)) == [f"{worker.pid} __main__"]
    finally:
        os.killpg(worker.pid, signal.SIGKILL)
        worker.communicate()


def test_a_module_that_refuses_a_second_import_is_served(worker_of: WorkerOf) -> None:
    """Imported by the worker alone, it is never imported again in its task processes."""
    lines = _ready(worker_of(module="tests.import_once_workload"))
    assert "ready: all 2 slots are up" in lines[-1], "".join(lines)


def _tcp_sockets() -> set[str]:
    """The inodes of this machine's TCP sockets (IPv4 and IPv6), from /proc/net."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                inodes.add(line.split()[9])
    return inodes


def _sockets_of(pid: int) -> set[str]:
    """The inodes of the sockets ``pid`` holds open."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        with contextlib.suppress(OSError):
            target = os.readlink(fd)
            if target.startswith("socket:["):
                inodes.add(target[len("socket:[") : -1])
    return inodes


def test_the_copies_of_the_worker_hold_none_of_its_connections(worker_of: WorkerOf) -> None:
    """The worker created its activities before the fork: its connection was not copied."""
    worker = worker_of()
    assert "ready: all 2 slots are up" in "".join(_ready(worker))
    [server] = forkservers(worker.pid)
    [tracker] = [child for child in children(worker.pid) if name(child) == "sfn-tracker"]
    # The processes that poll do hold connections: what is looked for can be seen.
    polling = [worker.pid, *task_processes(worker.pid)]
    assert wait_until(lambda: any(_sockets_of(pid) & _tcp_sockets() for pid in polling))
    for copy in (server, tracker):
        assert not _sockets_of(copy) & _tcp_sockets(), name(copy)


THREADED_SCRIPT = """
import sys, threading
from activities import Worker
from tests.import_once_workload import Once

threading.Thread(target=threading.Event().wait, daemon=True).start()
sys.exit(Worker([Once], processes=2).run())
"""


def test_a_module_that_fails_in_a_new_forkserver_is_a_clear_error(
    bench_endpoint: str,
) -> None:
    """With a thread running, the forkserver is a new interpreter: it imports the modules.

    A module that cannot be imported there makes the worker say which imports failed and
    how to turn preloading off.
    """
    environment = bench_environment(bench_endpoint)
    environment.pop("SFN_TEST_IMPORTED_IN", None)  # see tests.import_once_workload
    done = subprocess.run(
        [sys.executable, "-c", THREADED_SCRIPT],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode != 0, done.stderr
    assert "RuntimeError: imported in process" in done.stderr  # the forkserver's own error
    assert "importing tests.import_once_workload" in done.stderr
    assert "--no-preload" in done.stderr.splitlines()[-1]


def test_task_processes_take_the_client_made_before_the_fork(worker_of: WorkerOf) -> None:
    """Its pages shared, not made again in each process (a DEBUG line says so)."""
    worker = worker_of("--log-level", "DEBUG")
    output = "".join(_ready(worker))
    assert output.count("uses the Step Functions client made before the fork") == 2, output
