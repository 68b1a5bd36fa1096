from __future__ import annotations

import logging

import pytest

from activities import RetryPolicy
from activities._aws.retry import MAX_GAP, MIN_GAP, REPORT_EVERY, Pacer


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


class TestRetryPolicy:
    def test_pauses_grow_and_are_capped(self) -> None:
        policy = RetryPolicy(base=0.05, cap=1.0)
        for failed, longest in [(1, 0.05), (2, 0.1), (3, 0.2), (10, 1.0)]:
            pauses = [policy.pause(failed) for _ in range(200)]
            assert all(0 <= pause <= longest for pause in pauses)
            assert max(pauses) > longest / 2, "full jitter reaches toward the bound"

    @pytest.mark.parametrize("failed", [1_024, 1_025, 10**6, 10**9, 2**70])
    def test_any_number_of_failures_in_a_row_pauses_within_the_cap(
        self, failed: int, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A poll failing for hours (1,024 failures and on) still pauses: the cap, no overflow."""
        monkeypatch.setattr("random.uniform", lambda low, high: high)  # the longest pause
        assert RetryPolicy(base=0.05, cap=20.0).pause(failed) == 20.0
        assert RetryPolicy(base=5.0, cap=1e308).pause(failed) == 1e308

    @pytest.mark.parametrize(
        "settings",
        [{"attempts": 0}, {"base": 0}, {"cap": -1}, {"cap": float("inf")}, {"base": float("nan")}],
    )
    def test_bad_settings_name_themselves(self, settings: dict[str, float]) -> None:
        with pytest.raises(ValueError, match=next(iter(settings))):
            RetryPolicy(**settings)  # type: ignore[arg-type]


class TestPacer:
    def test_no_gap_until_throttled(self) -> None:
        clock = Clock()
        pacer = Pacer(clock=clock, sleep=clock.sleep)
        for _ in range(5):
            assert pacer.wait("SendTaskSuccess") == 0
        assert clock.slept == []

    def test_throttling_spaces_the_starts_of_that_operation(self) -> None:
        clock = Clock()
        pacer = Pacer(clock=clock, sleep=clock.sleep)
        for _ in range(5):
            pacer.throttled("SendTaskSuccess")
        gap = pacer.gap("SendTaskSuccess")
        assert MIN_GAP < gap <= MAX_GAP
        pacer.wait("SendTaskSuccess")
        pacer.wait("SendTaskSuccess")
        pacer.wait("SendTaskSuccess")
        assert clock.slept == pytest.approx([gap, gap]), "starts one gap apart"
        assert pacer.wait("GetActivityTask") == 0

    def test_the_gap_is_capped_and_closes_as_calls_are_taken(self) -> None:
        pacer = Pacer()
        for _ in range(100):
            pacer.throttled("GetActivityTask")
        assert pacer.gap("GetActivityTask") == MAX_GAP
        for _ in range(100):
            pacer.taken("GetActivityTask")
        assert pacer.gap("GetActivityTask") == 0

    def test_random_throttling_keeps_the_gap_small(self) -> None:
        """Three calls in ten throttled whatever the rate: the pacing stays near zero."""
        pacer = Pacer()
        pattern = [True, False, False, True, False, False, False, True, False, False]
        for throttled in pattern * 100:
            (pacer.throttled if throttled else pacer.taken)("SendTaskSuccess")
        assert pacer.gap("SendTaskSuccess") < 5 * MIN_GAP

    def test_throttling_is_reported_now_and_then(self, caplog: pytest.LogCaptureFixture) -> None:
        clock = Clock()
        pacer = Pacer(clock=clock, sleep=clock.sleep)
        with caplog.at_level(logging.WARNING, "activities.client"):
            for _ in range(30):
                pacer.throttled("GetActivityTask")
                clock.now += 1
        lines = [record.getMessage() for record in caplog.records]
        assert len(lines) == 30 // int(REPORT_EVERY)
        assert lines[0].startswith("Step Functions throttled 1 call so far: GetActivityTask 1")
        assert lines[1].startswith("Step Functions throttled 10 calls in 10 s: GetActivityTask 10")
