"""Run the benchmark scenarios side by side and write ``docs/benchmarks.md``.

    python -m benchmarks.run [--quick]

Each contender is a process (group) started against a fresh in-memory endpoint
(:mod:`benchmarks.endpoint`) preloaded with tasks; throughput is measured by the endpoint,
from the first task handed out to the last outcome received. Contenders: a bare boto3
loop (threads, processes) and the sfn-activities worker (processes, threads).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import signal
import statistics
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

ROOT = Path(__file__).resolve().parent.parent
REPORT = ROOT / "docs" / "benchmarks.md"
CHART = "benchmarks.svg"  # written beside the report
NOTES = Path(__file__).with_name("notes.md")
PORT = 8999

#: Seconds without a new outcome after which the tasks still out are counted as lost.
STALL = 10.0


@dataclass
class Contender:
    """A command that serves the benchmark's activity until it is killed."""

    label: str
    command: list[str]
    kind: str  # "bare", "worker" or "peer"
    python: str = sys.executable
    unavailable: str | None = None  # why it could not run, when it could not
    max_tasks: int | None = None  # fewer tasks for a slow contender: its rate is steady


@dataclass
class Scenario:
    """Tasks of one kind, at one network delay, served by several contenders."""

    title: str
    activity: str
    tasks: int
    delay: float
    contenders: list[Contender]
    results: dict[str, dict[str, Any]] = field(default_factory=dict)


def bare(activity: str, work: str, threads: int, processes: int = 1) -> Contender:
    """A bare boto3 loop in ``processes`` processes of ``threads`` threads."""
    label = f"bare boto3, {processes} proc x {threads} thread{'s' * (threads > 1)}"
    command = ["-m", "benchmarks.bare", "--activity", activity, "--work", work]
    command += ["--threads", str(threads), "--processes", str(processes)]
    return Contender(label, command, "bare")


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
    return Contender(label, command, "worker")


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
    # heaviside starts a process per task: a few hundred tasks measure it well enough.
    max_tasks = 300 if name == "heaviside" else None
    return Contender(label, command, "peer", python=python, max_tasks=max_tasks)


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


