from __future__ import annotations

import functools
import json
import logging
import traceback
from typing import TYPE_CHECKING

import pytest

from activities import (
    Activity,
    ActivityError,
    Failure,
    ResultTooLarge,
    SerializationError,
    Success,
)
from activities.outcome import (
    MAX_CAUSE_LENGTH,
    MAX_ERROR_LENGTH,
    MAX_OUTPUT_BYTES,
    exception_text,
    failure_from_exception,
    success_from_result,
)
from transport import EncodeError, Transport

if TYPE_CHECKING:
    from activities.testing import ActivityEnvironment


def utf16(text: str) -> int:
    """The length of ``text`` in UTF-16 code units, as Step Functions counts it."""
    return len(text.encode("utf-16-le", "surrogatepass")) // 2


class Unprintable(Exception):
    """An exception whose __str__ reads an attribute never set."""

    def __str__(self) -> str:
        return self.missing  # type: ignore[attr-defined, no-any-return]


class UnprintableNamed(Unprintable):
    error = "Inventory.Unprintable"


def raised(exc: BaseException) -> BaseException:
    """Return ``exc`` after raising it, so that it carries a traceback."""
    try:
        raise exc
    except BaseException as caught:  # noqa: BLE001 - the test wants whatever it raised
        return caught


def deep_exception(frames: int) -> BaseException:
    """An exception whose traceback has ``frames`` distinct frames, ~100 characters each.

    Distinct names matter: the traceback module folds repeated identical frames.
    """
    namespace: dict[str, object] = {}
    for i in range(frames):
        callee = "raise ValueError('deep')" if i == frames - 1 else f"{_name(i + 1)}()"
        exec(f"def {_name(i)}(): {callee}", namespace)  # noqa: S102 - builds test frames
    return raised_from(namespace[_name(0)])


def _name(i: int) -> str:
    return f"frame_with_a_long_name_so_that_the_trace_is_large_{'x' * 40}_{i}"


class TestErrorName:
    def test_class_name_by_default(self) -> None:
        """A ValueError is reported as 'ValueError', for ErrorEquals to match."""
        assert failure_from_exception(ValueError("x")).error == "ValueError"

    def test_error_attribute_wins(self) -> None:
        """Any exception with an error string names the failure with it."""

        class Custom(Exception):
            error = "Orders.NotFound"

        assert failure_from_exception(Custom()).error == "Orders.NotFound"

    @pytest.mark.parametrize("value", [None, 42, ""])
    def test_unusable_error_attribute_falls_back(self, value: object) -> None:
        """A missing, empty or non-string error attribute gives the class name."""

        class Odd(Exception):
            error = value

        assert failure_from_exception(Odd()).error == "Odd"

    def test_reserved_names_are_replaced_with_a_warning(
        self, caplog: pytest.LogCaptureFixture
    ) -> None:
        """A name Step Functions reserves (States.*) would make the call fail: not sent."""

        class Sneaky(ActivityError):
            error = "States.Timeout"

        with caplog.at_level(logging.WARNING):
            assert failure_from_exception(Sneaky()).error == "Sneaky"
        assert "reserved by Step Functions" in caplog.text

    def test_long_names_are_cut(self) -> None:
        """An error name over 256 characters is cut to fit."""

        class Long(Exception):
            error = "E" * 1000

        assert failure_from_exception(Long()).error == "E" * MAX_ERROR_LENGTH


