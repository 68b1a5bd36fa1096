from __future__ import annotations

import pickle

import pytest

import activities
from activities import errors


class NotFound(activities.ActivityError):
    error = "NotFound"


class Unnamed(activities.ActivityError):
    pass


class TestTree:
    def test_everything_derives_from_the_root(self) -> None:
        """One except clause catches every exception the framework raises."""
        for name in errors.__all__:
            assert issubclass(getattr(errors, name), errors.ActivitiesError)

    def test_framework_failures_are_namespaced(self) -> None:
        """Failures the framework reports itself are named activities.<Class>."""
        for kind in (
            errors.InvalidInput,
            errors.SerializationError,
            errors.ResultTooLarge,
            errors.WorkerCrashed,
            errors.WorkerShutdown,
        ):
            assert kind.error == f"activities.{kind.__name__}"

    def test_user_errors_name_themselves(self) -> None:
        """A subclass's error is what it sets, else its class name."""
        assert NotFound.error == "NotFound"
        assert Unnamed.error == "Unnamed"

    def test_definition_error_is_a_type_error(self) -> None:
        """A malformed class is a TypeError too, as Python reports bad class definitions."""
        assert issubclass(errors.ActivityDefinitionError, TypeError)


class TestPickling:
    @pytest.mark.parametrize(
        "exc",
        [
            errors.ActivitiesError("root"),
            errors.ActivityDefinitionError("bad", activity="Echo", setting="name"),
            errors.InvalidInput("not json"),
            errors.ResultTooLarge("big", size=300_000, limit=262_144),
            errors.TaskCancelled("gone"),
            errors.ServiceError("boom", code="InternalError", operation="GetActivityTask"),
            errors.TaskGone("gone", code="TaskTimedOut", operation="SendTaskHeartbeat"),
            errors.TaskGone(
                "gone after a timeout",
                code="TaskTimedOut",
                operation="SendTaskSuccess",
                earlier_unanswered=True,
            ),
            errors.Throttled("slow", code="ThrottlingException", operation="GetActivityTask"),
            NotFound("no such order"),
        ],
        ids=lambda exc: type(exc).__name__,
    )
    def test_round_trip_keeps_type_message_and_attributes(
        self, exc: errors.ActivitiesError
    ) -> None:
        """Exceptions cross process boundaries whole."""
        copy = pickle.loads(pickle.dumps(exc))
        assert type(copy) is type(exc)
        assert str(copy) == str(exc)
        assert copy.__dict__ == exc.__dict__
        assert copy.__dict__ or type(exc) in {
            errors.ActivitiesError,
            errors.InvalidInput,
            errors.TaskCancelled,
            NotFound,
        }


@pytest.mark.parametrize(
    ("code", "unanswered"),
    [
        ("ReadTimeoutError", True),
        ("ConnectionClosedError", True),
        ("EndpointConnectionError", False),  # never reached Step Functions
        ("ThrottlingException", False),  # an answer
    ],
)
def test_a_service_error_says_whether_its_request_may_have_landed(
    code: str, unanswered: bool
) -> None:
    """A request sent but never answered may have been taken: a retry's TaskGone is no news."""
    error = errors.ServiceError("x", code=code, operation="SendTaskSuccess", transient=True)
    assert error.unanswered is unanswered
    assert error.earlier_unanswered is False  # set by ActivityClient when it retried
    assert not error.earlier_may_have_landed