def scenarios(quick: bool) -> list[Scenario]:
    """The scenarios whose targets docs/benchmarks.md reports (``quick``: fewer tasks)."""
    scale = 4 if quick else 1
    nothing, burn, dispatch, chatty = (
        "bench-Nothing",
        "bench-Burn",
        "bench-Dispatch",
        "bench-Chatty",
    )
    return [
        Scenario(
            "1. Zero-work tasks, no added latency (framework overhead)",
            nothing,
            3000 // scale,
            0.0,
            [
                bare(nothing, "zero", 1),
                bare(nothing, "zero", 4),
                bare(nothing, "zero", 2, 2),
                worker(nothing, processes=2),
                worker(nothing, processes=4),
                worker(nothing, threads=4),
                peer("stefuna", nothing, "zero", 2),
                peer("heaviside", nothing, "zero", 2),
            ],
        ),
        Scenario(
            "2. Zero-work tasks, 20 ms simulated round trip",
            nothing,
            800 // scale,
            0.020,
            [
                bare(nothing, "zero", 1),
                bare(nothing, "zero", 16),
                bare(nothing, "zero", 8, 2),
                worker(nothing, processes=16),
                worker(nothing, threads=32),
                peer("stefuna", nothing, "zero", 16),
            ],
        ),
        Scenario(
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
        Scenario(
            "4. Dispatch latency (poll returned to run() started)",
            dispatch,
            1000 // scale,
            0.0,
            [worker(dispatch, processes=2)],
        ),
        Scenario(
            "6. Heartbeat cost (a task yielding 1,000 times a second for 1 s)",
            chatty,
            8,
            0.0,
            [worker(chatty, processes=4)],
        ),
    ]


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


def start_endpoint(delay: float) -> subprocess.Popen[str]:
    """Start the endpoint with ``delay`` seconds per call; wait until it listens."""
    endpoint = subprocess.Popen(  # noqa: S603 - our own module
        [sys.executable, "-m", "benchmarks.endpoint", "--port", str(PORT), "--delay", str(delay)],
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


def measure(scenario: Scenario, contender: Contender) -> dict[str, Any]:
    """Serve the scenario's tasks with ``contender``; what the endpoint saw."""
    tasks = min(scenario.tasks, contender.max_tasks or scenario.tasks)
    call("Reset")
    call("Load", {"activity": scenario.activity, "count": tasks, "input": '{"value": 1}'})
    process = subprocess.Popen(  # noqa: S603 - our own modules
        [contender.python, *contender.command],
        env=environment(),
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    memory = None
    done, progressed = 0, time.monotonic()
    try:
        while time.monotonic() - progressed < STALL:
            stats = call("Stats")
            now_done = stats.get("succeeded", 0) + stats.get("failed", 0)
            if now_done > done:
                done, progressed = now_done, time.monotonic()
            if done >= tasks // 2 and memory is None:
                memory = tree_rss(process.pid)
            if done >= tasks:
                break
            time.sleep(0.05)
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    stats = call("Stats", {"outputs": True})
    stats["rss"] = memory
    stats["lost"] = tasks - stats.get("succeeded", 0) - stats.get("failed", 0)
    return stats


def tree_rss(pid: int) -> int:
    """Resident memory of ``pid`` and its descendants, in bytes (Linux /proc)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            children.setdefault(int(fields[1]), []).append(int(entry.name))
    total, todo = 0, [pid]
    while todo:
        current = todo.pop()
        todo.extend(children.get(current, []))
        try:
            total += int((Path("/proc") / str(current) / "statm").read_text().split()[1])
        except OSError:
            continue
    return total * os.sysconf("SC_PAGE_SIZE")


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


def report(results: list[Scenario], baseline_rss: int, took: float) -> str:
    """The Markdown report of ``results``."""
    lines = [
        "# Benchmarks",
        "",
        (
            f"Measured {dt.date.today().isoformat()} on {os.cpu_count()} cores "
            f"(Python {sys.version.split()[0]}), in {took:.0f} s, by `nox -s bench`."
        ),
        "Every contender ran against the same in-memory endpoint (`benchmarks/endpoint.py`),",
        "which measures from the first task handed out to the last outcome received.",
        "Contenders and endpoint share the machine's cores.",
        "",
        f"![Tasks per second by contender; sfn-activities in blue]({CHART})",
        "",
    ]
    for scenario in results:
        lines += [
            f"## {scenario.title}",
            "",
            f"{scenario.tasks} tasks, delay {scenario.delay * 1000:.0f} ms per call.",
            "",
        ]
        if scenario.activity == "bench-Dispatch":
            outputs = [float(o) * 1000 for o in next(iter(scenario.results.values()))["outputs"]]
            outputs.sort()
            p99 = outputs[int(len(outputs) * 0.99) - 1]
            lines += [
                "| contender | median | p99 |",
                "|---|---|---|",
                (
                    f"| {next(iter(scenario.results))} | {statistics.median(outputs):.2f} ms "
                    f"| {p99:.2f} ms |"
                ),
                "",
            ]
            continue
        if scenario.activity == "bench-Chatty":
            stats = next(iter(scenario.results.values()))
            yields = sum(int(o) for o in stats["outputs"])
            lines += [
                "| tasks | yields | heartbeats sent |",
                "|---|---|---|",
                f"| {scenario.tasks} | {yields} | {stats.get('heartbeats', 0)} |",
                "",
            ]
            continue
        best_bare = max(
            (
                r["rate"]
                for label, r in scenario.results.items()
                if label.startswith("bare") and r["rate"]
            ),
            default=None,
        )
        lines += [
            "| contender | tasks/s | vs best bare boto3 | memory (RSS) | tasks lost |",
            "|---|---|---|---|---|",
        ]
        for label, stats in scenario.results.items():
            if stats["rate"] is None:
                lines.append(f"| {label} | {stats['note']} | | | |")
                continue
            ratio = f"{stats['rate'] / best_bare:.2f}x" if best_bare else ""
            rss = f"{stats['rss'] / 2**20:.0f} MiB" if stats.get("rss") else ""
            lost = stats.get("lost", 0)
            lines.append(f"| {label} | {stats['rate']:.0f} | {ratio} | {rss} | {lost} |")
        lines.append("")
    lines += [
        "## 5. Memory",
        "",
        (
            "A bare `import boto3; boto3.client('stepfunctions')` process: "
            f"{baseline_rss / 2**20:.0f} MiB."
        ),
        "The RSS column above is the whole process tree of each contender, read half way through.",
        "",
        NOTES.read_text(),
    ]
    return "\n".join(lines)


def chart(results: list[Scenario]) -> str:
    """An SVG bar chart of tasks/s per contender, for the throughput scenarios."""
    width, label_width, bar, gap = 760, 300, 14, 4
    rows: list[str] = []
    y = 10
    for scenario in results:
        rates = {label: r["rate"] for label, r in scenario.results.items() if r.get("rate")}
        if len(rates) < 2:  # noqa: PLR2004 - a chart compares at least two contenders
            continue
        top = max(rates.values())
        rows.append(f'<text x="0" y="{y + 12}" font-weight="bold">{escape(scenario.title)}</text>')
        y += 20
        for label, rate in rates.items():
            length = (width - label_width - 60) * rate / top
            colour = "#2f6fb0" if label.startswith("sfn-activities") else "#9a9a9a"
            baseline = y + bar - 3
            rows += [
                (
                    f'<text x="{label_width - 6}" y="{baseline}" text-anchor="end">'
                    f"{escape(label)}</text>"
                ),
                (
                    f'<rect x="{label_width}" y="{y}" width="{length:.1f}" height="{bar}" '
                    f'fill="{colour}"/>'
                ),
                f'<text x="{label_width + length + 4:.1f}" y="{baseline}">{rate:.0f}</text>',
            ]
            y += bar + gap
        y += 12
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{y}" '
        f'font-family="sans-serif" font-size="12">\n'
        f'<rect width="{width}" height="{y}" fill="white"/>\n' + "\n".join(rows) + "\n</svg>\n"
    )


def main() -> int:
    """Run every scenario and write the report."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="a quarter of the tasks")
    parser.add_argument("--output", type=Path, default=REPORT)
    args = parser.parse_args()
    # SIGTERM exits through the finally blocks, which stop the endpoint and contenders.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    started = time.monotonic()
    results = scenarios(args.quick)
    for scenario in results:
        endpoint = start_endpoint(scenario.delay)
        try:
            print(scenario.title, flush=True)
            for contender in scenario.contenders:
                if contender.unavailable:
                    scenario.results[contender.label] = {
                        "rate": None,
                        "note": contender.unavailable,
                    }
                    print(f"  {contender.label:<40} {contender.unavailable}", flush=True)
                    continue
                stats = measure(scenario, contender)
                elapsed = stats.get("elapsed") or float("nan")
                stats["rate"] = stats.get("succeeded", 0) / elapsed
                scenario.results[contender.label] = stats
                lost = f", {stats['lost']} lost" if stats["lost"] else ""
                print(f"  {contender.label:<40} {stats['rate']:8.0f} tasks/s{lost}", flush=True)
        finally:
            stop(endpoint)
    endpoint = start_endpoint(0.0)
    try:
        baseline = bare_client_rss()
    finally:
        stop(endpoint)
    args.output.write_text(report(results, baseline, time.monotonic() - started) + "\n")
    args.output.with_name(CHART).write_text(chart(results))
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
