"""Log records of task processes: filtered at the worker's levels."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from activities._childlog import log_levels

if TYPE_CHECKING:
    import pytest


def test_task_processes_get_the_levels_set_in_the_worker(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Levels set on loggers (and the root's) are what a task process filters with."""
    monkeypatch.setattr(logging.getLogger("tests.noisy"), "level", logging.ERROR)
    monkeypatch.setattr(logging.getLogger(), "level", logging.INFO)
    levels = log_levels()
    assert levels[""] == logging.INFO
    assert levels["tests.noisy"] == logging.ERROR
    assert all(level != logging.NOTSET for level in levels.values())
