"""The Markdown report and the SVG charts of a benchmark run (see :mod:`benchmarks.run`)."""

from __future__ import annotations

import datetime as dt
import math
import os
import statistics
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any
from xml.sax.saxutils import escape

if TYPE_CHECKING:
    from collections.abc import Callable

    from benchmarks.scenario import Contender, Scenario

NOTES = Path(__file__).with_name("notes.md")
BARS = "benchmarks.svg"  # written beside the report
SWEEP = "benchmarks-concurrency.svg"
OURS = "#2f6fb0"
PALETTE = ["#9a9a9a", "#d08c2c", "#5a9e4b", "#8e5ba8"]
MEMORY = "## 5. Memory"  # the heading after the scenarios' sections

#: The target of the "many task lists" scenario, on queued -> completed, in seconds.
ARRIVALS_P99 = 0.020
ARRIVALS_MAX = 0.100

#: Scenario 1's target: the best worker at the command's default log level, in tasks/s,
#: against the best bare boto3 loop.
OVERHEAD_TARGET = 0.9

#: Scenario 2's target: the best worker with threads (processes x threads, or threads
#: alone), in tasks/s, against the best bare boto3 configuration ...
LATENCY_TARGET = 1.0
#: ... with at most this share of that bare configuration's PSS.
LATENCY_MEMORY = 1 / 3

#: The async scenario's targets: tasks a second of one task process, and its PSS.
ASYNC_RATE = 400
ASYNC_PSS = 100 * 2**20

#: The footprint scenario's targets: by task processes, the most PSS of the worker's whole
#: process tree, in bare boto3 client processes.
FOOTPRINT_TARGETS = {4: 3.0, 16: 6.0}

#: How the memory columns are measured (see benchmarks.run.measure).
MEMORY_HOW = (
    "Memory is PSS of all the contender's processes after it served its tasks (read half a "
    "second after its last outcome, before it is stopped; a page shared by several processes "
    "counted once) and, in brackets, RSS (a shared page counted in each process)."
)

#: How the worker runs in every scenario.
WORKER_HOW = (
    "The worker runs as users run it, `activities worker benchmarks.workloads.<workload>` "
    "with the pool options its label says, at the command's default log level (INFO) unless "
    "its label says another; its output is discarded, but every log line is still formatted "
    "and written."
)


def report(results: list[Scenario], baseline: dict[str, int], took: float) -> str:
    """The Markdown report of ``results``; ``baseline``: an idle bare client's PSS and RSS."""
    lines = [
        "# Benchmarks",
        "",
        (
            f"Measured {dt.date.today().isoformat()} on {os.cpu_count()} cores "
            f"(Python {sys.version.split()[0]}), in {took:.0f} s, by `nox -s bench`."
        ),
        "Every contender ran against the same in-memory endpoint (`benchmarks/endpoint.py`),",
        "which measures from the first task handed out to the last outcome received; tasks are",
        "queued once the contender has its polls open, so start-up is not counted.",
        "Contenders and endpoint share the machine's cores.",
        WORKER_HOW,
        "",
        f"![Tasks per second by contender; sfn-activities in blue]({BARS})",
        "",
    ]
    for scenario in results:
        lines += section(scenario)
    lines += [
        MEMORY,
        "",
        (
            "A bare `import boto3; boto3.client('stepfunctions')` process, idle (it served no "
            f"task): PSS {baseline['pss'] / 2**20:.0f} MiB (RSS {baseline['rss'] / 2**20:.0f} "
            "MiB). The footprint scenario measures one after it served tasks, its yardstick."
        ),
        f"{MEMORY_HOW} A bare loop with one process is that one process.",
        "",
        *_process_sizes(results),
        "",
        NOTES.read_text(),
    ]
    return "\n".join(lines)


