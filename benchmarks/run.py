"""Run the benchmark scenarios side by side and write ``docs/benchmarks.md``.

    python -m benchmarks.run [--quick] [--only KEY]

Each contender is a process (group) started against an in-memory endpoint
(:mod:`benchmarks.endpoint`); once it has its polls open, the tasks are queued, and the
endpoint measures from the first task handed out to the last outcome received.
Contenders: a bare boto3 loop (threads, processes), the sfn-activities worker (processes,
threads), and peer libraries in virtualenvs of their own. The report and the charts are
written by :mod:`benchmarks.report`.

The "many task lists" scenario (key ``many``) is different: tasks arrive one at a time,
each on one of 60 activities, and the endpoint times each task from queued to handed out
and to completed (see :class:`Arrivals`).

``--only KEY`` runs one scenario (keys: see :data:`KEYS`), prints its section of the
report and puts it in place of the same section of an existing report, leaving the other
sections, the header and the bar chart as they were.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from benchmarks import report
from benchmarks.work import MANY

if TYPE_CHECKING:
    from collections.abc import Callable

ROOT = Path(__file__).resolve().parent.parent
REPORT = ROOT / "docs" / "benchmarks.md"
PORT = 8999

#: Seconds without a new outcome after which the tasks still out are counted as lost.
STALL = 10.0

#: Seconds a contender may take to open its polls before its tasks are queued anyway.
READY_TIMEOUT = 60.0

#: Concurrency levels of the sweep.
SWEEP = (1, 4, 16, 32)

#: The scenarios by the key ``--only`` takes, in the report's order.
KEYS = ("overhead", "latency", "sweep", "cpu", "dispatch", "heartbeat", "many")

#: Seconds the feeding of arrivals may overrun its duration before it stops anyway.
FEED_SLACK = 10.0

#: Seconds after the last arrival that the outcomes may take, progress or not.
DRAIN_LIMIT = 120.0


@dataclass
class Contender:
    """A command that serves the benchmark's activity until it is killed."""

    label: str
    command: list[str]
    kind: str  # "bare", "worker" or "peer"
    polls: int = 1  # polls it keeps open when ready
    python: str = sys.executable
    unavailable: str | None = None  # why it could not run, when it could not
    max_tasks: int | None = None  # fewer tasks for a slow contender: its rate is steady
    series: str = ""  # in a sweep: the line it belongs to
    concurrency: int = 0  # in a sweep: its threads or processes


@dataclass
class Arrivals:
    """Tasks queued one at a time, each on an activity drawn at random with a fixed seed.

    They arrive ``1 / rate`` seconds apart for ``duration`` seconds, at an endpoint whose
    empty polls last ``poll_wait`` seconds; feeding starts once the contender has a poll
    open per activity, or after ``ready_timeout`` seconds with fewer.
    """

    activities: tuple[str, ...]
    rate: float  # tasks a second
    duration: float  # seconds
    poll_wait: float = 60.0
    ready_timeout: float = 20.0
    seed: int = 60

    @property
    def count(self) -> int:
        """How many tasks arrive."""
        return round(self.rate * self.duration)


@dataclass
class Scenario:
    """Tasks of one kind, at one network delay, served by several contenders."""

    title: str
    activity: str
    tasks: int  # in a sweep: per unit of concurrency
    delay: float
    contenders: list[Contender]
    rounds: int = 1  # runs of each contender but the peers (their rates are steady)
    sweep: bool = False
    arrivals: Arrivals | None = None  # tasks one at a time, timed each, not a rate
    key: str = ""  # what --only calls it
    results: dict[str, dict[str, Any]] = field(default_factory=dict)

    def tasks_for(self, contender: Contender) -> int:
        """How many tasks ``contender`` serves."""
        tasks = max(100, self.tasks * contender.concurrency) if self.sweep else self.tasks
        return min(tasks, contender.max_tasks or tasks)


def bare(activity: str, work: str, threads: int, processes: int = 1) -> Contender:
    """A bare boto3 loop in ``processes`` processes of ``threads`` threads."""
    label = f"bare boto3, {processes} proc x {threads} thread{'s' * (threads > 1)}"
    command = ["-m", "benchmarks.bare", "--activity", activity, "--work", work]
    command += ["--threads", str(threads), "--processes", str(processes)]
    series = "bare boto3, 1 process x N threads" if processes == 1 else ""
    return Contender(
        label, command, "bare", polls=threads * processes, series=series, concurrency=threads
    )


