"""The cattrs converter that transports use to structure and unstructure values."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from cattrs.preconf.json import make_converter as make_json_converter

if TYPE_CHECKING:
    from collections.abc import Callable

    import cattrs

__all__ = ["make_converter"]


def make_converter() -> cattrs.Converter:
    """Make a converter for JSON-shaped data with strict scalar types.

    It is cattrs' JSON converter (``datetime`` and ``date`` as ISO 8601 strings, enums by
    value, attrs classes and dataclasses as objects, ``bytes`` as base85) with one change:
    ``int``, ``float``, ``str`` and ``bool`` accept only values of that JSON type (an
    ``int`` is accepted for a ``float``), where cattrs would coerce ``"5"`` to ``5`` and
    ``5.7`` to ``5``. Input that does not fit a signature should fail, not be bent to fit.

    Each call returns a new converter: customize it freely and pass it to a transport.
    """
    converter = make_json_converter()
    converter.register_structure_hook(int, _strict(int, int))
    converter.register_structure_hook(float, _strict(float, (int, float)))
    converter.register_structure_hook(str, _strict(str, str))
    converter.register_structure_hook(bool, _strict(bool, bool))
    return converter


def _strict(
    target: type[Any], accepted: type[Any] | tuple[type[Any], ...]
) -> Callable[[Any, type[Any]], Any]:
    """Build a structure hook that lets through only values of the accepted types.

    The hook also serves subclasses of ``target`` (an ``IntEnum``, a ``str`` enum), which
    it builds from the checked value, so ``Color(2)`` for ``Color`` annotations.
    """

    def structure(value: Any, annotation: type[Any]) -> Any:
        # bool is an int in Python but not in JSON: only a bool target accepts one.
        if isinstance(value, accepted) and (target is bool or not isinstance(value, bool)):
            return annotation(value)
        msg = f"expected {annotation.__name__}, got {type(value).__name__} {value!r:.80}"
        raise TypeError(msg)

    return structure