def section(scenario: Scenario, measured_by: str | None = None) -> list[str]:
    """The lines of ``scenario``'s section, its heading first.

    ``measured_by``: how it was measured, when not with the rest of the report.
    """
    lines = [f"## {scenario.title}", ""]
    if measured_by:
        lines += [f"Measured {dt.date.today().isoformat()} by {measured_by}.", ""]
    if scenario.sweep:
        lines += _sweep_table(scenario)
    elif scenario.arrivals is not None:
        lines += _arrivals_table(scenario)
    elif scenario.activity == "bench-Dispatch":
        lines += _latency_table(scenario)
    elif scenario.activity == "bench-Chatty":
        lines += _heartbeat_table(scenario)
    elif scenario.key == "footprint":
        lines += _footprint_table(scenario)
    else:
        lines += _rate_table(scenario)
    return lines


def splice(text: str, section_lines: list[str]) -> str:
    """``text`` (a report) with the section of the same heading replaced by ``section_lines``.

    A section runs from its ``## `` heading to the next; one the report lacks goes before
    the memory section, where a full run puts the scenarios' last.
    """
    lines = text.split("\n")
    heading = section_lines[0]
    if heading in lines:
        start = lines.index(heading)
        end = next(
            (i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines)
        )
    else:
        start = end = lines.index(MEMORY) if MEMORY in lines else len(lines)
    return "\n".join([*lines[:start], *section_lines, *lines[end:]])


def _rate_table(scenario: Scenario) -> list[str]:
    rounds = f", {scenario.rounds} rounds (median, and the range)" if scenario.rounds > 1 else ""
    lines = [
        f"{scenario.tasks} tasks, delay {scenario.delay * 1000:.0f} ms per call{rounds}.",
        f"{MEMORY_HOW}",
        "",
        *_targets(scenario),
        "| contender | tasks/s | vs best bare boto3 | memory, PSS (RSS) | tasks lost |",
        "|---|---|---|---|---|",
    ]
    best_bare = max(
        (r["rate"] for label, r in scenario.results.items() if label.startswith("bare")),
        default=None,
    )
    for label, stats in scenario.results.items():
        if stats["rate"] is None:
            lines.append(f"| {label} | {stats['note']} | | | |")
            continue
        rate = f"{stats['rate']:.0f}"
        if len(stats["rates"]) > 1:
            rate += f" ({min(stats['rates']):.0f} to {max(stats['rates']):.0f})"
        ratio = f"{stats['rate'] / best_bare:.2f}x" if best_bare else ""
        memory = stats.get("memory")
        size = (
            f"{memory['pss'] / 2**20:.0f} MiB ({memory['rss'] / 2**20:.0f} MiB)" if memory else ""
        )
        lost = str(stats["lost"])
        if stats.get("exited") is not None:
            lost += f" (exited with code {stats['exited']} while serving)"
        lines.append(f"| {label} | {rate} | {ratio} | {size} | {lost} |")
    return [*lines, ""]


def _targets(scenario: Scenario) -> list[str]:
    """The lines saying whether ``scenario`` met its target, where it has one."""
    if scenario.key == "overhead":
        return [_overhead_target(scenario), ""]
    if scenario.key == "latency":
        return [_latency_target(scenario), ""]
    if scenario.key == "async":
        return [_async_target(scenario), ""]
    return []


def _best(
    scenario: Scenario, which: Callable[[Contender], bool]
) -> tuple[str, dict[str, Any]] | None:
    """The label and result of the fastest contender of ``scenario`` that ``which`` picks."""
    return max(_ran(scenario, which), key=lambda pair: pair[1]["rate"], default=None)


def _ran(
    scenario: Scenario, which: Callable[[Contender], bool]
) -> list[tuple[str, dict[str, Any]]]:
    """The label and result of each contender of ``scenario`` that ``which`` picks and ran."""
    return [
        (contender.label, scenario.results[contender.label])
        for contender in scenario.contenders
        if which(contender) and scenario.results.get(contender.label, {}).get("rate")
    ]


def _overhead_target(scenario: Scenario) -> str:
    target = (
        f"Target: the best sfn-activities configuration at the command's default log level "
        f"at least {OVERHEAD_TARGET}x the best bare boto3 loop; the rows at log level "
        "WARNING, and the one with metrics and JSON logs on, are extras, not counted."
    )
    bare = _best(scenario, lambda c: c.kind == "bare")
    ours = _best(scenario, lambda c: c.kind == "worker" and c.headline)
    if bare is None or ours is None:
        return f"{target} Not measured: no worker or no bare loop ran."
    ratio = ours[1]["rate"] / bare[1]["rate"]
    status = "Met" if ratio >= OVERHEAD_TARGET else "Not met"
    return f"{target} {status}: {ours[0]} at {ratio:.2f}x {bare[0]}."