class TestUnprintable:
    def test_exception_text_says_unprintable_when_str_raises(self) -> None:
        """The same words traceback uses, instead of the AttributeError of __str__."""
        assert exception_text(Unprintable()) == "<unprintable Unprintable object>"
        assert exception_text(KeyError("id")) == "'id'"

    @pytest.mark.parametrize(
        ("exc", "error"),
        [(Unprintable(), "Unprintable"), (UnprintableNamed(), "Inventory.Unprintable")],
    )
    def test_the_error_name_survives_a_str_that_raises(self, exc: Exception, error: str) -> None:
        """Retry/Catch still match the exception's own name."""
        failure = failure_from_exception(raised(exc))
        assert failure.error == error
        cause = json.loads(failure.cause)
        assert cause["errorMessage"] == f"<unprintable {type(exc).__name__} object>"
        assert cause["stackTrace"], "the frames are reported all the same"

    def test_an_error_property_that_raises_falls_back_to_the_class_name(self) -> None:
        class Odd(Exception):
            @property
            def error(self) -> str:
                raise RuntimeError

        assert failure_from_exception(Odd("x")).error == "Odd"

    def test_a_serializer_error_whose_str_raises_is_a_serialization_error(self) -> None:
        def serialize(_: object) -> str:
            raise Unprintable

        with pytest.raises(SerializationError, match="<unprintable Unprintable object>"):
            success_from_result(serialize, 1)


class TestCause:
    def test_lambda_shaped_json(self) -> None:
        """The cause is the JSON Lambda reports: message, type and stack."""
        cause = json.loads(failure_from_exception(raised(KeyError("id"))).cause)
        assert cause["errorMessage"] == "'id'"
        assert cause["errorType"] == "KeyError"
        assert any("in raised" in frame for frame in cause["stackTrace"])

    def test_unraised_exception_has_an_empty_stack(self) -> None:
        """An exception never raised has no frames to report."""
        assert json.loads(failure_from_exception(ValueError("x")).cause)["stackTrace"] == []

    @pytest.mark.parametrize("char", ["x", "é", "\U0001f600", '"', "\x00"])
    def test_megabyte_messages_fit_and_stay_valid_json(self, char: str) -> None:
        """A huge message is cut to fit 32,768 characters, as valid ASCII JSON."""
        failure = failure_from_exception(raised(RuntimeError(char * 1_000_000)))
        assert len(failure.cause) <= MAX_CAUSE_LENGTH
        assert failure.cause.isascii()
        cause = json.loads(failure.cause)
        assert cause["errorMessage"].startswith(char * 100)
        assert "[truncated" in cause["errorMessage"]
        assert cause["stackTrace"], "the innermost frames are kept beside a cut message"

    def test_deep_stacks_keep_the_innermost_frames(self) -> None:
        """When frames must go, the oldest go first and their number is noted."""
        exc = deep_exception(600)
        assert len(json.dumps(traceback.format_tb(exc.__traceback__))) > MAX_CAUSE_LENGTH
        failure = failure_from_exception(exc)
        assert len(failure.cause) <= MAX_CAUSE_LENGTH
        stack = json.loads(failure.cause)["stackTrace"]
        assert stack[0].startswith("... [")
        assert "frames omitted" in stack[0]
        assert _name(599) in stack[-1]

    def test_cause_that_fits_is_left_whole(self) -> None:
        """Nothing is cut from a cause within the limit."""
        cause = json.loads(failure_from_exception(ValueError("m" * 20_000)).cause)
        assert cause["errorMessage"] == "m" * 20_000


def raised_from(function: object) -> BaseException:
    try:
        function()  # type: ignore[operator]
    except Exception as exc:  # noqa: BLE001 - the test wants whatever it raised
        return exc
    raise AssertionError("nothing was raised")


