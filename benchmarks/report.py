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
    from benchmarks.run import Scenario

NOTES = Path(__file__).with_name("notes.md")
BARS = "benchmarks.svg"  # written beside the report
SWEEP = "benchmarks-concurrency.svg"
OURS = "#2f6fb0"
PALETTE = ["#9a9a9a", "#d08c2c", "#5a9e4b", "#8e5ba8"]
MEMORY = "## 5. Memory"  # the heading after the scenarios' sections

#: The target of the "many task lists" scenario, on queued -> completed, in seconds.
ARRIVALS_P99 = 0.020
ARRIVALS_MAX = 0.100


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
        "which measures from the first task handed out to the last outcome received; tasks are",
        "queued once the contender has its polls open, so start-up is not counted.",
        "Contenders and endpoint share the machine's cores.",
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
            "A bare `import boto3; boto3.client('stepfunctions')` process: "
            f"{baseline_rss / 2**20:.0f} MiB."
        ),
        (
            "The memory column above is the whole process tree of each contender, read half "
            "way through: PSS (a page shared by several processes counted once) and, in "
            "brackets, RSS (counted in each)."
        ),
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
        "",
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
        lines.append(f"| {label} | {rate} | {ratio} | {size} | {stats['lost']} |")
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
            f"Tasks per second by concurrency (threads or processes), delay "
            f"{scenario.delay * 1000:.0f} ms per call; {scenario.tasks} tasks per unit of "
            "concurrency (at least 100; stefuna 200 at most)."
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
    width, label_width, bar, gap = 760, 300, 14, 4
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
    width, height, left, right, top, bottom = 760, 380, 60, 250, 30, 40
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
        "concurrency (threads or processes)</text>"
    )
    others = iter(PALETTE)
    for index, (name, points) in enumerate(series.items()):
        colour = OURS if name.startswith("sfn-activities") else next(others, PALETTE[0])
        dash = ' stroke-dasharray="5 3"' if name.endswith("threads") else ""
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
    return next(step * power for step in (1, 2, 5, 10) if step * power >= peak)


def _svg(width: int, height: int, rows: list[str]) -> str:
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'font-family="sans-serif" font-size="12">\n'
        f'<rect width="{width}" height="{height}" fill="white"/>\n' + "\n".join(rows) + "\n</svg>\n"
    )


def summarize(rates: list[float], stats: dict[str, Any]) -> dict[str, Any]:
    """One contender's result over its rounds: the median rate, every rate, the last stats."""
    return {**stats, "rates": rates, "rate": statistics.median(rates) if rates else None}