def _latency_target(scenario: Scenario) -> str:
    target = (
        f"Target: the best configuration of sfn-activities with threads (`--processes N "
        f"--threads M`, or `--threads M` alone: one process of M threads) at least "
        f"{LATENCY_TARGET:.1f}x the best bare boto3 configuration, with at most a third of "
        "that configuration's memory (PSS)."
    )
    bare = _best(scenario, lambda c: c.kind == "bare")
    threaded = _ran(scenario, lambda c: c.kind == "worker" and c.headline and bool(c.threads))
    bare_pss = (bare[1].get("memory") or {}).get("pss") if bare else None
    if bare is None or not threaded:
        return f"{target} Not met: no configuration with threads ran (see the table)."
    if bare_pss is None or any(
        not (result.get("memory") or {}).get("pss") for _, result in threaded
    ):
        return f"{target} Not measured: memory unknown."

    def ratio(result: dict[str, Any]) -> float:
        return float(result["rate"] / bare[1]["rate"])

    def share(result: dict[str, Any]) -> float:
        return float(result["memory"]["pss"] / bare_pss)

    def said(label: str, result: dict[str, Any]) -> str:
        return (
            f"{label} at {ratio(result):.2f}x in {result['memory']['pss'] / 2**20:.0f} MiB, "
            f"{share(result):.2f} of its memory"
        )

    fast = [(label, result) for label, result in threaded if ratio(result) >= LATENCY_TARGET]
    both = [(label, result) for label, result in fast if share(result) <= LATENCY_MEMORY]
    against = f"{bare[0]} ({bare_pss / 2**20:.0f} MiB)"
    if both:
        label, result = max(both, key=lambda pair: pair[1]["rate"])
        return f"{target} Met: {said(label, result)}, against {against}."
    if fast:
        label, result = min(fast, key=lambda pair: pair[1]["memory"]["pss"])
        smallest = f"the smallest above {LATENCY_TARGET:.1f}x is {said(label, result)}"
        return f"{target} Not met: {smallest}, against {against}."
    label, result = max(threaded, key=lambda pair: pair[1]["rate"])
    return f"{target} Not met: the fastest is {said(label, result)}, against {against}."


def _async_target(scenario: Scenario) -> str:
    target = (
        f"Target: one task process of sfn-activities running async activities serves at "
        f"least {ASYNC_RATE} tasks/s with under {ASYNC_PSS // 2**20} MiB PSS (the worker's "
        "process, its forkserver and the task process); the sync rows are extras."
    )
    ours = _best(scenario, lambda c: c.kind == "worker" and c.headline and c.processes == 1)
    if ours is None:
        return f"{target} Not measured: no async worker ran."
    pss = (ours[1].get("memory") or {}).get("pss")
    if pss is None:
        return f"{target} Not measured: {ours[0]} at {ours[1]['rate']:.0f} tasks/s, memory unknown."
    status = "Met" if ours[1]["rate"] >= ASYNC_RATE and pss < ASYNC_PSS else "Not met"
    return (
        f"{target} {status}: {ours[0]} at {ours[1]['rate']:.0f} tasks/s, {pss / 2**20:.0f} MiB PSS."
    )


