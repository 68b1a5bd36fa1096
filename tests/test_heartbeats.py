"""Heartbeats of running tasks: asked for, automatic, coalesced, and a task found gone."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from activities import Activity, TaskGone
from activities.task import Task
from activities.worker import _heartbeats as heartbeats_module
from activities.worker._heartbeats import Heartbeats, Job
from tests.waiting import wait_until

if TYPE_CHECKING:
    from collections.abc import Iterator


class Quiet(Activity):
    def run(self) -> None: ...


class Recorder:
    """Stands in for an ActivityClient: counts heartbeats, or says the task is gone."""

    def __init__(self, *, gone: bool = False) -> None:
        self.sent: list[str] = []
        self.gone = gone

    def send_heartbeat(self, token: str) -> None:
        self.sent.append(token)
        if self.gone:
            msg = "SendTaskHeartbeat: TaskTimedOut: gone"
            raise TaskGone(msg, code="TaskTimedOut", operation="SendTaskHeartbeat")


def task() -> Task:
    return Task(token="token-1", activity_arn="arn:a", worker_name="w", input="{}")


@pytest.fixture
def client() -> Recorder:
    return Recorder()


@pytest.fixture
def stuck() -> list[Job]:
    return []


@pytest.fixture
def beats(client: Recorder, stuck: list[Job]) -> Iterator[Heartbeats]:
    heartbeats = Heartbeats(client, on_stuck=stuck.append)  # type: ignore[arg-type]
    yield heartbeats
    heartbeats.close()


def test_yields_in_quick_succession_cost_one_heartbeat(beats: Heartbeats, client: Recorder) -> None:
    job = beats.begin(task(), Quiet, None)
    for _ in range(1000):
        beats.ask(job)
    assert wait_until(lambda: client.sent)
    assert client.sent == ["token-1"]


def test_automatic_heartbeats_every_interval(beats: Heartbeats, client: Recorder) -> None:
    """A task that never asks still gets heartbeats, every ``interval`` seconds."""
    job = beats.begin(task(), Quiet, 0.05)
    assert wait_until(lambda: len(client.sent) >= 2)
    beats.end(job)
    sent = len(client.sent)
    assert not wait_until(lambda: len(client.sent) > sent + 1, timeout=0.6), "after the end"


def test_no_automatic_heartbeats_without_an_interval(beats: Heartbeats, client: Recorder) -> None:
    beats.begin(task(), Quiet, None)
    assert not wait_until(lambda: client.sent, timeout=0.6)


def test_a_task_found_gone_raises_at_the_next_ask(stuck: list[Job]) -> None:
    client = Recorder(gone=True)
    beats = Heartbeats(client, on_stuck=stuck.append)  # type: ignore[arg-type]
    try:
        job = beats.begin(task(), Quiet, None)
        beats.ask(job)
        assert wait_until(lambda: job.gone_at is not None)
        with pytest.raises(TaskGone):
            beats.ask(job)
        assert len(client.sent) == 1, "a gone task got more heartbeats"
    finally:
        beats.close()


def test_a_gone_task_that_runs_on_is_reported_stuck_once(
    monkeypatch: pytest.MonkeyPatch, stuck: list[Job]
) -> None:
    """After CANCEL_GRACE, the slot is told, so that a process can be replaced."""
    monkeypatch.setattr(heartbeats_module, "CANCEL_GRACE", 0.0)
    beats = Heartbeats(Recorder(gone=True), on_stuck=stuck.append)  # type: ignore[arg-type]
    try:
        job = beats.begin(task(), Quiet, 0.01)
        assert wait_until(lambda: stuck)
        assert not wait_until(lambda: len(stuck) > 1, timeout=0.6)
        assert stuck == [job]
    finally:
        beats.close()


def test_nothing_is_sent_after_close(beats: Heartbeats, client: Recorder) -> None:
    """A straggler asking for a heartbeat once the worker has stopped gets nothing sent."""
    job = beats.begin(task(), Quiet, None)
    beats.close()
    beats.ask(job)
    assert not wait_until(lambda: client.sent, timeout=0.3)
