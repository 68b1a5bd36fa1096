"""Async activities: ``async def run()`` mapped, run, heartbeated and cancelled as sync ones."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import os
import signal
import subprocess
import sys
import time
from typing import TYPE_CHECKING, Any

import pytest

from activities import Activity, ActivityDefinitionError, activity, cli, make_client
from activities.registry import discover
from activities.testing import ActivityEnvironment
from activities.worker import Worker
from activities.worker._eventloop import EventLoop
from activities.worker._settings import ASYNC_TASKS
from activities.worker._taskprocess import task_process_connections
from tests import async_workload, workloads
from tests.fake_sfn import ARN_PREFIX, FakeStepFunctions
from tests.processes import ROOT, bench, bench_environment, polls_waiting, task_processes
from tests.waiting import wait_until

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path


@contextlib.contextmanager
def thread_worker(
    fake: FakeStepFunctions, *activities: type[Activity], threads: int = 2, **options: Any
) -> Iterator[Worker]:
    """A started worker of ``threads`` threads, stopped at once when the block ends."""
    worker = Worker(activities, threads=threads, client=fake, **options)  # type: ignore[arg-type]
    worker.start()
    try:
        yield worker
    finally:
        worker.terminate()
        worker.join(10)


class TestDefinition:
    def test_an_async_generator_is_refused(self) -> None:
        with pytest.raises(ActivityDefinitionError, match="async generator"):

            class Beats(Activity):
                async def run(self):  # type: ignore[no-untyped-def]
                    yield

    def test_an_async_function_activity(self) -> None:
        @activity
        async def doubled(n: int) -> int:
            await asyncio.sleep(0)
            return 2 * n

        assert ActivityEnvironment().run(doubled, '{"n": 21}').result == 42


class TestEnvironment:
    def test_from_a_sync_test(self) -> None:
        report = ActivityEnvironment().run(async_workload.AsyncEcho, '{"value": [1, 2]}')
        assert report.result == [1, 2]

    def test_from_an_async_test(self) -> None:
        async def test() -> None:
            report = await ActivityEnvironment().run_async(async_workload.AsyncEcho, '{"value": 3}')
            assert report.result == 3

        asyncio.run(test())

    def test_run_async_refuses_a_sync_activity(self) -> None:
        class Sync(Activity):
            def run(self) -> None: ...

        with pytest.raises(TypeError, match="not async def"):
            asyncio.run(ActivityEnvironment().run_async(Sync))

    def test_input_is_typed_as_for_sync_run(self) -> None:
        report = ActivityEnvironment().run(async_workload.AsyncBeats, '{"beats": "two"}')
        assert report.error == "activities.InvalidInput"

    def test_an_exception_fails_the_task_by_name(self) -> None:
        report = ActivityEnvironment().run(async_workload.AsyncFails, '{"message": "no"}')
        assert report.error == "Flaky"
        assert "no" in (report.cause or "")

    def test_awaited_heartbeats_are_sent(self) -> None:
        report = ActivityEnvironment().run(async_workload.AsyncBeats, '{"beats": 3}')
        assert (report.result, report.heartbeats) == (3, 3)

    def test_a_heartbeat_that_finds_the_task_gone_cancels_it(self) -> None:
        environment = ActivityEnvironment(cancel_after_heartbeats=2)
        report = environment.run(async_workload.AsyncBeats, '{"beats": 5}')
        assert report.cancelled
        assert report.heartbeats == 2

    def test_the_coroutine_is_cancelled_at_its_await(self) -> None:
        async_workload.Forever.cancelled.clear()
        report = ActivityEnvironment(cancel_after=0.05).run(async_workload.Forever)
        assert report.cancelled
        assert async_workload.Forever.cancelled == ["test-task-token"]


class TestWhatIsNotACancellation:
    def test_a_cancelled_error_of_something_awaited_fails_the_task(self) -> None:
        report = ActivityEnvironment().run(async_workload.AsyncAwaitsCancelled)
        assert report.error == "CancelledError"

    def test_system_exit_fails_the_task(self) -> None:
        assert ActivityEnvironment().run(async_workload.AsyncExits).error == "SystemExit"

    def test_a_run_that_ignores_its_cancellation_is_cancelled_all_the_same(self) -> None:
        report = ActivityEnvironment(cancel_after=0.05).run(async_workload.AsyncIgnoresCancel)
        assert report.cancelled


@pytest.fixture(params=[0, None], ids=["on-the-slots", "on-async-positions"])
def async_tasks(request: pytest.FixtureRequest) -> int | None:
    """``async_tasks=0`` (async tasks run on the slots) or left out (async positions)."""
    value: int | None = request.param
    return value


class TestWorker:
    """Async tasks on the slots (``async_tasks=0``) and on the default async positions."""

    def test_system_exit_leaves_the_loop_running(
        self, fake: FakeStepFunctions, async_tasks: int | None
    ) -> None:
        """One task's sys.exit() fails that task; the next async task runs on the same loop."""
        exits = fake.add_task("async-Exits", "{}")
        with thread_worker(
            fake,
            async_workload.AsyncExits,
            async_workload.AsyncEcho,
            threads=1,
            async_tasks=async_tasks,
        ) as worker:
            assert fake.wait_for(1)
            echo = fake.add_task("async-Echo", '{"value": "after"}')
            assert fake.wait_for(2)
            assert worker.stop(timeout=10)
        assert fake.failures[exits][0] == "SystemExit"
        assert fake.successes[echo] == '"after"'

    def test_async_tasks_of_one_process_run_at_once(
        self, fake: FakeStepFunctions, async_tasks: int | None
    ) -> None:
        """Three threads, three tasks that return only once all three run together."""
        async_workload.Gathering.reset()
        tokens = [fake.add_task("async-Gathering", '{"count": 3}') for _ in range(3)]
        with thread_worker(
            fake, async_workload.Gathering, threads=3, async_tasks=async_tasks
        ) as worker:
            assert fake.wait_for(3)
            assert worker.stop(timeout=10)
        assert {token: fake.successes.get(token) for token in tokens} == dict.fromkeys(tokens, "3")

    def test_a_worker_serves_sync_and_async_activities(
        self, fake: FakeStepFunctions, async_tasks: int | None
    ) -> None:
        sync = fake.add_task("it-Echo", '{"value": "s"}')
        coroutine = fake.add_task("async-Echo", '{"value": "a"}')
        with thread_worker(
            fake, workloads.Echo, async_workload.AsyncEcho, async_tasks=async_tasks
        ) as worker:
            assert fake.wait_for(2)
            assert worker.stop(timeout=10)
        assert (fake.successes[sync], fake.successes[coroutine]) == ('"s"', '"a"')

    def test_a_gone_task_is_cancelled_at_its_await(
        self, fake: FakeStepFunctions, async_tasks: int | None
    ) -> None:
        """Its automatic heartbeat finds it gone: cancelled at once, nothing sent, slot free."""
        async_workload.Forever.cancelled.clear()
        token = fake.add_task("async-Forever", "{}")
        fake.gone.add(token)
        with thread_worker(fake, async_workload.Forever, async_tasks=async_tasks) as worker:
            assert wait_until(lambda: token in async_workload.Forever.cancelled)
            echo = fake.add_task("async-Forever", "{}")
            assert wait_until(lambda: echo in fake.handed_out), "the slot was not freed"
            worker.terminate()
        assert token not in fake.successes
        assert token not in fake.failures

    def test_past_the_grace_a_coroutine_is_cancelled_and_its_task_failed(
        self, fake: FakeStepFunctions, async_tasks: int | None
    ) -> None:
        async_workload.Forever.cancelled.clear()
        token = fake.add_task("async-Forever", "{}")
        with thread_worker(
            fake, async_workload.Forever, shutdown_grace=0.2, async_tasks=async_tasks
        ) as worker:
            assert wait_until(lambda: token in fake.handed_out)
            assert worker.stop(timeout=30)
        assert fake.failures[token][0] == "activities.WorkerShutdown"
        # The loop's watchdog cancels it within a tick of the grace's end, maybe after stop().
        assert wait_until(lambda: token in async_workload.Forever.cancelled)


