"""Run the benchmark scenarios side by side and write ``docs/benchmarks.md``.

    python -m benchmarks.run [--quick] [--only KEY]

Each contender is a process (group) started against an in-memory endpoint
(:mod:`benchmarks.endpoint`); once it has its polls open, the tasks are queued, and the
endpoint measures from the first task handed out to the last outcome received.
Contenders: a bare boto3 loop (threads, processes), the sfn-activities worker (processes,
threads, processes x threads), and peer libraries in virtualenvs of their own. The worker
runs as users run it, ``activities worker benchmarks.workloads.<workload>`` at the
command's default log level (INFO); rows at another level are extras, labelled so. Each
contender's memory is read once it has served its tasks (see :func:`measure`). The report
and the charts are written by :mod:`benchmarks.report`.

A contender that exits before it is ready (a worker refusing its options, say) is reported
as failed to start, with the last line it wrote to stderr, and not run again.

The footprint scenario (key ``footprint``) serves zero-work tasks with the worker at 4
and at 16 processes and with one bare boto3 client process, and reports each one's memory
in bare client processes.

The "many task lists" scenario (key ``many``) is different: tasks arrive one at a time,
each on one of 60 activities, and the endpoint times each task from queued to handed out
and to completed (see :class:`Arrivals`).

``--only KEY`` runs one scenario (keys: see :data:`KEYS`), prints its section of the
report and puts it in place of the same section of an existing report, leaving the other
sections, the header and the bar chart as they were.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING, Any

from benchmarks import report
from benchmarks.lineup import KEYS, scenarios

if TYPE_CHECKING:
    from benchmarks.scenario import Arrivals, Contender, Scenario

ROOT = Path(__file__).resolve().parent.parent
REPORT = ROOT / "docs" / "benchmarks.md"
PORT = 8999

#: Seconds without a new outcome after which the tasks still out are counted as lost.
STALL = 10.0

#: Seconds a contender may take to open its polls before its tasks are queued anyway.
READY_TIMEOUT = 60.0

#: Seconds after a contender's last outcome before its memory is read: its processes are
#: steady by then (the report says "half a second").
SETTLE = 0.5

#: Seconds a contender that exited before it was ready may run again, its stderr kept, to
#: say why.
DIAGNOSE = 15.0

#: Seconds the feeding of arrivals may overrun its duration before it stops anyway.
FEED_SLACK = 10.0

#: Seconds after the last arrival that the outcomes may take, progress or not.
DRAIN_LIMIT = 120.0


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
    """Serve ``tasks`` tasks of ``activity`` with ``contender``; what the endpoint saw.

    The memory is that of the contender's whole process tree (:func:`tree_memory`), read
    ``SETTLE`` seconds after its last outcome, before it is killed: what it holds once it
    has done the work, not idle. A contender that exits before it is ready serves nothing:
    the stats are ``{"failed": why}`` (see :func:`why_not_started`). One that exits while
    it serves is not waited for: ``exited`` is its exit code.
    """
    quiesce()
    call("Reset")
    process = start(contender)
    memory = None
    exited = None
    try:
        wait_until_ready(process, contender.polls, READY_TIMEOUT)
        if process.poll() is not None:
            return {"failed": why_not_started(contender, process.returncode)}
        call("Load", {"activity": activity, "count": tasks, "input": '{"value": 1}'})
        done, progressed = 0, time.monotonic()
        while time.monotonic() - progressed < STALL and done < tasks:
            if (exited := process.poll()) is not None:
                break
            time.sleep(0.05)
            stats = call("Stats")
            now_done = stats.get("succeeded", 0) + stats.get("failed", 0)
            if now_done > done:
                done, progressed = now_done, time.monotonic()
        if exited is None:
            time.sleep(SETTLE)
            memory = tree_memory(process.pid)
    finally:
        kill(process)
    stats = call("Stats", {"outputs": True})
    stats["memory"] = memory if memory and memory["processes"] else None
    stats["exited"] = exited
    stats["lost"] = tasks - stats.get("succeeded", 0) - stats.get("failed", 0)
    stats["rate"] = stats.get("succeeded", 0) / (stats.get("elapsed") or float("nan"))
    return stats


def start(contender: Contender) -> subprocess.Popen[bytes]:
    """Start ``contender`` in a session of its own, its output discarded.

    Discarded, not kept: a worker still formats and writes every log line, the cost its
    users pay, without the runner reading them.
    """
    return subprocess.Popen(  # noqa: S603 - our own modules, a peer's venv's Python
        [contender.python, *contender.command],
        env=environment(),
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


def wait_until_ready(process: subprocess.Popen[bytes], polls: int, timeout: float) -> int:
    """Wait until the endpoint holds ``polls`` polls, ``timeout`` s pass or ``process`` exits.

    Returns the polls the endpoint holds then.
    """
    ready_by = time.monotonic() + timeout
    while (waiting := call("Stats")["waiting"]) < polls:
        if time.monotonic() >= ready_by or process.poll() is not None:
            break
        time.sleep(0.05)
    return int(waiting)


def why_not_started(contender: Contender, code: int) -> str:
    """What to report of ``contender``, which exited with ``code`` before it was ready.

    Its output was discarded: it runs once more with stderr kept, for ``DIAGNOSE`` seconds
    at most, and the last line it wrote says why (a worker refusing its options, say).
    """
    process = subprocess.Popen(  # noqa: S603 - our own modules, a peer's venv's Python
        [contender.python, *contender.command],
        env=environment(),
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        _, stderr = process.communicate(timeout=DIAGNOSE)
    except subprocess.TimeoutExpired:
        stderr = ""
    finally:
        kill(process)
        if process.stderr is not None:
            process.stderr.close()
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    return f"failed to start: exited with code {code}" + (f": {lines[-1]}" if lines else "")


def kill(process: subprocess.Popen[Any]) -> None:
    """Kill the process group ``process`` leads, whatever is left of it, and reap it."""
    # ProcessLookupError: the leader exited, was reaped, and left no process in its group.
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()


def measure_arrivals(contender: Contender, arrivals: Arrivals) -> dict[str, Any]:
    """Feed ``arrivals`` to ``contender`` at an endpoint of its own; what the endpoint saw.

    An endpoint of its own: a killed contender's long polls would otherwise hold their
    connections open for a minute. Stats with the latencies in seconds, the polls open
    when feeding began (``waiting_at_start``), and the tasks queued and lost; or
    ``{"note": why}`` for a contender that exited before it was ready.
    """
    endpoint = start_endpoint(0.0, arrivals.poll_wait)
    try:
        process = start(contender)
        try:
            waiting = wait_until_ready(process, contender.polls, arrivals.ready_timeout)
            if process.poll() is not None:
                return {"note": why_not_started(contender, process.returncode)}
            queued = feed(arrivals)
            wait_for_outcomes(queued)
        finally:
            kill(process)
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


def process_tree(pid: int) -> list[int]:
    """``pid`` and every process under it, however deep, read from Linux's /proc.

    A forkserver's task processes are the worker's grandchildren; any process of the
    session ``pid`` leads that was adopted elsewhere when its parent died counts too.
    """
    children: dict[int, list[int]] = {}
    session: list[int] = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            # After the name: state, parent, process group, session.
            children.setdefault(int(fields[1]), []).append(int(entry.name))
            if int(fields[3]) == pid:
                session.append(int(entry.name))
    seen: list[int] = []
    todo = [pid, *session]
    while todo:
        current = todo.pop()
        if current not in seen:
            seen.append(current)
            todo.extend(children.get(current, []))
    return seen


def tree_memory(pid: int) -> dict[str, int]:
    """Memory of ``pid``'s whole process tree in bytes: RSS and PSS summed, the largest RSS.

    The tree is :func:`process_tree`'s. PSS counts a page shared by several processes (a
    forked child's, a library's) once across them; RSS counts it in each. Read from
    Linux's /proc; a process gone meanwhile, or a zombie, counts nothing.
    """
    memory = {"rss": 0, "pss": 0, "largest": 0, "processes": 0}
    for current in process_tree(pid):
        sizes = process_memory(current)
        if sizes is None:
            continue
        memory["rss"] += sizes["rss"]
        memory["pss"] += sizes["pss"]
        memory["largest"] = max(memory["largest"], sizes["rss"])
        memory["processes"] += 1
    return memory


def process_memory(pid: int) -> dict[str, int] | None:
    """RSS and PSS of one process in bytes; None if it is gone or a zombie."""
    try:
        sizes = rollup_sizes((Path("/proc") / str(pid) / "smaps_rollup").read_text())
    except OSError:
        return None
    return sizes if len(sizes) == 2 else None  # noqa: PLR2004 - a zombie's rollup is empty


def rollup_sizes(rollup: str) -> dict[str, int]:
    """The ``rss`` and ``pss`` lines of a /proc/PID/smaps_rollup, in bytes."""
    return {
        name.lower(): int(rest.split()[0]) * 1024
        for name, _, rest in (line.partition(":") for line in rollup.splitlines())
        if name in ("Rss", "Pss")
    }


def bare_client_memory() -> dict[str, int]:
    """PSS and RSS of a bare ``import boto3; boto3.client('stepfunctions')`` process, idle.

    The footprint scenario measures one after it served tasks; this one has served none.
    """
    code = (
        "import boto3; boto3.client('stepfunctions'); print(open('/proc/self/smaps_rollup').read())"
    )
    out = subprocess.run(  # noqa: S603 - our own code
        [sys.executable, "-c", code], env=environment(), capture_output=True, text=True, check=True
    )
    return rollup_sizes(out.stdout)


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
        summary = stats["note"] if "note" in stats else report.arrivals_summary(stats)
        print(f"  {contender.label:<50} {summary}", flush=True)


def run_rounds(scenario: Scenario) -> None:
    """Measure every contender of a rate scenario, in rounds, at the endpoint running.

    A contender that failed to start is not started again in later rounds.
    """
    rates: dict[str, list[float]] = {}
    lost: dict[str, int] = {}
    failed: set[str] = set()
    for round_number in range(scenario.rounds):
        for contender in scenario.contenders:
            label = contender.label
            if contender.unavailable:
                scenario.results[label] = {"rate": None, "note": contender.unavailable}
                continue
            if (round_number and contender.kind == "peer") or label in failed:
                continue
            stats = measure(contender, scenario.activity, scenario.tasks_for(contender))
            if "failed" in stats:
                failed.add(label)
                if label not in rates:
                    scenario.results[label] = {"rate": None, "note": stats["failed"]}
                print(f"  {label:<50} {stats['failed']}", flush=True)
                continue
            rates.setdefault(label, []).append(stats["rate"])
            lost[label] = lost.get(label, 0) + stats["lost"]
            scenario.results[label] = report.summarize(rates[label], {**stats, "lost": lost[label]})
            print(f"  {label:<50} {progress(stats)}", flush=True)
    for contender in scenario.contenders:
        if contender.unavailable:
            print(f"  {contender.label:<50} {contender.unavailable}", flush=True)


def progress(stats: dict[str, Any]) -> str:
    """One line of a rate scenario's result, for the runner's progress."""
    line = f"{stats['rate']:8.0f} tasks/s"
    memory = stats.get("memory")
    if memory:
        count = memory["processes"]
        line += f", {memory['pss'] / 2**20:5.0f} MiB PSS in {count} process{'es' * (count != 1)}"
    if stats["lost"]:
        line += f", {stats['lost']} lost"
    if stats.get("exited") is not None:
        line += f", exited with code {stats['exited']} while serving"
    return line


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
        baseline = bare_client_memory()
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
