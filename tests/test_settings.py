"""The worker's settings: checked when made, each bad one named."""

from __future__ import annotations

import os

import pytest

from activities import ConfigurationError
from activities.worker._settings import ASYNC_TASKS, BUSY_POLLS, WorkerSettings, async_tasks_for
from tests import async_workload, workloads


def test_polls_default_to_one_per_task_list_and_more_for_busy_ones_within_the_room() -> None:
    """Each poll may bring a task: never more polls than the slots and the buffer hold."""
    many = WorkerSettings(processes=16, async_tasks=100)  # 1,616 slots and positions
    assert many.polls_at_most(3) == 3 + BUSY_POLLS
    assert WorkerSettings(processes=2).polls_at_most(3) == 2 + 3  # slots + buffer
    assert WorkerSettings(processes=2, buffer=1).polls_at_most(3) == 3
    assert WorkerSettings(processes=16, async_tasks=100, pollers=5).polls_at_most(3) == 5


def test_defaults_are_a_process_per_cpu_and_no_cap_on_polls() -> None:
    settings = WorkerSettings()
    assert settings.concurrency == (os.cpu_count() or 1)
    assert (settings.pollers, settings.buffer) == (None, None)
    assert not settings.use_threads


def test_threads_and_a_cap_on_polls() -> None:
    settings = WorkerSettings(threads=8, pollers=3, buffer=5)
    assert (settings.use_threads, settings.concurrency, settings.pollers, settings.buffer) == (
        True,
        8,
        3,
        5,
    )


@pytest.mark.parametrize(
    ("options", "slots", "per_unit", "in_threads", "shape"),
    [
        ({"processes": 4}, 4, 1, False, "4 processes"),
        ({"processes": 1}, 1, 1, False, "1 process"),
        ({"threads": 8}, 8, 1, True, "8 threads"),
        ({"processes": 2, "threads": 8}, 16, 8, False, "2 processes x 8 threads"),
        ({"processes": 3, "threads": 1}, 3, 1, False, "3 processes x 1 thread"),
        ({"processes": 1, "async_tasks": 500}, 501, 1, False, "1 process + 500 async tasks"),
        (
            {"processes": 2, "threads": 4, "async_tasks": 50},
            108,
            4,
            False,
            "2 processes x 4 threads + 50 async tasks each",
        ),
    ],
)
def test_the_pools_shape(
    options: dict[str, int], slots: int, per_unit: int, in_threads: bool, shape: str
) -> None:
    """Processes, threads of the worker's process, or threads in each of the processes."""
    settings = WorkerSettings(**options)
    assert settings.concurrency == slots
    assert settings.slots_per_unit == per_unit
    assert settings.use_threads is in_threads
    assert settings.describe() == shape


def test_async_positions_follow_the_slots_of_each_process() -> None:
    """Positions 0-1 and 5-6 are slots, 2-4 and 7-9 async positions."""
    settings = WorkerSettings(processes=2, threads=2, async_tasks=3)
    assert settings.positions_per_unit == 5
    assert [settings.is_async_position(at) for at in range(10)] == [
        False,
        False,
        True,
        True,
        True,
    ] * 2
    assert not WorkerSettings(processes=2).is_async_position(1)
    assert WorkerSettings(processes=2).sync_positions() is None


def test_threads_alone_put_the_async_positions_after_the_thread_slots() -> None:
    settings = WorkerSettings(threads=2, async_tasks=3)
    assert settings.concurrency == 5
    assert [settings.is_async_position(at) for at in range(5)] == [False, False, True, True, True]
    assert settings.units() == [[0], [1], [2, 3, 4]]
    assert (settings.sync_positions(), settings.async_positions()) == ([0, 1], [2, 3, 4])
    assert settings.describe() == "2 threads + 3 async tasks"


def test_each_task_process_is_a_unit_of_its_slots_and_positions() -> None:
    settings = WorkerSettings(processes=2, threads=2, async_tasks=1)
    assert settings.units() == [[0, 1, 2], [3, 4, 5]]


@pytest.mark.parametrize(
    ("setting", "value"),
    [
        ("threads", 0),
        ("pollers", -2),
        ("buffer", 0),
        ("shutdown_grace", float("inf")),
        ("processes", 0.0),
        ("async_tasks", -1),
    ],
)
def test_a_bad_setting_names_itself(setting: str, value: float) -> None:
    with pytest.raises(ConfigurationError, match=rf"^{setting} must be"):
        WorkerSettings(**{setting: value})


class TestAsyncTasks:
    """Async positions by default where an activity is async: none where none is."""

    def test_an_async_activity_gets_the_default(self) -> None:
        served = [workloads.Echo, async_workload.AsyncEcho]
        assert async_tasks_for(served, None) == ASYNC_TASKS == 100

    def test_sync_activities_alone_get_none(self) -> None:
        assert async_tasks_for([workloads.Echo], None) == 0

    @pytest.mark.parametrize("given", [0, 1, 500])
    def test_a_given_number_is_kept(self, given: int) -> None:
        """0 included: async tasks then run on the slots."""
        assert async_tasks_for([async_workload.AsyncEcho], given) == given

    def test_none_means_no_async_position(self) -> None:
        settings = WorkerSettings(processes=2, async_tasks=0)
        assert (settings.concurrency, settings.async_positions()) == (2, [])
        assert settings.sync_positions() is None
        assert settings.describe() == "2 processes"


def test_a_shutdown_grace_of_zero_is_allowed() -> None:
    assert WorkerSettings(shutdown_grace=0).shutdown_grace == 0


def test_settings_are_frozen() -> None:
    settings = WorkerSettings(processes=2)
    with pytest.raises(AttributeError):
        settings.processes = 3  # type: ignore[misc]


def test_slots_fewer_than_task_lists_are_no_shortage() -> None:
    """Every task list gets a poll of its own, whatever the number of slots."""
    assert WorkerSettings(processes=1).short_of_polls(60) is None


def test_a_cap_on_polls_below_the_task_lists_is_explained() -> None:
    assert WorkerSettings(threads=8, pollers=3).short_of_polls(3) is None
    shortage = WorkerSettings(threads=8, pollers=2).short_of_polls(3)
    assert shortage is not None
    assert shortage.startswith("3 task lists but at most 2 pollers")
