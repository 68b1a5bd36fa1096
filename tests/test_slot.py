"""Process and thread slots: what the worker can do to them, and what a process inherits."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from activities._control import Control
from activities._loop import SlotSettings
from activities._slot import ProcessSlot, log_levels, spawn_context

if TYPE_CHECKING:
    import pytest

    from activities._slot import Slot


class Owner:
    def on_ready(self, slot: Slot) -> None: ...

    def on_exit(self, slot: Slot, reason: str, *, was_ready: bool) -> None: ...


def test_a_slot_stopped_before_it_started_is_no_error() -> None:
    """A stop at once can come while the worker is still starting its processes."""
    context = spawn_context()
    settings = SlotSettings(by_arn={}, heartbeat_intervals={}, worker_name="w")
    slot = ProcessSlot(
        settings, Control(context, ["arn:a"], slots=1, pollers=None), Owner(), context
    )
    assert slot.terminate()
    assert not slot.is_alive()


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