def worker(activity: str, *, processes: int | None = None, threads: int | None = None) -> Contender:
    """The sfn-activities worker serving ``activity`` in processes or threads."""
    pool = ["--processes", str(processes)] if processes else ["--threads", str(threads)]
    label = (
        f"sfn-activities, {processes} processes"
        if processes
        else f"sfn-activities, {threads} threads"
    )
    workload = {
        "bench-Nothing": "Nothing",
        "bench-Burn": "Burn",
        "bench-Dispatch": "Dispatch",
        "bench-Chatty": "Chatty",
    }[activity]
    command = ["-m", "benchmarks.serve", workload, *pool, "--log-level", "WARNING"]
    slots = processes or threads or 1
    series = "sfn-activities, N processes" if processes else "sfn-activities, N threads"
    # An idle worker keeps one poll on its one task list, whatever its slots; the slots
    # add theirs once tasks come. One poll open is the worker ready.
    return Contender(label, command, "worker", polls=1, series=series, concurrency=slots)


def cli_worker(
    module: str, polls: int, *, processes: int | None = None, threads: int | None = None
) -> Contender:
    """The ``activities worker`` command serving ``module``, as users run it.

    Its log level is the command's default. ``polls`` is how many polls the runner waits
    for before it feeds tasks.
    """
    pool = ["--processes", str(processes)] if processes else ["--threads", str(threads)]
    label = (
        f"sfn-activities, {processes} processes"
        if processes
        else f"sfn-activities, {threads} threads"
    )
    command = ["-m", "activities", "worker", module, *pool]
    return Contender(label, command, "worker", polls=polls)


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
    nothing, burn, dispatch, chatty = (
        "bench-Nothing",
        "bench-Burn",
        "bench-Dispatch",
        "bench-Chatty",
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
                worker(nothing, processes=16),
                worker(nothing, threads=32),
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


def call(target: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
    """Call one of the endpoint's own ``Bench.*`` operations."""
    request = urllib.request.Request(
        f"http://127.0.0.1:{PORT}/",
        data=json.dumps(body or {}).encode(),
        headers={"X-Amz-Target": f"Bench.{target}", "Content-Type": "application/x-amz-json-1.0"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
        result: dict[str, Any] = json.load(response)
        return result


def environment() -> dict[str, str]:
    """What a contender needs to reach the endpoint with boto3."""
    return {
        **os.environ,
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{PORT}",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "bench",
        "AWS_SECRET_ACCESS_KEY": "bench",
        "PYTHONPATH": str(ROOT),
    }


def start_endpoint(delay: float, poll_wait: float = 1.0) -> subprocess.Popen[str]:
    """Start the endpoint with ``delay`` seconds per call; wait until it listens.

    ``poll_wait``: the seconds an empty poll lasts.
    """
    command = ["-m", "benchmarks.endpoint", "--port", str(PORT), "--delay", str(delay)]
    endpoint = subprocess.Popen(  # noqa: S603 - our own module
        [sys.executable, *command, "--poll-wait", str(poll_wait)],
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        start_new_session=True,
    )
    assert endpoint.stdout is not None  # noqa: S101
    endpoint.stdout.readline()  # "ready on PORT"
    return endpoint


def stop(process: subprocess.Popen[str]) -> None:
    """Kill a process group by its leader's pid and reap it."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    if process.stdout is not None:
        process.stdout.close()


def measure(contender: Contender, activity: str, tasks: int) -> dict[str, Any]:
    """Serve ``tasks`` tasks of ``activity`` with ``contender``; what the endpoint saw."""
    quiesce()
    call("Reset")
    process = subprocess.Popen(  # noqa: S603 - our own modules
        [contender.python, *contender.command],
        env=environment(),
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    memory = None
    try:
        ready_by = time.monotonic() + READY_TIMEOUT
        while call("Stats")["waiting"] < contender.polls and time.monotonic() < ready_by:
            time.sleep(0.05)
        call("Load", {"activity": activity, "count": tasks, "input": '{"value": 1}'})
        done, progressed = 0, time.monotonic()
        while time.monotonic() - progressed < STALL:
            stats = call("Stats")
            now_done = stats.get("succeeded", 0) + stats.get("failed", 0)
            if now_done > done:
                done, progressed = now_done, time.monotonic()
            if done >= tasks // 2 and memory is None:
                memory = tree_memory(process.pid)
            if done >= tasks:
                break
            time.sleep(0.05)
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    stats = call("Stats", {"outputs": True})
    stats["memory"] = memory
    stats["lost"] = tasks - stats.get("succeeded", 0) - stats.get("failed", 0)
    stats["rate"] = stats.get("succeeded", 0) / (stats.get("elapsed") or float("nan"))
    return stats


def measure_arrivals(contender: Contender, arrivals: Arrivals) -> dict[str, Any]:
    """Feed ``arrivals`` to ``contender`` at an endpoint of its own; what the endpoint saw.

    An endpoint of its own: a killed contender's long polls would otherwise hold their
    connections open for a minute. Stats with the latencies in seconds, the polls open
    when feeding began (``waiting_at_start``), and the tasks queued and lost.
    """
    endpoint = start_endpoint(0.0, arrivals.poll_wait)
    try:
        process = subprocess.Popen(  # noqa: S603 - our own modules, a peer's venv's Python
            [contender.python, *contender.command],
            env=environment(),
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        try:
            ready_by = time.monotonic() + arrivals.ready_timeout
            while (waiting := call("Stats")["waiting"]) < contender.polls:
                if time.monotonic() >= ready_by:
                    break
                time.sleep(0.05)
            queued = feed(arrivals)
            wait_for_outcomes(queued)
        finally:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        stats = call("Stats", {"latencies": True})
    finally:
        stop(endpoint)
    stats["waiting_at_start"] = waiting
    stats["queued"] = queued
    stats["lost"] = queued - stats.get("succeeded", 0) - stats.get("failed", 0)
    return stats


def feed(arrivals: Arrivals) -> int:
    """Queue the tasks of ``arrivals`` one at a time, on time; how many were queued.

    It stops by itself after ``arrivals.count`` tasks, or ``FEED_SLACK`` seconds past the
    duration should the calls fall behind.
    """
    draw = random.Random(arrivals.seed)  # noqa: S311 - a repeatable draw, not a secret
    started = time.monotonic()
    stop_by = started + arrivals.duration + FEED_SLACK
    queued = 0
    for index in range(arrivals.count):
        pause = started + index / arrivals.rate - time.monotonic()
        if pause > 0:
            time.sleep(pause)
        if time.monotonic() > stop_by:
            break
        activity = draw.choice(arrivals.activities)
        call("Load", {"activity": activity, "count": 1, "input": '{"value": 1}', "record": True})
        queued += 1
    return queued


def wait_for_outcomes(tasks: int) -> None:
    """Wait until ``tasks`` outcomes came, ``STALL`` s passed without one, or ``DRAIN_LIMIT``."""
    done, progressed = 0, time.monotonic()
    give_up = progressed + DRAIN_LIMIT
    while done < tasks and time.monotonic() - progressed < STALL and time.monotonic() < give_up:
        stats = call("Stats")
        now_done = stats.get("succeeded", 0) + stats.get("failed", 0)
        if now_done > done:
            done, progressed = now_done, time.monotonic()
        time.sleep(0.05)


def quiesce() -> None:
    """Wait until the endpoint serves no connection but the caller's.

    A killed contender's last requests can still be in the endpoint's buffers: a poll read
    after the next contender's tasks are queued would take one of them to a dead socket.
    """
    by = time.monotonic() + STALL
    while call("Stats")["connections"] > 1 and time.monotonic() < by:
        time.sleep(0.05)


def tree_memory(pid: int) -> dict[str, int]:
    """Memory of ``pid`` and its descendants in bytes: RSS and PSS summed, the largest RSS.

    PSS counts a page shared by several processes (a forked child's, a library's) once
    across them; RSS counts it in each. Read from Linux's /proc.
    """
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            children.setdefault(int(fields[1]), []).append(int(entry.name))
    memory = {"rss": 0, "pss": 0, "largest": 0, "processes": 0}
    todo = [pid]
    while todo:
        current = todo.pop()
        todo.extend(children.get(current, []))
        try:
            rss = int((Path("/proc") / str(current) / "statm").read_text().split()[1])
            rollup = (Path("/proc") / str(current) / "smaps_rollup").read_text()
        except OSError:
            continue
        rss *= os.sysconf("SC_PAGE_SIZE")
        pss = next(int(line.split()[1]) for line in rollup.splitlines() if line.startswith("Pss:"))
        memory["rss"] += rss
        memory["pss"] += pss * 1024
        memory["largest"] = max(memory["largest"], rss)
        memory["processes"] += 1
    return memory


def bare_client_rss() -> int:
    """Resident memory of a bare ``import boto3; boto3.client('stepfunctions')`` process."""
    code = (
        "import boto3, os; boto3.client('stepfunctions'); "
        "print(int(open('/proc/self/statm').read().split()[1]) * os.sysconf('SC_PAGE_SIZE'))"
    )
    out = subprocess.run(  # noqa: S603 - our own code
        [sys.executable, "-c", code], env=environment(), capture_output=True, text=True, check=True
    )
    return int(out.stdout)


def run_scenario(scenario: Scenario) -> None:
    """Measure every contender of ``scenario`` (in rounds), filling its results."""
    print(scenario.title, flush=True)
    if scenario.arrivals is not None:
        run_arrivals(scenario, scenario.arrivals)
        return
    endpoint = start_endpoint(scenario.delay)
    try:
        run_rounds(scenario)
    finally:
        stop(endpoint)


def run_arrivals(scenario: Scenario, arrivals: Arrivals) -> None:
    """Measure every contender of an arrivals scenario once, filling its results."""
    for contender in scenario.contenders:
        if contender.unavailable:
            scenario.results[contender.label] = {"note": contender.unavailable}
            print(f"  {contender.label:<50} {contender.unavailable}", flush=True)
            continue
        stats = measure_arrivals(contender, arrivals)
        scenario.results[contender.label] = stats
        print(f"  {contender.label:<50} {report.arrivals_summary(stats)}", flush=True)


def run_rounds(scenario: Scenario) -> None:
    """Measure every contender of a rate scenario, in rounds, at the endpoint running."""
    rates: dict[str, list[float]] = {}
    lost: dict[str, int] = {}
    for round_number in range(scenario.rounds):
        for contender in scenario.contenders:
            if contender.unavailable:
                scenario.results[contender.label] = {"rate": None, "note": contender.unavailable}
                continue
            if round_number and contender.kind == "peer":
                continue
            stats = measure(contender, scenario.activity, scenario.tasks_for(contender))
            rates.setdefault(contender.label, []).append(stats["rate"])
            lost[contender.label] = lost.get(contender.label, 0) + stats["lost"]
            scenario.results[contender.label] = report.summarize(
                rates[contender.label], {**stats, "lost": lost[contender.label]}
            )
            note = f", {stats['lost']} lost" if stats["lost"] else ""
            print(f"  {contender.label:<40} {stats['rate']:8.0f} tasks/s{note}", flush=True)
    for contender in scenario.contenders:
        if contender.unavailable:
            print(f"  {contender.label:<40} {contender.unavailable}", flush=True)


def main() -> int:
    """Run every scenario (or one) and write the report."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="a quarter of the tasks")
    parser.add_argument("--output", type=Path, default=REPORT)
    parser.add_argument(
        "--only",
        choices=KEYS,
        metavar="KEY",
        help=(
            f"run one scenario ({', '.join(KEYS)}), print its section and put it in place "
            "of that section of the existing report"
        ),
    )
    args = parser.parse_args()
    # SIGTERM exits through the finally blocks, which stop the endpoint and contenders.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    started = time.monotonic()
    results = scenarios(args.quick, args.only)
    for scenario in results:
        run_scenario(scenario)
    if args.only:
        return update(args.output, results, args.only)
    endpoint = start_endpoint(0.0)
    try:
        baseline = bare_client_rss()
    finally:
        stop(endpoint)
    took = time.monotonic() - started
    args.output.write_text(report.report(results, baseline, took) + "\n")
    args.output.with_name(report.BARS).write_text(report.bar_chart(results))
    for scenario in results:
        if scenario.sweep:
            args.output.with_name(report.SWEEP).write_text(report.sweep_chart(scenario))
    print(f"wrote {args.output}")
    return 0


def update(output: Path, results: list[Scenario], key: str) -> int:
    """Print the sections of ``results``; put them in place of theirs in ``output``."""
    how = f"`python -m benchmarks.run --only {key}`"
    sections = [report.section(scenario, measured_by=how) for scenario in results]
    print("\n".join("\n".join(lines) for lines in sections))
    if not output.exists():
        print(f"no {output} to update: run every scenario to write it", file=sys.stderr)
        return 1
    text = output.read_text()
    for lines in sections:
        text = report.splice(text, lines)
    output.write_text(text)
    for scenario in results:
        if scenario.sweep:
            output.with_name(report.SWEEP).write_text(report.sweep_chart(scenario))
    print(f"updated {output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
