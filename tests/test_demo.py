"""The demo runs end to end: what a new user sees first."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from examples.demo import main, order

if TYPE_CHECKING:
    from activities.local import LocalStepFunctions

pytestmark = pytest.mark.integration


def test_demo_reports_every_kind_of_outcome(
    local_sfn: LocalStepFunctions,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Executions succeed, succeed after a Retry, or are caught; none fails; exit code 0."""
    for name, value in local_sfn.environment().items():
        monkeypatch.setenv(name, value)
    assert main(["--executions", "6", "--endpoint-url", local_sfn.endpoint_url]) == 0
    out = capsys.readouterr().out
    table = dict(
        line.strip().rsplit(None, 1)
        for line in out.split("outcome")[1].splitlines()[1:]
        if line.strip()
    )
    assert table == {
        "succeeded": "3",
        "retried, then succeeded": "2",
        "caught ValueError": "1",
    }


def test_inputs_cover_each_path() -> None:
    """The batch's inputs include plain, retried and refused orders."""
    orders = [order(number) for number in range(6)]
    assert sum(o["succeed_on_attempt"] == 1 for o in orders) == 2
    assert sum(o["quantity"] == 0 for o in orders) == 1