class TestAsyncByDefault:
    """No ``async_tasks``: 100 async positions in each process that runs tasks, if needed."""

    def test_a_worker_of_an_async_activity_has_the_default_positions(
        self, fake: FakeStepFunctions
    ) -> None:
        """With threads alone, the worker's own process has them, beside its thread slots."""
        served = [workloads.Echo, async_workload.AsyncEcho]
        worker = Worker(served, threads=2, client=fake)  # type: ignore[arg-type]
        assert worker.settings.async_tasks == ASYNC_TASKS == 100
        assert worker.settings.describe() == "2 threads + 100 async tasks"
        assert worker.settings.units()[-1] == list(range(2, 102))

    def test_each_task_process_has_them(self) -> None:
        client = functools.partial(
            make_client, endpoint_url="http://127.0.0.1:9", region_name="us-east-1"
        )
        worker = Worker([async_workload.AsyncEcho], processes=2, threads=4, client=client)
        assert worker.settings.describe() == "2 processes x 4 threads + 100 async tasks each"
        assert len(worker.settings.async_positions()) == 200

    def test_a_worker_of_sync_activities_has_none(self, fake: FakeStepFunctions) -> None:
        worker = Worker([workloads.Echo], threads=2, client=fake)  # type: ignore[arg-type]
        assert (worker.settings.async_tasks, worker.settings.concurrency) == (0, 2)

    @pytest.mark.parametrize("given", [0, 3])
    def test_async_tasks_sets_them(self, fake: FakeStepFunctions, given: int) -> None:
        """0: none, async tasks run on the slots."""
        served = [async_workload.AsyncEcho]
        worker = Worker(served, threads=2, async_tasks=given, client=fake)  # type: ignore[arg-type]
        assert len(worker.settings.async_positions()) == given

    @pytest.mark.parametrize(
        ("options", "async_tasks"),
        [([], 100), (["--async-tasks", "7"], 7), (["--async-tasks", "0"], 0)],
    )
    def test_the_commands_client_has_connections_for_the_positions(
        self, monkeypatch: pytest.MonkeyPatch, options: list[str], async_tasks: int
    ) -> None:
        """``activities worker``: the client its processes make has room for their calls."""
        seen: dict[str, Any] = {}

        class Recorder:
            def __init__(self, activities: Any, **options: Any) -> None:
                seen.update(options)

            def run(self) -> int:
                return 0

        monkeypatch.setattr(cli, "Worker", Recorder)
        command = ["worker", "tests.async_workload", "--region", "us-east-1", *options]
        assert cli.main(command) == 0
        served = len(discover("tests.async_workload"))
        expected = task_process_connections(1, async_tasks) + served + 8
        assert seen["client"].keywords["max_pool_connections"] == expected
        assert seen["async_tasks"] == (None if not options else async_tasks)

    def test_fifty_tasks_of_one_thread_worker_run_at_once(self, fake: FakeStepFunctions) -> None:
        """Fifty tasks awaiting 0.2 s that return only once fifty run together: one thread."""
        async_workload.Gathering.reset()
        task = '{"count": 50, "seconds": 0.2}'
        tokens = [fake.add_task("async-Gathering", task) for _ in range(50)]
        with thread_worker(fake, async_workload.Gathering, threads=1) as worker:
            assert fake.wait_for(50, timeout=30)
            assert worker.stop(timeout=10)
        assert [fake.successes.get(token) for token in tokens] == ["50"] * 50
        assert async_workload.Gathering.most == 50


