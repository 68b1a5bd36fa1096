"""The worker's settings: checked when made, each bad one named."""

from __future__ import annotations

import os

import pytest

from activities import ConfigurationError
from activities._settings import WorkerSettings


def test_defaults_are_a_process_per_cpu_and_a_poll_per_slot() -> None:
    settings = WorkerSettings()
    assert settings.concurrency == (os.cpu_count() or 1)
    assert settings.poll_limit == settings.concurrency
    assert not settings.use_threads


def test_threads_and_a_lower_poll_limit() -> None:
    settings = WorkerSettings(threads=8, pollers=3)
    assert (settings.use_threads, settings.concurrency, settings.poll_limit) == (True, 8, 3)


def test_more_pollers_than_slots_are_not_polls() -> None:
    """A poll is only opened by a free slot: there cannot be more open than slots."""
    assert WorkerSettings(processes=2, pollers=10).poll_limit == 2


@pytest.mark.parametrize(
    ("setting", "value"),
    [("threads", 0), ("pollers", -2), ("shutdown_grace", float("inf")), ("processes", 0.0)],
)
def test_a_bad_setting_names_itself(setting: str, value: float) -> None:
    with pytest.raises(ConfigurationError, match=rf"^{setting} must be"):
        WorkerSettings(**{setting: value})


def test_a_shutdown_grace_of_zero_is_allowed() -> None:
    assert WorkerSettings(shutdown_grace=0).shutdown_grace == 0


def test_settings_are_frozen() -> None:
    settings = WorkerSettings(processes=2)
    with pytest.raises(AttributeError):
        settings.processes = 3  # type: ignore[misc]


def test_fewer_polls_than_task_lists_are_explained() -> None:
    assert WorkerSettings(processes=3).short_of_polls(3) is None
    assert "4 task lists but only 3 slots" in (WorkerSettings(processes=3).short_of_polls(4) or "")
    shortage = WorkerSettings(threads=8, pollers=2).short_of_polls(3)
    assert shortage is not None
    assert shortage.startswith("3 task lists but only 2 pollers")