def _footprint_table(scenario: Scenario) -> list[str]:
    """Each contender's memory after serving the tasks, in bare boto3 client processes."""
    lines = [
        (
            f"{scenario.tasks} zero-work tasks per contender, delay "
            f"{scenario.delay * 1000:.0f} ms per call. {MEMORY_HOW} The worker runs as "
            "`activities worker benchmarks.workloads.nothing --processes N`, the command's "
            "defaults otherwise (log level INFO). The yardstick is one bare boto3 client "
            "process: `benchmarks.bare` with one process and one thread (boto3 imported, a "
            "Step Functions client made), measured the same way, after it served the same "
            "tasks."
        ),
        "",
        (
            "Targets: the PSS of the worker's whole process tree at most "
            + ", ".join(
                f"{limit:.0f}x that of one bare boto3 client process with {processes} task "
                "processes"
                for processes, limit in FOOTPRINT_TARGETS.items()
            )
            + "."
        ),
        "",
        (
            "| contender | processes measured | memory, PSS (RSS) | PSS in bare boto3 client "
            "processes | target | status | tasks/s | tasks lost |"
        ),
        "|---|---|---|---|---|---|---|---|",
    ]
    yardstick = next(
        (
            scenario.results.get(contender.label, {}).get("memory")
            for contender in scenario.contenders
            if contender.kind == "bare"
        ),
        None,
    )
    for contender in scenario.contenders:
        stats = scenario.results.get(contender.label)
        if stats is None:
            continue
        if stats["rate"] is None:
            lines.append(f"| {contender.label} | {stats['note']} | | | | | | |")
            continue
        memory = stats.get("memory")
        if not memory:
            size = count = ratio = ""
        else:
            size = f"{memory['pss'] / 2**20:.0f} MiB ({memory['rss'] / 2**20:.0f} MiB)"
            count = str(memory["processes"])
            ratio = f"{memory['pss'] / yardstick['pss']:.2f}x" if yardstick else ""
        limit = FOOTPRINT_TARGETS.get(contender.processes) if contender.kind == "worker" else None
        target = "the yardstick" if contender.kind == "bare" else ""
        if limit:
            target = f"at most {limit:.0f}x"
        status = ""
        if limit and memory and yardstick:
            status = "met" if memory["pss"] <= limit * yardstick["pss"] else "not met"
        elif limit:
            status = "not measured"
        lines.append(
            f"| {contender.label} | {count} | {size} | {ratio} | {target} | {status} "
            f"| {stats['rate']:.0f} | {stats['lost']} |"
        )
    return [*lines, ""]


def _process_sizes(results: list[Scenario]) -> list[str]:
    """A line per worker of the first scenario: its processes and the largest one's RSS."""
    lines = []
    for label, stats in results[0].results.items():
        memory = stats.get("memory")
        if label.startswith("sfn-activities") and memory:
            lines.append(
                f"- {label}: {memory['processes']} processes, the largest "
                f"{memory['largest'] / 2**20:.0f} MiB RSS."
            )
    return lines


def _sweep_table(scenario: Scenario) -> list[str]:
    series = _series(scenario)
    levels = sorted({level for points in series.values() for level in points})
    lines = [
        (
            f"Tasks per second by concurrency (task slots: threads, processes, or processes x "
            f"threads per process), delay {scenario.delay * 1000:.0f} ms per call; "
            f"{scenario.tasks} tasks per unit of concurrency (at least 100; stefuna 200 at "
            "most)."
        ),
        "",
        f"![Tasks per second against concurrency; sfn-activities in blue]({SWEEP})",
        "",
        "| contender | " + " | ".join(str(level) for level in levels) + " |",
        "|---|" + "---|" * len(levels),
    ]
    for name, points in series.items():
        cells = [f"{points[level]:.0f}" if level in points else "" for level in levels]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    notes = [
        f"- {label}: {stats['note']}"
        for label, stats in scenario.results.items()
        if stats.get("rate") is None and stats.get("note")
    ]
    if notes:
        lines += ["", "Not in the table:", "", *notes]
    return [*lines, ""]


def _latency_table(scenario: Scenario) -> list[str]:
    label, stats = next(iter(scenario.results.items()))
    outputs = sorted(float(o) * 1000 for o in stats["outputs"])
    p99 = outputs[int(len(outputs) * 0.99) - 1]
    return [
        f"{scenario.tasks} tasks, delay {scenario.delay * 1000:.0f} ms per call.",
        "",
        "| contender | median | p99 |",
        "|---|---|---|",
        f"| {label} | {statistics.median(outputs):.2f} ms | {p99:.2f} ms |",
        "",
    ]