class TestAsyncPositionsInTheWorkersProcess:
    """``threads`` alone with ``async_tasks``: the worker's own process has the positions."""

    def test_many_async_tasks_run_at_once_beside_one_thread(self, fake: FakeStepFunctions) -> None:
        """Eight tasks that return only once eight run together: one thread slot, 8 positions."""
        async_workload.Gathering.reset()
        tokens = [fake.add_task("async-Gathering", '{"count": 8}') for _ in range(8)]
        with thread_worker(fake, async_workload.Gathering, threads=1, async_tasks=8) as worker:
            assert fake.wait_for(8)
            assert worker.stop(timeout=10)
        assert [fake.successes.get(token) for token in tokens] == ["8"] * 8

    def test_sync_tasks_keep_to_the_thread_slots(self, fake: FakeStepFunctions) -> None:
        """A sync task that holds the only thread: the async tasks run on the positions."""
        workloads.Blocker.release.clear()
        blocked = fake.add_task("it-Blocker", "{}")
        try:
            with thread_worker(
                fake, workloads.Blocker, async_workload.AsyncEcho, threads=1, async_tasks=2
            ) as worker:
                assert wait_until(lambda: blocked in fake.handed_out)
                # A sync task waits for the thread in the buffer: the async ones pass it.
                waiting = fake.add_task("it-Blocker", "{}")
                assert wait_until(lambda: waiting in fake.handed_out)
                echoes = [fake.add_task("async-Echo", f'{{"value": {n}}}') for n in range(4)]
                assert fake.wait_for(4)
                assert [fake.successes[token] for token in echoes] == ["0", "1", "2", "3"]
                assert blocked not in fake.successes
                workloads.Blocker.release.set()
                assert fake.wait_for(6)
                assert worker.stop(timeout=10)
        finally:
            workloads.Blocker.release.set()

    def test_a_stop_past_the_grace_fails_the_running_coroutines(
        self, fake: FakeStepFunctions
    ) -> None:
        async_workload.Forever.cancelled.clear()
        tokens = [fake.add_task("async-Forever", "{}") for _ in range(3)]
        with thread_worker(
            fake, async_workload.Forever, threads=1, async_tasks=3, shutdown_grace=0.2
        ) as worker:
            assert wait_until(lambda: all(token in fake.handed_out for token in tokens))
            assert worker.stop(timeout=30)
        assert [fake.failures[token][0] for token in tokens] == ["activities.WorkerShutdown"] * 3
        assert wait_until(lambda: set(tokens) <= set(async_workload.Forever.cancelled))

    def test_a_coroutine_that_ignores_its_cancellation_does_not_hold_up_a_stop(
        self, fake: FakeStepFunctions
    ) -> None:
        """Past the grace the worker fails its task; the stop ends though it runs on."""
        stubborn = async_workload.AsyncStubborn
        stubborn.released.clear()
        token = fake.add_task("async-Stubborn", "{}")
        try:
            with thread_worker(
                fake, stubborn, threads=1, async_tasks=3, shutdown_grace=0.2
            ) as worker:
                assert wait_until(lambda: token in fake.handed_out)
                assert worker.stop(timeout=10)
            assert fake.failures[token][0] == "activities.WorkerShutdown"
        finally:
            stubborn.released.set()

    def test_idle_async_task_lists_leave_room_for_a_poll_of_a_sync_one(self) -> None:
        """Buffer 1, two idle async task lists polled: the sync one has its poll too."""
        fake = FakeStepFunctions(poll_wait=30.0)  # an empty poll stays open
        try:
            with thread_worker(
                fake,
                workloads.Echo,
                async_workload.AsyncEcho,
                async_workload.AsyncBeats,
                threads=1,
                async_tasks=2,
                buffer=1,
            ):
                assert wait_until(lambda: fake.polling[ARN_PREFIX + "async-Beats"] >= 1)
                token = fake.add_task("it-Echo", '{"value": 1}')
                assert fake.wait_for(1, timeout=10), dict(fake.polling)
                assert fake.successes[token] == "1"
        finally:
            fake.close()

    def test_sync_tasks_received_stay_within_the_buffer(self, fake: FakeStepFunctions) -> None:
        """Idle async positions are no room for sync tasks: one runs, at most `buffer` wait."""
        workloads.Blocker.release.clear()
        tokens = [fake.add_task("it-Blocker", "{}") for _ in range(15)]
        try:
            with thread_worker(
                fake, workloads.Blocker, async_workload.AsyncEcho, threads=1, async_tasks=20
            ) as worker:
                assert wait_until(lambda: tokens[0] in fake.handed_out)
                time.sleep(1.0)  # polls that would overfill the buffer have had their time
                received = sum(token in fake.handed_out for token in tokens)
                assert worker._handoff is not None
                assert received <= 1 + worker._handoff.capacity
                workloads.Blocker.release.set()
        finally:
            workloads.Blocker.release.set()


