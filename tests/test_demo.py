"""The demo runs end to end: what a new user sees first."""

from __future__ import annotations

import re
import shlex
from collections import Counter
from typing import TYPE_CHECKING, Any

import pytest

from examples.demo import NEXT, Outcome, main, order, route, table
from tests.processes import ROOT
from tests.test_readme import Command, check

if TYPE_CHECKING:
    from activities.local import LocalStepFunctions


def _table(out: str) -> dict[tuple[str, ...], int]:
    """The rows of the printed outcome table: (outcome, state, path) -> executions."""
    lines = out.split("\n  outcome ")[1].splitlines()[1:]
    rows = {}
    for line in lines:
        if not line.strip() or line.strip().startswith("("):
            break
        *cells, count = re.split(r"\s{2,}", line.strip())
        rows[tuple(cells)] = int(count)
    return rows


@pytest.mark.integration
def test_demo_reports_every_kind_of_outcome(
    local_sfn: LocalStepFunctions,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Executions succeed, succeed after a Retry, or are caught; none fails; exit code 0.

    Each row names the state that decided the outcome and the path the executions took,
    and the table ends with what to try next.
    """
    for name, value in local_sfn.environment().items():
        monkeypatch.setenv(name, value)
    assert main(["--executions", "6", "--endpoint-url", local_sfn.endpoint_url]) == 0
    out = capsys.readouterr().out
    assert _table(out) == {
        ("succeeded", "Reserve", "Echo -> CountWords -> Reserve"): 3,
        ("retried, then succeeded", "Reserve", "Echo -> CountWords -> Reserve x2"): 2,
        ("caught ValueError", "Reserve", "Echo -> CountWords -> Reserve -> Rejected"): 1,
    }
    assert out.rstrip().endswith("\n".join(NEXT))


def test_the_readme_shows_the_table_of_a_default_run() -> None:
    """The README's table is the one 24 executions (the default) give, row for row."""
    readme = (ROOT / "README.md").read_text()
    block = readme.split("It ends like this")[1].split("```")[1].removeprefix("text\n")
    shown = _table("\n" + block)
    names = {"caught": "caught ValueError", "retried": "retried, then succeeded"}
    expected = Counter(
        names["caught"]
        if o["quantity"] == 0
        else names["retried"]
        if o["succeed_on_attempt"]
        else "succeeded"
        for o in map(order, range(24))
    )
    assert {cells[0]: count for cells, count in shown.items()} == expected
    rows = Counter({Outcome(*cells): count for cells, count in shown.items()})
    assert table(rows) == block.splitlines()  # as the demo prints it


def test_inputs_cover_each_path() -> None:
    """The batch's inputs include plain, retried and refused orders."""
    orders = [order(number) for number in range(6)]
    assert sum(o["succeed_on_attempt"] == 1 for o in orders) == 2
    assert sum(o["quantity"] == 0 for o in orders) == 1


def _entered(name: str) -> dict[str, Any]:
    return {"type": "TaskStateEntered", "stateEnteredEventDetails": {"name": name}}


#: The demo's Task states: in :func:`_events`, one of them enters it.
STATES = {"Echo", "CountWords", "Reserve"}


def _events(*kinds: str) -> list[dict[str, Any]]:
    """History events in order: a state's name enters it, anything else is an event type."""
    return [_entered(kind) if kind in STATES else {"type": kind} for kind in kinds]


class TestRoute:
    """The states an execution took, read from its history as Step Functions writes it."""

    def test_a_retry_counts_attempts_in_one_state(self) -> None:
        taken = route(
            _events(
                "ExecutionStarted",
                "Echo",
                "ActivityScheduled",
                "ActivityStarted",
                "ActivitySucceeded",
                "TaskStateExited",
                "Reserve",
                "ActivityScheduled",
                "ActivityStarted",
                "ActivityFailed",
                "ActivityScheduled",
                "ActivityStarted",
                "ActivitySucceeded",
                "TaskStateExited",
                "ExecutionSucceeded",
            )
        )
        assert taken.states == ["Echo", "Reserve"]
        assert taken.failed_in == "Reserve"
        assert taken.path() == "Echo -> Reserve x2"

    def test_a_catch_goes_on_to_the_next_state(self) -> None:
        events = _events("Reserve", "ActivityScheduled", "ActivityFailed", "TaskStateExited")
        events.append(
            {"type": "PassStateEntered", "stateEnteredEventDetails": {"name": "Rejected"}}
        )
        taken = route(events)
        assert taken.path() == "Reserve -> Rejected"
        assert taken.failed_in == "Reserve"

    def test_no_failure_no_state_to_blame(self) -> None:
        taken = route(_events("Echo", "ActivityScheduled", "ActivitySucceeded"))
        assert taken.failed_in is None
        assert taken.path() == "Echo"


def test_the_table_names_outcome_state_path_and_count() -> None:
    """Columns line up whatever their widths; a retried path is explained under it."""
    outcomes = Counter(
        {
            Outcome("succeeded", "Reserve", "Echo -> Reserve"): 3,
            Outcome("retried, then succeeded", "Reserve", "Echo -> Reserve x2"): 12,
        }
    )
    lines = table(outcomes)
    assert _table("\n" + "\n".join(lines)) == {
        ("retried, then succeeded", "Reserve", "Echo -> Reserve x2"): 12,
        ("succeeded", "Reserve", "Echo -> Reserve"): 3,
    }
    assert len({len(line) for line in lines[:3]}) == 1
    assert "xN" in lines[-1]


def test_what_next_names_pages_and_commands_that_exist() -> None:
    """The paths it names are files of the checkout; its commands parse, modules exist."""
    text = "\n".join(NEXT)
    pages = re.findall(r"docs/[\w-]+\.md", text)
    assert pages
    assert all((ROOT / page).is_file() for page in pages)
    commands = re.findall(r"(activities worker [\w.]+|python3 -m nox -s \w+)", text)
    assert len(commands) >= 2
    for command in commands:
        assert shlex.split(command)
        assert check(Command("examples/demo.py", 1, command, inline=False), ROOT, set()) == []
