from __future__ import annotations

from typing import Any

import pytest

from activities import Activity, Failure, Success
from activities.testing import ActivityEnvironment


class Echo(Activity):
    def run(self, value: Any) -> Any:
        return value


class TestActivityEnvironment:
    def test_accepts_a_class_or_an_instance(self) -> None:
        """A class is instantiated; an instance is used as it is."""
        env = ActivityEnvironment()
        assert env.run(Echo, "[1]").result == env.run(Echo(), "[1]").result == 1

    def test_report_of_a_success(self) -> None:
        """The report carries the exact output a worker would send."""
        report = ActivityEnvironment().run(Echo, '{"value": "é"}')
        assert report.outcome == Success('"é"')
        assert (report.succeeded, report.cancelled, report.error, report.cause) == (
            True,
            False,
            None,
            None,
        )

    def test_report_of_a_failure(self) -> None:
        """Asking for the output of a failed task fails the test with the outcome."""
        report = ActivityEnvironment().run(Echo, "{}")
        assert isinstance(report.outcome, Failure)
        assert not report.succeeded
        with pytest.raises(AssertionError, match="did not succeed: Failure"):
            _ = report.output

    def test_cancel_after_zero_heartbeats(self) -> None:
        """The very first heartbeat can be answered with 'task gone'."""

        class Beats(Activity):
            def run(self) -> None:
                self.heartbeat()

        report = ActivityEnvironment(cancel_after_heartbeats=0).run(Beats)
        assert report.cancelled
        assert report.heartbeats == 0

    def test_negative_cancellation_is_refused(self) -> None:
        """A setting that makes no sense fails at construction, naming the setting."""
        with pytest.raises(ValueError, match="cancel_after_heartbeats"):
            ActivityEnvironment(cancel_after_heartbeats=-1)


class Unprintable(Exception):
    def __str__(self) -> str:
        return self.missing  # type: ignore[attr-defined, no-any-return]


def test_an_exception_whose_str_raises_is_reported_by_its_own_name() -> None:
    """The report has the error a worker would send: the class's name, not AttributeError."""

    class Raises(Activity):
        def run(self) -> None:
            raise Unprintable

    report = ActivityEnvironment().run(Raises)
    assert report.error == "Unprintable"
    assert report.cause is not None
    assert "<unprintable Unprintable object>" in report.cause