def _arrivals_table(scenario: Scenario) -> list[str]:
    arrivals = scenario.arrivals
    assert arrivals is not None  # noqa: S101 - called for arrivals scenarios only
    lines = [
        (
            f"{arrivals.count} zero-work tasks queued one at a time, {arrivals.rate:.0f} a "
            f"second for {arrivals.duration:.0f} s, each on one of {len(arrivals.activities)} "
            f"activities drawn at random (seed {arrivals.seed}); empty polls last "
            f"{arrivals.poll_wait:.0f} s; delay {scenario.delay * 1000:.0f} ms per call. "
            f"Feeding starts once the contender has {len(arrivals.activities)} polls open, or "
            f"after {arrivals.ready_timeout:.0f} s with fewer (the polls open then are in the "
            "table). The worker runs as users run it, `activities worker benchmarks.many`, "
            "at the command's default log level."
        ),
        "",
        (
            "The endpoint times each task: from queued to handed out (a poll returned it) and "
            "from queued to completed (its outcome arrived). With zero work, queued to "
            "completed bounds queued to started from above: a worker may hold a task it was "
            "handed before it starts it. Median, p99 and max are over the tasks completed; a "
            "task lost never completed."
        ),
        "",
        (
            f"Target: queued to completed p99 under {ARRIVALS_P99 * 1000:.0f} ms and max "
            f"under {ARRIVALS_MAX * 1000:.0f} ms."
        ),
        "",
        (
            "| contender | polls open at start | queued to handed out, ms: median / p99 / max "
            "| queued to completed, ms: median / p99 / max | tasks lost |"
        ),
        "|---|---|---|---|---|",
    ]
    for label, stats in scenario.results.items():
        if "note" in stats:
            lines.append(f"| {label} | {stats['note']} | | | |")
            continue
        latencies = stats["latencies"]
        lines.append(
            f"| {label} | {stats['waiting_at_start']} | {_spread(latencies['handed_out'])} "
            f"| {_spread(latencies['completed'])} | {stats['lost']} |"
        )
    return [*lines, ""]


def arrivals_summary(stats: dict[str, Any]) -> str:
    """One line of an arrivals scenario's result, for the runner's progress."""
    latencies = stats["latencies"]
    return (
        f"{stats['waiting_at_start']} polls open, handed out {_spread(latencies['handed_out'])}"
        f" ms, completed {_spread(latencies['completed'])} ms, {stats['lost']} lost"
    )


def _spread(seconds: list[float]) -> str:
    """Median / p99 / max of ``seconds``, in milliseconds."""
    if not seconds:
        return "none"
    ordered = sorted(seconds)
    p99 = ordered[max(0, math.ceil(len(ordered) * 0.99) - 1)]
    return f"{statistics.median(ordered) * 1000:.1f} / {p99 * 1000:.1f} / {ordered[-1] * 1000:.1f}"


def _heartbeat_table(scenario: Scenario) -> list[str]:
    stats = next(iter(scenario.results.values()))
    yields = sum(int(o) for o in stats["outputs"])
    return [
        f"{scenario.tasks} tasks, delay {scenario.delay * 1000:.0f} ms per call.",
        "",
        "| tasks | yields | heartbeats sent |",
        "|---|---|---|",
        f"| {scenario.tasks} | {yields} | {stats.get('heartbeats', 0)} |",
        "",
    ]


def _series(scenario: Scenario) -> dict[str, dict[int, float]]:
    """Rates by series and concurrency, of a sweep."""
    series: dict[str, dict[int, float]] = {}
    for contender in scenario.contenders:
        stats = scenario.results.get(contender.label, {})
        if stats.get("rate") and contender.series and contender.concurrency:
            series.setdefault(contender.series, {})[contender.concurrency] = stats["rate"]
    return series


