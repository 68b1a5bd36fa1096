from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import pytest

from activities import RetryPolicy
from activities._aws.retry import MAX_GAP, MIN_GAP, QUIET, REPORT_EVERY, Pacer

if TYPE_CHECKING:
    from collections.abc import Callable


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


class Later:
    """Looks the pacer asked for later, run when the test says."""

    def __init__(self, clock: Clock | None = None) -> None:
        self.clock = clock if clock is not None else Clock()
        self.asked: list[tuple[float, Callable[[], None]]] = []  # (when, look)

    def __call__(self, delay: float, function: Callable[[], None]) -> None:
        self.asked.append((self.clock.now + delay, function))

    def run(self) -> float:
        """Let the time of the first look come and run it; when it ran."""
        when, function = self.asked.pop(0)
        self.clock.now = max(self.clock.now, when)
        function()
        return when


@pytest.fixture(autouse=True)
def no_timers(monkeypatch: pytest.MonkeyPatch) -> None:
    """Pacers made here without a Later of their own start no timer thread."""
    monkeypatch.setattr("activities._aws.retry._later", Later())


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


def warnings(caplog: pytest.LogCaptureFixture) -> list[tuple[int, str]]:
    return [
        (record.levelno, record.getMessage())
        for record in caplog.records
        if record.name == "activities.client"
    ]


