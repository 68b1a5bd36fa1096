"""What :mod:`benchmarks.run` measures: the contenders and the scenarios they meet in.

A contender is a command line and how it is labelled (:class:`benchmarks.scenario.Contender`):
a bare boto3 loop (:mod:`benchmarks.bare`), the worker as users run it (``activities worker
benchmarks.workloads.<workload>``), or a peer library in a virtualenv of its own. A scenario
is a workload, a round trip, a number of tasks and the contenders that serve them, under
the key ``--only`` takes (:data:`KEYS`).
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from benchmarks.scenario import Arrivals, Contender, Scenario
from benchmarks.work import MANY
from benchmarks.workloads import MODULES

if TYPE_CHECKING:
    from collections.abc import Callable

#: Concurrency levels of the sweep.
SWEEP = (1, 4, 16, 32)

#: The scenarios by the key ``--only`` takes, in the report's order.
KEYS = (
    "overhead",
    "latency",
    "sweep",
    "cpu",
    "dispatch",
    "heartbeat",
    "many",
    "footprint",
    "async",
)


def bare(activity: str, work: str, threads: int, processes: int = 1) -> Contender:
    """A bare boto3 loop in ``processes`` processes of ``threads`` threads."""
    label = f"bare boto3, {processes} proc x {threads} thread{'s' * (threads > 1)}"
    command = ["-m", "benchmarks.bare", "--activity", activity, "--work", work]
    command += ["--threads", str(threads), "--processes", str(processes)]
    series = "bare boto3, 1 process x N threads" if processes == 1 else ""
    return Contender(
        label,
        command,
        "bare",
        polls=threads * processes,
        series=series,
        concurrency=threads,
        processes=processes,
        threads=threads,
    )


def worker(
    activity: str,
    *,
    processes: int | None = None,
    threads: int | None = None,
    async_tasks: int | None = None,
    log_level: str | None = None,
    options: tuple[str, ...] = (),
    note: str = "",
) -> Contender:
    """The ``activities worker`` command serving ``activity``'s workload module.

    See :func:`cli_worker`. An idle worker keeps one poll on its one task list, whatever
    its slots; the slots add theirs once tasks come. One poll open is the worker ready.
    """
    return cli_worker(
        MODULES[activity],
        1,
        processes=processes,
        threads=threads,
        async_tasks=async_tasks,
        log_level=log_level,
        options=options,
        note=note,
    )


def cli_worker(
    module: str,
    polls: int,
    *,
    processes: int | None = None,
    threads: int | None = None,
    async_tasks: int | None = None,
    log_level: str | None = None,
    options: tuple[str, ...] = (),
    note: str = "",
) -> Contender:
    """The ``activities worker`` command serving ``module``, as users run it.

    With ``processes`` and ``threads`` both, ``threads`` task threads in each of
    ``processes`` processes; ``async_tasks`` async positions in each process besides (the
    command's default when not given: 100 for an async activity; 0: none). Its
    log level is the command's default (INFO) unless ``log_level`` says otherwise, which
    the label then says too: such a row is an extra, not a headline; so is one with more
    ``options``, which ``note`` says in the label.
    ``polls`` is how many polls the runner waits for before it feeds tasks.
    """
    command = ["-m", "activities", "worker", module]
    if processes:
        command += ["--processes", str(processes)]
    if threads:
        command += ["--threads", str(threads)]
    label = f"sfn-activities, {pool_label(processes, threads)}"
    if async_tasks is not None:  # an async activity gets 100 by default
        command += ["--async-tasks", str(async_tasks)]
    if async_tasks:
        label += f" + {async_tasks} async tasks"
    if log_level:
        command += ["--log-level", log_level]
        label += f" (log level {log_level})"
    if options:
        command += list(options)
        label += f" ({note})"
    if processes and threads:
        series = f"sfn-activities, {processes} proc x N/{processes} threads"
    else:
        series = "sfn-activities, N processes" if processes else "sfn-activities, N threads"
    return Contender(
        label,
        command,
        "worker",
        polls=polls,
        series="" if log_level or note else series,
        concurrency=(processes or 1) * (threads or 1),
        processes=processes or 0,
        threads=threads or 0,
        log_level=log_level,
        note=note,
    )


def bare_async(activity: str, tasks: int) -> Contender:
    """One asyncio loop of ``tasks`` coroutines, boto3 calls in threads (benchmarks.bare_async)."""
    command = ["-m", "benchmarks.bare_async", "--activity", activity, "--tasks", str(tasks)]
    return Contender(
        f"bare asyncio + boto3 in threads, 1 proc x {tasks} coroutines",
        command,
        "bare",
        polls=1,
        concurrency=tasks,
        processes=1,
    )


def pool_label(processes: int | None, threads: int | None) -> str:
    """A worker's pool as a label says it; processes and threads as the bare loops' say it."""
    if processes and threads:
        return f"{processes} proc x {threads} thread{'s' * (threads > 1)}"
    if processes:
        return f"{processes} process{'es' * (processes > 1)}"
    return f"{threads} thread{'s' * (threads != 1)}"


def bare_per_activity(activities: tuple[str, ...]) -> Contender:
    """A bare boto3 loop in one process with a thread polling each of ``activities``."""
    label = f"bare boto3, 1 proc x {len(activities)} threads (one per activity)"
    command = ["-m", "benchmarks.bare", "--activity", *activities, "--work", "zero"]
    return Contender(label, command, "bare", polls=len(activities))


def peer_per_activity(name: str, activities: tuple[str, ...]) -> Contender:
    """A peer library with a poller process per activity (heaviside's ActivityManager)."""
    label = f"{name}, {len(activities)} processes (one per activity)"
    command = ["-m", "benchmarks.peers", name, "--activity", *activities, "--work", "zero"]
    try:
        python = peer_python(name)
    except subprocess.CalledProcessError as exc:
        return Contender(
            label, command, "peer", unavailable=f"not installable: {exc.stderr[-300:]}"
        )
    return Contender(label, command, "peer", polls=len(activities), python=python)


def peer(name: str, activity: str, work: str, processes: int) -> Contender:
    """A peer library in its own virtualenv (installed on first use)."""
    label = f"{name}, {processes} processes"
    command = ["-m", "benchmarks.peers", name, "--activity", activity, "--work", work]
    command += ["--processes", str(processes)]
    try:
        python = peer_python(name)
    except subprocess.CalledProcessError as exc:
        return Contender(
            label, command, "peer", unavailable=f"not installable: {exc.stderr[-300:]}"
        )
    # heaviside starts a process per task, stefuna has one poller: a few hundred tasks
    # measure either well enough.
    max_tasks = 300 if name == "heaviside" else None
    return Contender(
        label,
        command,
        "peer",
        python=python,
        max_tasks=max_tasks,
        series=f"{name}, N processes",
        concurrency=processes,
    )


def peer_python(name: str) -> str:
    """The Python of ``name``'s virtualenv, created and installed on first use."""
    from benchmarks.peers import REQUIREMENTS  # noqa: PLC0415 - only when peers run

    home = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    venv = home / "sfn-activities" / "bench-peers" / name
    python = venv / "bin" / "python"
    marker = venv / ".installed"
    if not marker.exists():
        subprocess.run(  # noqa: S603 - this interpreter's venv module
            [sys.executable, "-m", "venv", str(venv)], check=True, capture_output=True, text=True
        )
        subprocess.run(  # noqa: S603 - a fixed requirement
            [str(python), "-m", "pip", "install", "-q", REQUIREMENTS[name], "boto3"],
            check=True,
            capture_output=True,
            text=True,
        )
        marker.write_text(REQUIREMENTS[name])
    return str(python)


def scenarios(quick: bool, only: str | None = None) -> list[Scenario]:
    """The scenarios whose targets docs/benchmarks.md reports (``quick``: fewer tasks).

    With ``only``, the one of that key (see :data:`KEYS`): the contenders of the others,
    peers' virtualenvs among them, are not set up.
    """
    scale = 4 if quick else 1
    nothing, burn, dispatch, chatty, awaiting = (
        "bench-Nothing",
        "bench-Burn",
        "bench-Dispatch",
        "bench-Chatty",
        "bench-Await",
    )
    builders: dict[str, Callable[[], Scenario]] = {
        "overhead": lambda: Scenario(
            "1. Zero-work tasks, no added latency (framework overhead)",
            nothing,
            3000 // scale,
            0.0,
            [
                bare(nothing, "zero", 1),
                bare(nothing, "zero", 4),
                bare(nothing, "zero", 1, 2),
                bare(nothing, "zero", 2, 2),
                worker(nothing, processes=2),
                worker(nothing, processes=4),
                worker(nothing, threads=4),
                worker(nothing, processes=2, log_level="WARNING"),
                worker(nothing, processes=4, log_level="WARNING"),
                worker(nothing, threads=4, log_level="WARNING"),
                worker(
                    nothing,
                    processes=2,
                    options=("--metrics-port", "0", "--log-format", "json"),
                    note="--metrics-port, --log-format json",
                ),
                worker(
                    nothing,
                    processes=2,
                    options=("--no-direct-calls",),
                    note="--no-direct-calls: the calls through botocore",
                ),
                peer("stefuna", nothing, "zero", 2),
                peer("heaviside", nothing, "zero", 2),
            ],
            rounds=3,
        ),
        "latency": lambda: Scenario(
            "2. Zero-work tasks, 20 ms simulated round trip",
            nothing,
            800 // scale,
            0.020,
            [
                bare(nothing, "zero", 1),
                bare(nothing, "zero", 16),
                bare(nothing, "zero", 32),
                bare(nothing, "zero", 8, 2),
                bare(nothing, "zero", 8, 4),
                worker(nothing, processes=16),
                worker(nothing, threads=32),
                worker(nothing, processes=1, threads=32),
                worker(nothing, processes=2, threads=8),
                worker(nothing, processes=2, threads=16),
                worker(nothing, processes=4, threads=8),
                worker(nothing, processes=4, threads=16),
                worker(
                    nothing,
                    processes=4,
                    threads=8,
                    options=("--no-direct-calls",),
                    note="--no-direct-calls: the calls through botocore",
                ),
                peer("stefuna", nothing, "zero", 16),
            ],
        ),
        "sweep": lambda: Scenario(
            "Concurrency sweep: zero-work tasks, 20 ms simulated round trip",
            nothing,
            40 // scale,
            0.020,
            [
                *(bare(nothing, "zero", n) for n in SWEEP),
                *(worker(nothing, threads=n) for n in SWEEP),
                *(worker(nothing, processes=n) for n in SWEEP),
                *(worker(nothing, processes=2, threads=n // 2) for n in SWEEP if n > 1),
                *(replace(peer("stefuna", nothing, "zero", n), max_tasks=200) for n in SWEEP),
            ],
            sweep=True,
        ),
        "cpu": lambda: Scenario(
            "3. CPU-bound tasks (20 ms of pure Python each)",
            burn,
            400 // scale,
            0.0,
            [
                bare(burn, "cpu", 4),
                bare(burn, "cpu", 2, 2),
                worker(burn, processes=2),
                peer("stefuna", burn, "cpu", 2),
                peer("heaviside", burn, "cpu", 2),
            ],
        ),
        "dispatch": lambda: Scenario(
            "4. Dispatch latency (poll returned to run() started)",
            dispatch,
            1000 // scale,
            0.0,
            [worker(dispatch, processes=2)],
        ),
        "heartbeat": lambda: Scenario(
            "6. Heartbeat cost (a task yielding 1,000 times a second for 1 s)",
            chatty,
            8,
            0.0,
            [worker(chatty, processes=4)],
        ),
        "many": lambda: many_task_lists(quick),
        "async": lambda: Scenario(
            "9. Tasks that await 1 s of I/O, 20 ms simulated round trip",
            awaiting,
            4000 // scale,
            0.020,
            [
                bare_async(awaiting, 500),
                bare(awaiting, "sleep", 500),
                worker(awaiting, processes=1, async_tasks=500),
                worker(
                    awaiting,
                    processes=1,
                    async_tasks=500,
                    options=("--no-direct-calls",),
                    note="--no-direct-calls: the calls through botocore",
                ),
                worker(awaiting, processes=2, async_tasks=500),
                worker(awaiting, threads=1, async_tasks=500),
                worker(awaiting, processes=1, threads=500, async_tasks=0),
                worker(awaiting, processes=1, threads=250, async_tasks=0),
                worker(
                    "bench-Sleep",
                    processes=1,
                    threads=500,
                    options=("--task-list", f"bench-Sleep={awaiting}"),
                    note="the same wait as time.sleep in a sync run()",
                ),
                replace(
                    worker(
                        "bench-Sleep",
                        processes=16,
                        options=("--task-list", f"bench-Sleep={awaiting}"),
                        note="the same wait as time.sleep in a sync run()",
                    ),
                    max_tasks=400,
                ),
            ],
        ),
        "footprint": lambda: Scenario(
            "8. Footprint: memory of the worker's processes after serving tasks",
            nothing,
            3000 // scale,
            0.0,
            [
                bare(nothing, "zero", 1),
                worker(nothing, processes=4),
                worker(nothing, processes=16),
            ],
        ),
    }
    return [replace(build(), key=key) for key, build in builders.items() if only in (None, key)]


def many_task_lists(quick: bool) -> Scenario:
    """60 activities, zero-work tasks arriving one at a time, 20 a second for 30 s."""
    arrivals = Arrivals(MANY, rate=20.0, duration=30.0 / (4 if quick else 1))
    polls = len(MANY)
    return Scenario(
        f"7. Many task lists: {len(MANY)} activities, tasks arriving one at a time",
        "bench-Many-*",
        arrivals.count,
        0.0,
        [
            cli_worker("benchmarks.many", polls, processes=2),
            cli_worker("benchmarks.many", polls, threads=16),
            bare_per_activity(MANY),
            peer_per_activity("heaviside", MANY),
        ],
        arrivals=arrivals,
    )
