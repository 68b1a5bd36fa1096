from __future__ import annotations

import logging

import pytest

from activities._aws.outage import POLL_DUE, REPEAT, Hearing, OutageWatch


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


def two_processes(clock: Clock) -> tuple[Hearing, Hearing, OutageWatch]:
    answered, overdue = [0.0, 0.0], [0.0, 0.0]
    watch = OutageWatch(answered, overdue, after=15, clock=clock)
    return (
        Hearing(answered, overdue, 0, clock=clock),
        Hearing(answered, overdue, 1, clock=clock),
        watch,
    )


def lines(caplog: pytest.LogCaptureFixture) -> list[tuple[int, str]]:
    return [(record.levelno, record.getMessage()) for record in caplog.records]


def test_idle_long_polls_are_not_a_silence(clock: Clock) -> None:
    first, _, watch = two_processes(clock)
    first.answered(first.started("CreateActivity"))
    first.started("GetActivityTask")
    clock.now += 50
    assert watch.silence() == 0
    clock.now += POLL_DUE
    assert watch.silence() > 0, "a poll open past its minute is overdue"


def test_a_silence_is_warned_of_once_a_minute_and_its_end_said(
    clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    first, second, watch = two_processes(clock)
    first.answered(first.started("SendTaskSuccess"))
    clock.now += 1
    hung = second.started("SendTaskHeartbeat")
    with caplog.at_level(logging.INFO, "activities.worker"):
        for _ in range(14):
            clock.now += 1
            watch.look()
        assert lines(caplog) == []
        clock.now += 1
        watch.look()
        assert lines(caplog) == [
            (
                logging.WARNING,
                (
                    "Step Functions has answered none of the worker's calls for 15 s; they "
                    "are retried, and no task is given up for it"
                ),
            )
        ]
        second.unanswered(hung)  # timed out: still overdue
        for _ in range(int(REPEAT) - 1):
            clock.now += 1
            watch.look()
        assert len(caplog.records) == 1, "not repeated within the minute"
        clock.now += 1
        watch.look()
        assert (
            caplog.records[-1]
            .getMessage()
            .startswith("Step Functions has answered none of the worker's calls for 75 s")
        )
        clock.now += 3
        first.answered(first.started("SendTaskSuccess"))
        watch.look()
        assert lines(caplog)[-1] == (
            logging.INFO,
            "Step Functions answers again, after 78 s without an answer",
        )
        clock.now += 1
        watch.look()
        assert len(caplog.records) == 3


def test_an_answer_elsewhere_is_no_silence(clock: Clock) -> None:
    """One process's hung call while another hears answers: Step Functions answers."""
    first, second, watch = two_processes(clock)
    second.started("SendTaskSuccess")
    for _ in range(30):
        clock.now += 1
        first.answered(first.started("SendTaskSuccess"))
    assert watch.silence() < 1


def test_an_attempt_that_never_left_is_not_overdue(clock: Clock) -> None:
    """No credentials, bad parameters: the call never reached Step Functions."""
    first, _, watch = two_processes(clock)
    first.forget(first.started("SendTaskSuccess"))
    clock.now += 60
    assert watch.silence() == 0


def test_a_new_process_clears_what_the_one_before_left(clock: Clock) -> None:
    answered, overdue = [0.0], [0.0]
    Hearing(answered, overdue, 0, clock=clock).started("SendTaskSuccess")  # then it died
    assert overdue[0] > 0
    Hearing(answered, overdue, 0, clock=clock)
    assert overdue[0] == 0


def test_a_poll_refused_at_once_is_due_from_then(clock: Clock) -> None:
    """A long poll that ended without an answer will get none: it counts from its end."""
    first, _, watch = two_processes(clock)
    first.unanswered(first.started("GetActivityTask"))  # a refused connection
    clock.now += 15
    assert watch.silence() == 15


def test_the_worker_hears_silently(clock: Clock, caplog: pytest.LogCaptureFixture) -> None:
    """A process of a worker leaves the warning to the worker's watch: no line of its own."""
    first, _, _ = two_processes(clock)
    with caplog.at_level(logging.DEBUG):
        for _ in range(40):
            first.unanswered(first.started("SendTaskSuccess"))
            clock.now += 1
        first.answered(first.started("SendTaskSuccess"))
    assert lines(caplog) == []


class TestAlone:
    """A client with no worker warns of a silence itself, when an attempt ends unanswered."""

    def test_a_silence_is_warned_of_once_and_its_end_said(
        self, clock: Clock, caplog: pytest.LogCaptureFixture
    ) -> None:
        """Answered at 1000, then every attempt unanswered from 1001: silent from 1001."""
        hearing = Hearing(clock=clock, warn_after=15)
        hearing.answered(hearing.started("SendTaskHeartbeat"))

        def unanswered_until(end: float) -> None:
            while clock.now < end:
                clock.now += 1
                hearing.unanswered(hearing.started("SendTaskHeartbeat"))

        with caplog.at_level(logging.DEBUG):
            unanswered_until(1015)
            assert lines(caplog) == [], "silent for 14 s"
            unanswered_until(1016)
            assert lines(caplog) == [
                (
                    logging.WARNING,
                    (
                        "Step Functions has answered none of this client's calls for 15 s; "
                        "each is retried up to its attempts"
                    ),
                )
            ]
            assert caplog.records[0].name == "activities.client"
            unanswered_until(1016 + REPEAT - 1)
            assert len(caplog.records) == 1, "once a minute at most"
            unanswered_until(1016 + REPEAT)
            assert lines(caplog)[-1][1].startswith(
                "Step Functions has answered none of this client's calls for 75 s"
            )
            clock.now += 1
            hearing.answered(hearing.started("SendTaskHeartbeat"))
            assert lines(caplog)[-1] == (
                logging.INFO,
                "Step Functions answers again, after 76 s without an answer",
            )
            hearing.answered(hearing.started("SendTaskHeartbeat"))
            assert len(caplog.records) == 3

    def test_a_short_blip_says_nothing(
        self, clock: Clock, caplog: pytest.LogCaptureFixture
    ) -> None:
        hearing = Hearing(clock=clock, warn_after=15)
        with caplog.at_level(logging.DEBUG):
            for _ in range(3):
                hearing.unanswered(hearing.started("SendTaskSuccess"))
                clock.now += 4
            hearing.answered(hearing.started("SendTaskSuccess"))
            clock.now += 20
            hearing.answered(hearing.started("SendTaskSuccess"))
        assert lines(caplog) == []