class TestThrottlingSummary:
    """A process says how many calls were throttled: per burst, and every 10 s at most."""

    @pytest.fixture
    def clock(self) -> Clock:
        return Clock()

    @pytest.fixture
    def later(self, clock: Clock) -> Later:
        return Later(clock)

    @pytest.fixture
    def pacer(self, clock: Clock, later: Later) -> Pacer:
        return Pacer(clock=clock, sleep=clock.sleep, later=later)

    def test_a_burst_with_no_call_after_it_is_said_by_a_later_look(
        self, pacer: Pacer, clock: Clock, later: Later, caplog: pytest.LogCaptureFixture
    ) -> None:
        """The process calls no more: the look it asked for says the burst, once over."""
        for _ in range(5):
            pacer.throttled("SendTaskSuccess")
            clock.now += 0.1
        assert len(later.asked) == 1, "one look asked for, not one per call"
        assert later.run() == 1000 + QUIET
        assert warnings(caplog) == [], "a call was throttled 0.6 s ago: not over yet"
        assert later.run() == pytest.approx(1000.4 + QUIET)
        assert warnings(caplog) == [
            (
                logging.WARNING,
                (
                    "Step Functions throttled 5 calls in 0.4 s: SendTaskSuccess 5 "
                    "(one start every 10 ms); they are retried, and paced while it lasts"
                ),
            )
        ]
        assert later.asked == []

    def test_a_look_after_the_summary_was_said_says_nothing(
        self, pacer: Pacer, clock: Clock, later: Later, caplog: pytest.LogCaptureFixture
    ) -> None:
        pacer.throttled("SendTaskSuccess")
        clock.now += QUIET
        pacer.taken("SendTaskSuccess")
        assert len(warnings(caplog)) == 1
        later.run()
        assert len(warnings(caplog)) == 1
        assert later.asked == []

    def test_a_short_burst_is_summarised_with_every_call_once_over(
        self, pacer: Pacer, clock: Clock, caplog: pytest.LogCaptureFixture
    ) -> None:
        """Five calls throttled in 0.4 s: nothing while it lasts, one WARNING counting all five."""
        caplog.set_level(logging.DEBUG, "activities.client")
        for _ in range(5):
            pacer.throttled("GetActivityTask")
            clock.now += 0.1
        pacer.taken("GetActivityTask")
        assert warnings(caplog) == [], "not over yet: a call was throttled less than QUIET ago"
        clock.now += QUIET
        pacer.taken("GetActivityTask")
        assert warnings(caplog) == [
            (
                logging.WARNING,
                (
                    "Step Functions throttled 5 calls in 0.4 s: GetActivityTask 5 "
                    "(one start every 6 ms); they are retried, and paced while it lasts"
                ),
            )
        ]
        clock.now += 60
        pacer.taken("GetActivityTask")
        assert len(warnings(caplog)) == 1, "said once"

    def test_a_single_throttled_call(
        self, pacer: Pacer, clock: Clock, caplog: pytest.LogCaptureFixture
    ) -> None:
        pacer.throttled("SendTaskSuccess")
        for _ in range(3):
            clock.now += QUIET
            pacer.taken("SendTaskSuccess")
        assert warnings(caplog) == [
            (
                logging.WARNING,
                (
                    "Step Functions throttled 1 call: SendTaskSuccess 1 (no longer paced); "
                    "they are retried, and paced while it lasts"
                ),
            )
        ]

    def test_throttling_that_goes_on_is_summarised_every_10_s(
        self, pacer: Pacer, clock: Clock, caplog: pytest.LogCaptureFixture
    ) -> None:
        """A call throttled every second for 30 s: a line each 10 s, with the calls since."""
        for _ in range(30):
            pacer.throttled("GetActivityTask")
            clock.now += 0.5
            pacer.taken("SendTaskSuccess")
            clock.now += 0.5
        lines = [message for _, message in warnings(caplog)]
        assert len(lines) == 2, "at 10 s and at 21 s (10 s after the first call not said)"
        assert lines[0].startswith("Step Functions throttled 11 calls in 10 s: GetActivityTask 11")
        assert lines[1].startswith("Step Functions throttled 11 calls in 10 s: GetActivityTask 11")
        clock.now += QUIET
        pacer.taken("GetActivityTask")
        lines = [message for _, message in warnings(caplog)]
        assert lines[2].startswith("Step Functions throttled 8 calls in 7.0 s: GetActivityTask 8")
        assert sum(int(line.split()[3]) for line in lines) == 30, "every call counted once"

    def test_bursts_close_together_are_summarised_together(
        self, pacer: Pacer, clock: Clock, caplog: pytest.LogCaptureFixture
    ) -> None:
        """Never two lines within 10 s: a burst soon after the last line waits for the next."""
        pacer.throttled("SendTaskHeartbeat")
        clock.now += QUIET
        pacer.taken("SendTaskHeartbeat")
        assert len(warnings(caplog)) == 1
        clock.now += 2
        for _ in range(3):
            pacer.throttled("SendTaskHeartbeat")
        clock.now += QUIET
        pacer.taken("SendTaskHeartbeat")
        assert len(warnings(caplog)) == 1, "within 10 s of the last line"
        clock.now += REPORT_EVERY
        pacer.taken("SendTaskHeartbeat")
        assert [message for _, message in warnings(caplog)][1].startswith(
            "Step Functions throttled 3 calls in 0.0 s: SendTaskHeartbeat 3"
        )

    def test_flush_says_what_is_left(
        self, pacer: Pacer, clock: Clock, caplog: pytest.LogCaptureFixture
    ) -> None:
        pacer.flush()
        assert warnings(caplog) == []
        pacer.throttled("SendTaskSuccess")
        clock.now += 0.2
        pacer.throttled("GetActivityTask")
        pacer.flush()
        assert [message for _, message in warnings(caplog)] == [
            (
                "Step Functions throttled 2 calls in 0.2 s: SendTaskSuccess 1 (one start every "
                "2 ms), GetActivityTask 1 (one start every 2 ms); they are retried, and paced "
                "while it lasts"
            )
        ]
        pacer.flush()
        assert len(warnings(caplog)) == 1

    def test_a_forked_child_leaves_the_parents_calls_to_it(
        self, pacer: Pacer, clock: Clock, later: Later, caplog: pytest.LogCaptureFixture
    ) -> None:
        """The child's copy says nothing of them, and asks for looks of its own."""
        pacer.throttled("SendTaskSuccess")
        assert len(later.asked) == 1
        pacer._forked()  # what os.register_at_fork runs in the child
        pacer.flush()
        assert warnings(caplog) == []
        pacer.throttled("SendTaskHeartbeat")
        assert len(later.asked) == 2, "the parent's timer is not the child's"

    def test_no_thread_for_a_look_is_no_error(
        self, clock: Clock, caplog: pytest.LogCaptureFixture
    ) -> None:
        """At interpreter shutdown no thread starts: the throttled call is not failed for it."""

        def no_thread(delay: float, function: Callable[[], None]) -> None:
            raise RuntimeError("can't create new thread at interpreter shutdown")

        pacer = Pacer(clock=clock, sleep=clock.sleep, later=no_thread)
        pacer.throttled("SendTaskSuccess")
        pacer.throttled("SendTaskSuccess")
        clock.now += QUIET
        pacer.taken("SendTaskSuccess")
        assert [message for _, message in warnings(caplog)] == [
            (
                "Step Functions throttled 2 calls in 0.0 s: SendTaskSuccess 2 (one start every "
                "2 ms); they are retried, and paced while it lasts"
            )
        ]
