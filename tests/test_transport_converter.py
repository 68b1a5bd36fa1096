from __future__ import annotations

import datetime as dt
import enum

import attrs
import pytest

from transport import make_converter


class Color(enum.Enum):
    RED = "red"


class Level(enum.IntEnum):
    LOW = 1


@attrs.frozen
class Point:
    x: int
    y: float


class TestStrictScalars:
    @pytest.mark.parametrize(
        ("value", "target"),
        [("5", int), (5.7, int), (True, int), (1, bool), (1, str), ("1.5", float), (None, str)],
    )
    def test_refuses_other_json_types(self, value: object, target: type) -> None:
        """A scalar of another JSON type is refused rather than coerced."""
        with pytest.raises(TypeError, match=f"expected {target.__name__}"):
            make_converter().structure(value, target)

    @pytest.mark.parametrize(
        ("value", "target", "expected"),
        [(5, int, 5), (5, float, 5.0), (2.5, float, 2.5), ("a", str, "a"), (False, bool, False)],
    )
    def test_accepts_its_own_type(self, value: object, target: type, expected: object) -> None:
        """A scalar of the annotated type (or an int for a float) passes."""
        result = make_converter().structure(value, target)
        assert result == expected
        assert type(result) is target

    def test_enums_are_structured_by_value(self) -> None:
        """Enums, int-based ones included, come back as members, not bare values."""
        converter = make_converter()
        assert converter.structure("red", Color) is Color.RED
        assert converter.structure(1, Level) is Level.LOW

    def test_enum_value_of_wrong_type_is_refused(self) -> None:
        """An IntEnum does not accept a string that looks like its value."""
        with pytest.raises(TypeError, match="expected Level"):
            make_converter().structure("1", Level)

    def test_nested_fields_are_strict_too(self) -> None:
        """Strictness applies inside attrs classes, not only at the top."""
        with pytest.raises(Exception, match="Point"):
            make_converter().structure({"x": "1", "y": 2}, Point)


class TestJSONShapes:
    def test_datetimes_round_trip_as_iso_strings(self) -> None:
        """A datetime is unstructured to ISO 8601 and structured back."""
        converter = make_converter()
        when = dt.datetime(2026, 11, 23, 12, 0, tzinfo=dt.UTC)
        assert converter.unstructure(when) == "2026-11-23T12:00:00+00:00"
        assert converter.structure("2026-11-23T12:00:00+00:00", dt.datetime) == when

    def test_each_call_makes_a_new_converter(self) -> None:
        """Customizing one converter leaves the others alone."""
        first, second = make_converter(), make_converter()
        first.register_structure_hook(Point, lambda value, _: Point(0, 0))
        assert second.structure({"x": 1, "y": 2}, Point) == Point(1, 2.0)
