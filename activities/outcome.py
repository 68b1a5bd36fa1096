"""What a task ends in, ready to send to Step Functions, and how an exception becomes one.

:func:`failure_from_exception` is the one place where a Python exception is turned into
the ``(error, cause)`` pair of ``SendTaskFailure``, within Step Functions' limits.
"""

from __future__ import annotations

import json
import logging
import traceback
from typing import TYPE_CHECKING, Any, TypeAlias

import attrs

from activities.errors import ResultTooLarge, SerializationError

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = [
    "MAX_CAUSE_LENGTH",
    "MAX_ERROR_LENGTH",
    "MAX_OUTPUT_BYTES",
    "Cancelled",
    "Failure",
    "Outcome",
    "Success",
    "exception_text",
    "failure_from_exception",
    "refused_output",
    "success_from_result",
]

logger = logging.getLogger(__name__)

#: The most UTF-8 bytes Step Functions accepts as a task's output (SendTaskSuccess).
MAX_OUTPUT_BYTES = 262_144

#: The most characters of a failure's ``error`` (SendTaskFailure), counted as Step Functions
#: counts them: in UTF-16 code units, so that a character beyond U+FFFF (an emoji) counts
#: twice.
MAX_ERROR_LENGTH = 256

#: The most characters of a failure's ``cause`` (SendTaskFailure), in UTF-16 code units.
MAX_CAUSE_LENGTH = 32_768

#: Error names with this prefix are reserved by Step Functions and refused by the API.
RESERVED_ERROR_PREFIX = "States."

_TRUNCATED = "... [truncated {} characters]"
_OMITTED_FRAMES = "... [{} frames omitted]\n"


def exception_text(exc: BaseException) -> str:
    """``str(exc)``, or ``<unprintable X object>`` when that raises, as :mod:`traceback` says.

    An exception's own ``__str__`` may fail (it reads an attribute never set): its task
    still fails with its own error name.
    """
    try:
        return str(exc)
    except Exception:  # noqa: BLE001 - whatever a user's __str__ raises
        return f"<unprintable {type(exc).__name__} object>"


def _utf16_length(text: str) -> int:
    """The length of ``text`` as Step Functions counts it: UTF-16 code units.

    A character beyond U+FFFF (an emoji) counts twice; a lone surrogate once.
    """
    return len(text.encode("utf-16-le", "surrogatepass")) // 2


def _fit_error(error: object) -> str:
    error = str(error)
    if error.startswith(RESERVED_ERROR_PREFIX):
        msg = f"error names starting with {RESERVED_ERROR_PREFIX!r} are reserved: {error!r:.80}"
        raise ValueError(msg)
    return _head(error, MAX_ERROR_LENGTH)


def _fit_cause(cause: object) -> str:
    return _fit_text(str(cause), MAX_CAUSE_LENGTH)


def _fit_text(text: str, limit: int) -> str:
    """Cut ``text`` to at most ``limit`` UTF-16 units, ending with a note of how much was cut.

    The one rule of every text sent in a failure: cut between characters, never inside a
    surrogate pair.
    """
    if len(text) <= limit // 2 or _utf16_length(text) <= limit:
        return text
    keep = limit
    while keep >= 0:
        head = _head(text, keep)
        marker = _TRUNCATED.format(len(text) - len(head))
        if _utf16_length(head) + len(marker) <= limit:
            return head + marker
        keep = limit - len(marker)
    return _head(text, limit)  # too short a limit for the note itself


def _head(text: str, limit: int) -> str:
    """The longest start of ``text`` of at most ``limit`` UTF-16 units, whole characters only."""
    high = min(len(text), max(0, limit))
    if _utf16_length(text[:high]) <= limit:
        return text[:high]
    low = high // 2  # a character is two units at most: half as many always fit
    while low < high:
        middle = (low + high + 1) // 2
        if _utf16_length(text[:middle]) <= limit:
            low = middle
        else:
            high = middle - 1
    return text[:low]


@attrs.frozen
class Success:
    """The task succeeded; ``output`` is the encoded result, sent with SendTaskSuccess."""

    output: str


@attrs.frozen
class Failure:
    """The task failed; sent with SendTaskFailure.

    Build one with :func:`failure_from_exception`, or directly: the constructor fits
    ``error`` and ``cause`` to Step Functions' limits, so a Failure can always be sent.

    Attributes:
        error: the name ``Retry``/``Catch`` match in ``ErrorEquals``; at most 256
            characters, never starting with ``States.``.
        cause: the details, at most 32,768 characters; JSON ``{"errorMessage",
            "errorType", "stackTrace"}`` when made from an exception.

    Characters are counted as Step Functions counts them, in UTF-16 code units (one
    beyond U+FFFF, such as an emoji, counts twice), and a text is cut between two
    characters, with a note of how many were cut at the end of a cut ``cause``.
    """

    error: str = attrs.field(converter=_fit_error)
    cause: str = attrs.field(default="", converter=_fit_cause)


@attrs.frozen
class Cancelled:
    """Step Functions no longer knows the task: nothing is sent for it."""

    reason: str = ""


#: Every way a task can end.
Outcome: TypeAlias = Success | Failure | Cancelled


