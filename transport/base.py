"""The transport contract: how task input becomes arguments, and results become output."""

from __future__ import annotations

import inspect
from typing import Any, TypeVar, overload

import cattrs

from transport.converter import make_converter
from transport.errors import DecodeError, EncodeError

__all__ = ["Transport"]

T = TypeVar("T")

_EMPTY = inspect.Parameter.empty


class Transport:
    """Encodes values for Step Functions and maps task input onto ``run()``'s signature.

    A transport has two layers. The bottom one is the encoding, the two methods a subclass
    must implement:

    - :meth:`encode` turns a JSON-shaped Python value into text Step Functions accepts
      (the output of a task must be JSON text);
    - :meth:`decode` turns such text back into a JSON-shaped value.

    The top one, provided here, is the same for every encoding and is what the worker and
    the callers use:

    - worker side: :meth:`deserialize_arguments` and :meth:`serialize_result`;
    - caller side (whoever starts executions): :meth:`serialize_arguments` and
      :meth:`deserialize_result`.

    Input mapping: a decoded object becomes keyword arguments, an array becomes positional
    arguments, any other value becomes the single positional argument, and empty input
    means no arguments. Annotated parameters are structured into their types with
    ``self.converter``; results are unstructured with it before encoding.

    Args:
        converter: the cattrs converter to use; a new :func:`~transport.make_converter`
            by default. Never cattrs' global converter.
    """

    def __init__(self, *, converter: cattrs.Converter | None = None) -> None:
        self.converter = converter if converter is not None else make_converter()

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"

    # -- the encoding: what a subclass implements --------------------------------------

    def encode(self, value: Any) -> str:
        """Encode a JSON-shaped value (dicts, lists, str, int, float, bool, None) as text.

        Raises:
            EncodeError: (or any exception) the value cannot be encoded.
        """
        msg = f"{type(self).__name__} must implement encode(value) -> str"
        raise NotImplementedError(msg)

    def decode(self, data: str) -> Any:
        """Decode text made by :meth:`encode` (or plain JSON) into a JSON-shaped value.

        Raises:
            DecodeError: (or any exception) the text is not valid for this encoding.
        """
        msg = f"{type(self).__name__} must implement decode(data) -> Any"
        raise NotImplementedError(msg)

    # -- worker side --------------------------------------------------------------------

    def deserialize_arguments(
        self, data: str, signature: inspect.Signature
    ) -> tuple[tuple[Any, ...], dict[str, Any]]:
        """Turn a task's input into the arguments of a call with ``signature``.

        Args:
            data: the task input, as Step Functions delivered it.
            signature: the signature of the callable to call, without ``self``, with its
                annotations evaluated (``inspect.signature(f, eval_str=True)``).

        Returns:
            ``(args, kwargs)`` ready for ``f(*args, **kwargs)``.

        Raises:
            DecodeError: the input cannot be decoded, does not bind to the signature, or a
                value does not fit its parameter's annotation. The message says which.
        """
        value = self._decode(data) if data.strip() else {}
        if isinstance(value, dict):
            args: tuple[Any, ...] = ()
            kwargs: dict[str, Any] = value
        elif isinstance(value, list):
            args, kwargs = tuple(value), {}
        else:
            args, kwargs = (value,), {}
        try:
            bound = signature.bind(*args, **kwargs)
        except TypeError as exc:
            msg = f"input does not match run{signature}: {exc}"
            unknown = _unknown_keywords(signature, kwargs)
            if unknown and "unexpected keyword" not in msg:
                msg += f"; unexpected keyword arguments: {', '.join(map(repr, unknown))}"
            raise DecodeError(msg) from None
        for name, param in signature.parameters.items():
            if name in bound.arguments and param.annotation is not _EMPTY:
                bound.arguments[name] = self._structure_parameter(param, bound.arguments[name])
        return bound.args, bound.kwargs

    def serialize_result(self, result: Any) -> str:
        """Encode what ``run()`` returned as a task's output.

        Raises:
            EncodeError: the result cannot be unstructured or encoded.
        """
        return self._encode(result, "result")

    # -- caller side --------------------------------------------------------------------

    def serialize_arguments(self, *args: Any, **kwargs: Any) -> str:
        """Encode the arguments of a call as a task input, the inverse of deserializing.

        Keyword arguments become an object and positional arguments an array, so that
        ``deserialize_arguments`` gives back the same call. A state machine's input for
        an activity taking ``run(self, value)`` is ``serialize_arguments(value=...)``.

        Raises:
            EncodeError: both positional and keyword arguments were given, or a value
                cannot be encoded.
        """
        if args and kwargs:
            msg = "pass either positional or keyword arguments, not both: task input is one value"
            raise EncodeError(msg)
        return self._encode(list(args) if args else kwargs, "arguments")

    @overload
    def deserialize_result(self, data: str) -> Any: ...
    @overload
    def deserialize_result(self, data: str, into: type[T]) -> T: ...
    def deserialize_result(self, data: str, into: Any = Any) -> Any:
        """Decode a task's output, structured into ``into`` when given.

        Raises:
            DecodeError: the output cannot be decoded or does not fit ``into``.
        """
        value = self._decode(data)
        if into is Any:
            return value
        try:
            return self.converter.structure(value, into)
        except Exception as exc:
            raise DecodeError(_describe(exc, "$")) from exc

    # -- internals ------------------------------------------------------------------------

    def _decode(self, data: str) -> Any:
        try:
            return self.decode(data)
        except DecodeError:
            raise
        except NotImplementedError:
            raise
        except Exception as exc:
            msg = f"input is not valid for {type(self).__name__}: {exc}"
            raise DecodeError(msg) from exc

    def _encode(self, value: Any, what: str) -> str:
        try:
            return self.encode(self.converter.unstructure(value))
        except EncodeError:
            raise
        except NotImplementedError:
            raise
        except Exception as exc:
            msg = f"{what} cannot be encoded by {type(self).__name__}: {exc}"
            raise EncodeError(msg) from exc

    def _structure_parameter(self, param: inspect.Parameter, value: Any) -> Any:
        annotation = param.annotation
        if annotation is Any:
            return value
        try:
            if param.kind is inspect.Parameter.VAR_POSITIONAL:
                return tuple(self.converter.structure(item, annotation) for item in value)
            if param.kind is inspect.Parameter.VAR_KEYWORD:
                return {
                    key: self.converter.structure(item, annotation) for key, item in value.items()
                }
            return self.converter.structure(value, annotation)
        except Exception as exc:  # noqa: BLE001 - cattrs raises many kinds; all mean "does not fit"
            msg = f"argument {param.name!r} does not fit {_type_name(annotation)}: " + _describe(
                exc, param.name
            )
            raise DecodeError(msg) from None


def _unknown_keywords(signature: inspect.Signature, kwargs: dict[str, Any]) -> list[str]:
    """The keys of ``kwargs`` no parameter of ``signature`` takes."""
    kinds = {param.kind for param in signature.parameters.values()}
    if inspect.Parameter.VAR_KEYWORD in kinds:
        return []
    takes = {
        name
        for name, param in signature.parameters.items()
        if param.kind is not inspect.Parameter.POSITIONAL_ONLY
    }
    return [key for key in kwargs if key not in takes]


def _type_name(annotation: Any) -> str:
    return annotation.__name__ if isinstance(annotation, type) else repr(annotation)


def _describe(exc: BaseException, path: str) -> str:
    """Say what a cattrs structuring error is about, every nested problem included."""
    if isinstance(exc, cattrs.BaseValidationError):
        return "; ".join(cattrs.transform_error(exc, path=path))
    return f"{exc}"