class TestBlockedLoop:
    def test_a_task_that_blocks_the_loop_is_named(self, caplog: pytest.LogCaptureFixture) -> None:
        async def blocking() -> None:
            time.sleep(0.6)

        loop = EventLoop(blocked_after=0.2)
        with caplog.at_level(logging.WARNING, "activities.worker._eventloop"):
            running = loop.start(blocking(), "task AAAA of Blocker")
            assert running.future is not None
            running.future.result(timeout=10)
            assert wait_until(lambda: caplog.records)
        message = caplog.records[0].getMessage()
        assert message.startswith("task AAAA of Blocker has blocked this process's event loop")


class TestAsyncPositions:
    """``--async-tasks``: a task process's async positions, as users run the worker."""

    @staticmethod
    def serve(endpoint: str, log: Path, positions: int | None) -> subprocess.Popen[bytes]:
        """``activities worker tests.async_workload --processes 1 [--async-tasks N]``, polling."""
        command = [sys.executable, "-m", "activities", "worker", "tests.async_workload"]
        command += ["--processes", "1"]
        if positions is not None:
            command += ["--async-tasks", str(positions)]
        with log.open("w") as file:
            worker = subprocess.Popen(
                command, cwd=ROOT, env=bench_environment(endpoint), stderr=file
            )
        assert wait_until(lambda: polls_waiting(endpoint) >= 1), log.read_text()
        return worker

    def gathered(
        self, endpoint: str, tmp_path: Path, positions: int | None, task: dict[str, Any]
    ) -> str:
        """Serve ``task["count"]`` Gathering tasks with ``positions``; each returned the count.

        A Gathering task returns only once ``count`` of them run together. The worker's log.
        """
        log = tmp_path / "worker.log"
        worker = self.serve(endpoint, log, positions)
        count = task["count"]
        try:
            load = {"activity": "async-Gathering", "count": count, "input": json.dumps(task)}
            bench(endpoint, "Load", load)
            assert wait_until(
                lambda: bench(endpoint, "Stats").get("succeeded", 0) == count, timeout=30
            ), log.read_text()
            worker.send_signal(signal.SIGTERM)
            assert worker.wait(30) == 0
        finally:
            worker.kill()
            worker.wait()
        assert bench(endpoint, "Stats", {"outputs": True})["outputs"] == [str(count)] * count
        return log.read_text()

    def test_one_process_runs_many_async_tasks_at_once(
        self, bench_endpoint: str, tmp_path: Path
    ) -> None:
        """Twenty tasks that return only once twenty run together: one process, one slot."""
        text = self.gathered(bench_endpoint, tmp_path, 20, {"count": 20})
        assert "1 process + 20 async tasks" in text
        assert "ready: all 21 slots are up (20 of them async positions)" in text
        assert text.count("succeeded: async-Gathering") == 20

    def test_with_no_option_one_process_runs_fifty_at_once(
        self, bench_endpoint: str, tmp_path: Path
    ) -> None:
        """Fifty tasks awaiting 0.2 s that return only once fifty run together: the default."""
        text = self.gathered(bench_endpoint, tmp_path, None, {"count": 50, "seconds": 0.2})
        assert "1 process + 100 async tasks" in text
        assert "ready: all 101 slots are up (100 of them async positions)" in text

    def test_a_crash_fails_every_task_its_positions_held(
        self, bench_endpoint: str, tmp_path: Path
    ) -> None:
        log = tmp_path / "worker.log"
        worker = self.serve(bench_endpoint, log, 10)
        try:
            load = {"activity": "async-Echo", "count": 10, "input": '{"value": 1, "seconds": 60}'}
            bench(bench_endpoint, "Load", load)
            assert wait_until(lambda: log.read_text().count("started: async-Echo") == 10), (
                log.read_text()
            )
            [process] = task_processes(worker.pid)
            os.kill(process, signal.SIGKILL)
            assert wait_until(
                lambda: bench(bench_endpoint, "Stats").get("failed", 0) == 10, timeout=30
            ), log.read_text()
            worker.send_signal(signal.SIGTERM)
            worker.wait(30)
        finally:
            worker.kill()
            worker.wait()
        stats = bench(bench_endpoint, "Stats", {"outputs": True})
        assert stats["outputs"] == ["activities.WorkerCrashed"] * 10
        assert stats.get("succeeded", 0) == 0
