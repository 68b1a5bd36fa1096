"""Async activities in real state machines, on a local Step Functions endpoint."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import pytest

from activities import Worker
from tests import async_workload
from tests.stepfunctions import create_machine, history, start, task_state, wait_for
from tests.waiting import wait_until

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from mypy_boto3_stepfunctions import SFNClient

    from activities.local import LocalStepFunctions

pytestmark = pytest.mark.integration

SERVED = [async_workload.AsyncFlaky, async_workload.AsyncBeats, async_workload.AsyncWaits]


@pytest.fixture(scope="module")
def worker(local_sfn: LocalStepFunctions) -> Iterator[Worker]:
    """One task process of three async positions: the async tasks share its event loop."""
    worker = Worker(SERVED, processes=1, async_tasks=3, client=local_sfn.client_factory())
    worker.start()
    yield worker
    worker.terminate()


def arn(activity: type[Any]) -> str:
    return f"arn:aws:states:us-east-1:000000000000:activity:{activity.name}"


@pytest.mark.usefixtures("worker")
class TestAsyncActivities:
    def test_retry_on_the_error_an_async_run_raised(self, sfn: SFNClient) -> None:
        state = task_state(
            arn(async_workload.AsyncFlaky),
            Parameters={"attempt.$": "$$.State.RetryCount", "succeed_on": 1},
            Retry=[{"ErrorEquals": ["Flaky"], "IntervalSeconds": 1, "MaxAttempts": 2}],
            HeartbeatSeconds=10,
        )
        execution = start(sfn, create_machine(sfn, {"Reserve": state}, "Reserve"), {})
        done = wait_for(sfn, execution)
        assert done["status"] == "SUCCEEDED", done
        assert json.loads(done["output"]) == {"attempt": 1}
        failures = [e for e in history(sfn, execution) if e["type"] == "ActivityFailed"]
        assert [f["activityFailedEventDetails"]["error"] for f in failures] == ["Flaky"]

    def test_heartbeats_keep_a_task_past_its_heartbeat_seconds(self, sfn: SFNClient) -> None:
        """Six seconds of work under HeartbeatSeconds=3, declared as the class's
        heartbeat_seconds: heartbeats every second (its awaited ones coalesced to them)
        keep it alive."""
        state = task_state(arn(async_workload.AsyncBeats), HeartbeatSeconds=3, TimeoutSeconds=60)
        execution = start(
            sfn, create_machine(sfn, {"Beat": state}, "Beat"), {"beats": 8, "every": 0.75}
        )
        done = wait_for(sfn, execution)
        assert done["status"] == "SUCCEEDED", done
        assert json.loads(done["output"]) == 8

    def test_stopping_the_execution_cancels_the_coroutine(
        self, sfn: SFNClient, tmp_path: Path
    ) -> None:
        marker = tmp_path / "cancelled"
        state = task_state(arn(async_workload.AsyncWaits), HeartbeatSeconds=10)
        execution = start(
            sfn, create_machine(sfn, {"Wait": state}, "Wait"), {"marker": str(marker)}
        )
        assert wait_until(
            lambda: any(e["type"] == "ActivityStarted" for e in history(sfn, execution))
        ), "the task never started"
        sfn.stop_execution(executionArn=execution)
        assert wait_until(marker.exists), "the coroutine was not cancelled"