class TestFailure:
    def test_fits_limits_at_construction(self) -> None:
        """A Failure built by hand can always be sent."""
        failure = Failure("E" * 300, "c" * 40_000)
        assert len(failure.error) == MAX_ERROR_LENGTH
        assert len(failure.cause) == MAX_CAUSE_LENGTH
        assert failure.cause.endswith("characters]")

    @pytest.mark.parametrize("char", ["\U0001f600", "a\U0001f600", "\U0001f600a", "é"])
    def test_a_cause_fits_in_utf16_units_and_keeps_whole_characters(self, char: str) -> None:
        """An emoji counts twice, as Step Functions counts: the cut is never half of one."""
        failure = Failure("E", char * 40_000)
        assert utf16(failure.cause) <= MAX_CAUSE_LENGTH
        assert utf16(failure.cause) > MAX_CAUSE_LENGTH - 2 - len(char), "no more cut than needed"
        assert failure.cause.endswith("characters]")
        head = failure.cause.partition("...")[0]
        assert head == char * (len(head) // len(char)), "whole characters only"
        failure.cause.encode("utf-8")  # no lone surrogate: it would not encode

    def test_an_error_name_fits_in_utf16_units(self) -> None:
        """The name is cut the same way, whether built directly or from an exception."""
        built = Failure("\U0001f600" * 300)
        assert built.error == "\U0001f600" * (MAX_ERROR_LENGTH // 2)

        class Named(Exception):
            error = "x" + "\U0001f600" * 300

        mapped = failure_from_exception(Named())
        assert mapped.error == "x" + "\U0001f600" * (MAX_ERROR_LENGTH // 2 - 1)
        assert utf16(mapped.error) == MAX_ERROR_LENGTH - 1, "one unit short: no half emoji"

    def test_a_cause_within_the_limit_in_utf16_units_is_left_whole(self) -> None:
        cause = "\U0001f600" * (MAX_CAUSE_LENGTH // 2)
        assert Failure("E", cause).cause == cause

    def test_refuses_reserved_names(self) -> None:
        """A hand-built States.* error is a programming error, said at once."""
        with pytest.raises(ValueError, match="reserved"):
            Failure("States.ALL")


utf8_json = functools.partial(json.dumps, ensure_ascii=False)


class TestSuccess:
    def test_serializes_within_the_limit(self) -> None:
        """A result that fits becomes a Success with its encoded output."""
        assert success_from_result(json.dumps, [1]) == Success("[1]")

    def test_output_at_the_limit_is_accepted(self) -> None:
        """Exactly 262,144 UTF-8 bytes is allowed."""
        text = "x" * (MAX_OUTPUT_BYTES - 2)
        assert len(success_from_result(json.dumps, text).output.encode()) == MAX_OUTPUT_BYTES

    def test_oversized_output_is_result_too_large(self) -> None:
        """One byte more is a ResultTooLarge that says the size and the limit."""
        with pytest.raises(ResultTooLarge, match="262,145 bytes") as info:
            success_from_result(utf8_json, "é" * ((MAX_OUTPUT_BYTES - 1) // 2) + "x")
        assert (info.value.size, info.value.limit) == (MAX_OUTPUT_BYTES + 1, MAX_OUTPUT_BYTES)

    def test_serializer_errors_are_serialization_errors(self) -> None:
        """Whatever the serializer raises is reported with the result's type."""
        with pytest.raises(SerializationError, match="result of type object"):
            success_from_result(json.dumps, object())

    def test_non_text_output_is_refused(self) -> None:
        """A custom serializer must produce text."""
        with pytest.raises(SerializationError, match="must be str, not bytes"):
            success_from_result(lambda result: b"{}", 1)

    def test_lone_surrogates_are_refused(self) -> None:
        """Output that is not valid Unicode could not be sent: it fails clearly instead."""
        with pytest.raises(SerializationError, match="not valid Unicode"):
            success_from_result(lambda result: '"\ud800"', 1)


class Unstorable(EncodeError):
    """An error of a transport's that names its Step Functions error."""

    error = "storage.Unavailable"


def test_an_encoding_error_that_names_itself_keeps_its_name() -> None:
    def serialize(_: object) -> str:
        raise Unstorable("no room")

    with pytest.raises(Unstorable):
        success_from_result(serialize, 1)


def test_other_encoding_errors_are_serialization_errors() -> None:
    def serialize(_: object) -> str:
        raise ValueError("no room")

    with pytest.raises(SerializationError, match="no room"):
        success_from_result(serialize, 1)


def test_a_task_fails_with_the_name_an_encoding_error_gives(env: ActivityEnvironment) -> None:
    class Store(Transport):
        def encode(self, value: object) -> str:
            raise Unstorable("no room for the result")

        def decode(self, data: str) -> object:
            return json.loads(data)

    class Save(Activity):
        transport = Store()

        def run(self) -> int:
            return 1

    report = env.run(Save)
    assert report.error == "storage.Unavailable"
    assert report.cause is not None
    assert "no room for the result" in report.cause