def bar_chart(results: list[Scenario]) -> str:
    """An SVG bar chart of tasks/s per contender, for the throughput scenarios."""
    width, label_width, bar, gap = 800, 340, 14, 4
    rows: list[str] = []
    y = 10
    for scenario in results:
        rates = {label: r["rate"] for label, r in scenario.results.items() if r.get("rate")}
        if scenario.sweep or len(rates) < 2:  # noqa: PLR2004 - a chart compares two or more
            continue
        top = max(rates.values())
        rows.append(f'<text x="0" y="{y + 12}" font-weight="bold">{escape(scenario.title)}</text>')
        y += 20
        for label, rate in rates.items():
            length = (width - label_width - 60) * rate / top
            colour = OURS if label.startswith("sfn-activities") else PALETTE[0]
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
    return _svg(width, y, rows)


def sweep_chart(scenario: Scenario) -> str:
    """An SVG line chart of tasks/s against concurrency (log scale), one line per series."""
    width, height, left, right, top, bottom = 820, 380, 60, 290, 30, 40
    series = _series(scenario)
    levels = sorted({level for points in series.values() for level in points})
    peak = max((rate for points in series.values() for rate in points.values()), default=1.0)
    ceiling = _nice_ceiling(peak)
    span = math.log2(max(levels[-1], 2)) if levels else 1.0

    def x(level: int) -> float:
        return left + (width - left - right) * math.log2(level) / span

    def y(rate: float) -> float:
        return height - bottom - (height - top - bottom) * rate / ceiling

    rows = [f'<text x="{left}" y="18" font-weight="bold">{escape(scenario.title)}</text>']
    for step in range(6):
        rate = ceiling * step / 5
        rows += [
            (
                f'<line x1="{left}" x2="{width - right}" y1="{y(rate):.1f}" '
                f'y2="{y(rate):.1f}" stroke="#e4e4e4"/>'
            ),
            f'<text x="{left - 6}" y="{y(rate) + 4:.1f}" text-anchor="end">{rate:.0f}</text>',
        ]
    for level in levels:
        rows.append(
            f'<text x="{x(level):.1f}" y="{height - bottom + 16}" text-anchor="middle">'
            f"{level}</text>"
        )
    rows.append(
        f'<text x="{(left + width - right) / 2}" y="{height - 6}" text-anchor="middle">'
        "concurrency (task slots)</text>"
    )
    others = iter(PALETTE)
    for index, (name, points) in enumerate(series.items()):
        colour = OURS if name.startswith("sfn-activities") else next(others, PALETTE[0])
        dash = ""
        if name.startswith("sfn-activities") and " x " in name:  # processes x threads
            dash = ' stroke-dasharray="9 3 2 3"'
        elif name.endswith("threads"):
            dash = ' stroke-dasharray="5 3"'

        path = " ".join(f"{x(level):.1f},{y(rate):.1f}" for level, rate in sorted(points.items()))
        legend_y = top + 18 * index
        rows += [
            f'<polyline points="{path}" fill="none" stroke="{colour}" stroke-width="2"{dash}/>',
            *(
                f'<circle cx="{x(level):.1f}" cy="{y(rate):.1f}" r="3" fill="{colour}"/>'
                for level, rate in points.items()
            ),
            (
                f'<line x1="{width - right + 12}" x2="{width - right + 36}" y1="{legend_y}" '
                f'y2="{legend_y}" stroke="{colour}" stroke-width="2"{dash}/>'
            ),
            f'<text x="{width - right + 42}" y="{legend_y + 4}">{escape(name)}</text>',
        ]
    return _svg(width, height, rows)


def _nice_ceiling(peak: float) -> float:
    """The smallest of 1, 2 or 5 times a power of ten that is at least ``peak``."""
    power = 10 ** math.floor(math.log10(max(peak, 1.0)))
    return float(next(step * power for step in (1, 2, 5, 10) if step * power >= peak))


def _svg(width: int, height: int, rows: list[str]) -> str:
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'font-family="sans-serif" font-size="12">\n'
        f'<rect width="{width}" height="{height}" fill="white"/>\n' + "\n".join(rows) + "\n</svg>\n"
    )


def summarize(rates: list[float], stats: dict[str, Any]) -> dict[str, Any]:
    """One contender's result over its rounds: the median rate, every rate, the last stats."""
    return {**stats, "rates": rates, "rate": statistics.median(rates) if rates else None}