def failure_from_exception(exc: BaseException) -> Failure:
    """Turn an exception raised by an activity into the failure to report.

    The ``error`` is the exception's ``error`` attribute when it is a non-empty string
    (see :class:`activities.ActivityError`), else the exception's class name, so that
    ``"ErrorEquals": ["ValueError"]`` catches a ``ValueError``. A name that Step Functions
    reserves (``States.*``) is replaced by the class name, with a warning logged. An
    exception whose ``str()`` raises keeps its error name; its message is
    ``<unprintable X object>``.

    The ``cause`` is JSON in the shape AWS Lambda uses, ``{"errorMessage", "errorType",
    "stackTrace"}``, cut to fit 32,768 characters while staying valid JSON: the oldest
    stack frames go first, then the end of the message.
    """
    error_type = type(exc).__name__
    try:
        error = getattr(exc, "error", None)
    except Exception:  # noqa: BLE001 - a property of the user's that raises: no name of its own
        error = None
    if not isinstance(error, str) or not error:
        error = error_type
    elif error.startswith(RESERVED_ERROR_PREFIX):
        logger.warning(
            "error name %r of %s is reserved by Step Functions; reporting %r instead",
            error,
            error_type,
            error_type,
        )
        error = error_type
    stack = traceback.format_tb(exc.__traceback__)
    return Failure(error=error, cause=_cause(exception_text(exc), error_type, stack))


def _cause(message: str, error_type: str, stack: list[str]) -> str:
    """Lambda-shaped JSON cause that fits MAX_CAUSE_LENGTH characters.

    ``ensure_ascii`` makes every character of the JSON one ASCII character, so its length
    is the same in characters, bytes and UTF-16 units, whichever the service counts.
    """

    def dump(message: str, stack: list[str]) -> str:
        return json.dumps({"errorMessage": message, "errorType": error_type, "stackTrace": stack})

    error_type = _fit_text(error_type, MAX_ERROR_LENGTH)
    cause = dump(message, stack)
    if len(cause) <= MAX_CAUSE_LENGTH:
        return cause
    # Too long. The message may have at most half, the innermost frames the rest: they
    # say where it went wrong. In the JSON, a frame costs its encoding and a ", ".
    message = _fit_json_string(message, MAX_CAUSE_LENGTH // 2)
    omitted = _OMITTED_FRAMES.format(len(stack))  # the longest the note can be
    size = len(dump(message, [omitted])) + sum(len(json.dumps(frame)) + 2 for frame in stack)
    first = 0
    while first < len(stack) and size > MAX_CAUSE_LENGTH:
        size -= len(json.dumps(stack[first])) + 2
        first += 1
    if first == 0:
        return dump(message, stack)
    if first < len(stack):
        return dump(message, [_OMITTED_FRAMES.format(first), *stack[first:]])
    # Not even one frame fits beside the message: cut the message further.
    note = [omitted] if stack else []
    room = MAX_CAUSE_LENGTH - len(dump("", note)) + 2  # + 2: the empty string's quotes
    return dump(_fit_json_string(message, room), note)


def _fit_json_string(text: str, budget: int) -> str:
    """The longest cut of ``text`` (see :func:`_fit_text`) whose JSON string fits ``budget``."""
    if len(json.dumps(text)) <= budget:
        return text
    # Each character takes at least one in JSON: nothing longer than the budget can fit.
    low, high = 0, min(len(text), budget)
    while low < high:
        middle = (low + high + 1) // 2
        if len(json.dumps(_fit_text(text, middle))) <= budget:
            low = middle
        else:
            high = middle - 1
    return _fit_text(text, low)


def success_from_result(serialize: Callable[[Any], str], result: Any) -> Success:
    """Encode a result with ``serialize`` into a Success that Step Functions accepts.

    Raises:
        SerializationError: ``serialize`` failed; the message says why.
        ResultTooLarge: the output exceeds :data:`MAX_OUTPUT_BYTES` UTF-8 bytes.
        Exception: an exception of ``serialize``'s that names its Step Functions error
            (an ``error`` attribute, e.g. ``transport.S3ClaimCheckError``), as it is.
    """
    try:
        output: object = serialize(result)
    except Exception as exc:
        if _names_its_error(exc):
            raise
        msg = (
            f"the result of type {type(result).__name__} cannot be serialized: "
            f"{exception_text(exc)}"
        )
        raise SerializationError(msg) from exc
    if not isinstance(output, str):
        msg = f"the serialized result must be str, not {type(output).__name__}"
        raise SerializationError(msg)
    try:
        size = len(output.encode())
    except UnicodeEncodeError as exc:
        msg = f"the serialized result is not valid Unicode text: {exc}"
        raise SerializationError(msg) from None
    if size > MAX_OUTPUT_BYTES:
        msg = (
            f"the serialized result is {size:,} bytes, over Step Functions' limit of "
            f"{MAX_OUTPUT_BYTES:,} bytes for a task's output; return less (e.g. store the "
            f"data elsewhere and return a reference) or use a compressing transport"
        )
        raise ResultTooLarge(msg, size=size, limit=MAX_OUTPUT_BYTES)
    return Success(output)


def _names_its_error(exc: Exception) -> bool:
    try:
        error = getattr(exc, "error", None)
    except Exception:  # noqa: BLE001 - a property of the user's that raises
        return False
    return isinstance(error, str) and bool(error)


def refused_output(refusal: Exception) -> Failure:
    """The failure to send when Step Functions refused a success's output as invalid.

    An ``activities.SerializationError``, so the task fails at once rather than hang until
    its timeout.
    """
    return failure_from_exception(
        SerializationError(f"Step Functions refused the output: {refusal}")
    )
