"""Chaos, shorter than ``nox -s chaos``: task processes SIGKILLed under load, stops during start.

Each scenario runs ``activities worker`` as users run it against the benchmarks' endpoint
(:mod:`benchmarks.chaos`), whose polls behave as Step Functions': a task handed to a poll
whose process is gone stays open. What is asserted is the promise, not a speed: after the
kills every task ended (succeeded, or failed with ``WorkerCrashed`` because it ran in a
killed process), none is left open, none was reported twice, new tasks are all served,
and the worker stops on SIGTERM; a SIGTERM in a worker's first second stops it too.
"""

from __future__ import annotations

import pytest

from benchmarks import chaos


@pytest.mark.parametrize("scenario", list(chaos.SCENARIOS))
def test_killed_task_processes_take_nothing_but_their_running_tasks(scenario: str) -> None:
    row = chaos.kills(chaos.SCENARIOS[scenario], count=4, every=1.0, seed=7)
    assert row["left open"] == 0, row
    assert row["reported twice"] == 0, row
    assert row["other failures"] == 0, row
    assert row["succeeded"] + row["WorkerCrashed"] == row["handed out"], row
    assert str(row[f"new {chaos.NEW_TASKS} served"]).startswith("all"), row
    assert row["stopped"] == "yes", row


def test_a_stop_during_start_is_carried_out() -> None:
    row = chaos.starts(3, seed=11)
    assert row["exited"] == 3, row
