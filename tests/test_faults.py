"""Faults of Step Functions, played by the benchmarks' endpoint: a freeze, throttling.

The worker runs as users run it (the command line, its defaults); what is asserted is
what an operator relies on: no task left open, and the log lines that say what happened.
How fast the worker recovers is measured by ``nox -s faults`` (benchmarks/faults.py).
"""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
from typing import TYPE_CHECKING

from tests.processes import ROOT, bench, bench_environment, polls_waiting
from tests.waiting import wait_until

if TYPE_CHECKING:
    from pathlib import Path

ACTIVITY = "faults-Pause"


def finished(endpoint: str) -> int:
    stats = bench(endpoint, "Stats")
    return int(stats.get("succeeded", 0)) + int(stats.get("failed", 0))


def serve(endpoint: str, log: Path, *options: str) -> subprocess.Popen[bytes]:
    """``activities worker tests.fault_workload --processes 2``, its log in ``log``."""
    command = [sys.executable, "-m", "activities", "worker", "tests.fault_workload"]
    with log.open("w") as file:
        worker = subprocess.Popen(
            [*command, "--processes", "2", *options],
            cwd=ROOT,
            env=bench_environment(endpoint),
            stderr=file,
        )
    assert wait_until(lambda: polls_waiting(endpoint) >= 1), "the worker never polled"
    return worker


def stop(worker: subprocess.Popen[bytes]) -> None:
    worker.send_signal(signal.SIGTERM)
    try:
        worker.wait(60)
    finally:
        worker.kill()
        worker.wait()


def test_a_frozen_endpoint_is_warned_of_and_no_task_is_left_open(
    bench_endpoint: str, tmp_path: Path
) -> None:
    """Frozen for 30 s while outcomes go out: one warning, a line when it answers, all done.

    Outcomes whose attempts timed out during the freeze are taken once it thaws (the
    endpoint answers what it read); the last attempt of each then hears that the task is
    closed, which the worker knows may be its own earlier attempt.
    """
    log = tmp_path / "worker.log"
    worker = serve(bench_endpoint, log)
    try:
        bench(bench_endpoint, "Load", {"activity": ACTIVITY, "count": 300, "input": "0.05"})
        assert wait_until(lambda: finished(bench_endpoint) >= 20), "no task was served"
        bench(bench_endpoint, "Fault", {"freeze": 30})
        time.sleep(30)
        assert wait_until(lambda: finished(bench_endpoint) == 300, timeout=120), "tasks lost"
        stats = bench(bench_endpoint, "Stats")
    finally:
        stop(worker)
    assert (stats["succeeded"], stats["open"], stats["queued"]) == (300, 0, 0)
    text = log.read_text()
    warned = re.search(
        r"WARNING +MainProcess activities.worker: Step Functions has answered none", text
    )
    assert warned, text
    recovered = re.search(
        r"INFO +MainProcess activities.worker: Step Functions answers again", text
    )
    assert recovered, text
    assert recovered.start() > warned.start()
    assert "before its outcome arrived" not in text, "an outcome taken was called lost"


def test_throttled_calls_are_retried_and_warned_of(bench_endpoint: str, tmp_path: Path) -> None:
    """Three calls in ten throttled: every task is done, and the log says calls were throttled.

    The burst lasts about a second: each process that was throttled sums it up once it is
    over, with no call of its own after it to say so; its throttled attempts are DEBUG.
    """
    log = tmp_path / "worker.log"
    summary = re.compile(r"WARNING +\S+ activities.client: Step Functions throttled \d+ call")
    worker = serve(bench_endpoint, log)
    try:
        bench(bench_endpoint, "Fault", {"throttle": 0.3})
        bench(bench_endpoint, "Load", {"activity": ACTIVITY, "count": 100, "input": "0"})
        assert wait_until(lambda: finished(bench_endpoint) == 100, timeout=120), "tasks lost"
        stats = bench(bench_endpoint, "Stats")
        assert wait_until(lambda: summary.search(log.read_text()), timeout=30), log.read_text()
    finally:
        stop(worker)
    # The polls after the last task are throttled too: count them all, once it stopped.
    throttled = bench(bench_endpoint, "Stats")["throttled"]
    assert (stats["succeeded"], stats["open"], stats["queued"]) == (100, 0, 0)
    assert stats["throttled"] > 0
    said = [
        int(line.split(" throttled ")[1].split()[0])
        for line in log.read_text().splitlines()
        if summary.search(line)
    ]
    assert 0 < sum(said) <= throttled, "each throttled call counted once at most"
