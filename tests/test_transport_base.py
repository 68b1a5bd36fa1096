from __future__ import annotations

import dataclasses
import datetime as dt
import inspect
from typing import Any

import pytest

from transport import DecodeError, EncodeError, JSONTransport, Transport


def signature_of(function: Any) -> inspect.Signature:
    return inspect.signature(function, eval_str=True)


def positional(value: Any) -> None: ...


def keywords(a: Any, b: Any = 2) -> None: ...


def nothing() -> None: ...


def variadic(*args: int, **kwargs: str) -> None: ...


@dataclasses.dataclass
class Order:
    id: int
    placed: dt.datetime


def typed(order: Order, count: int = 1) -> None: ...


@pytest.fixture
def transport() -> JSONTransport:
    return JSONTransport()


class TestInputMapping:
    def test_object_becomes_keyword_arguments(self, transport: JSONTransport) -> None:
        """A JSON object binds by parameter name."""
        args, kwargs = transport.deserialize_arguments('{"a": 1}', signature_of(keywords))
        assert (args, kwargs) == ((1,), {})  # bound in signature order: positional
        assert signature_of(keywords).bind(*args, **kwargs).arguments == {"a": 1}

    def test_array_becomes_positional_arguments(self, transport: JSONTransport) -> None:
        """A JSON array is spread over the positional parameters."""
        assert transport.deserialize_arguments("[1, 3]", signature_of(keywords)) == ((1, 3), {})

    @pytest.mark.parametrize(
        ("data", "value"), [('"x"', "x"), ("7", 7), ("null", None), ("true", True)]
    )
    def test_other_values_become_the_single_argument(
        self, transport: JSONTransport, data: str, value: object
    ) -> None:
        """A JSON scalar is the one positional argument."""
        assert transport.deserialize_arguments(data, signature_of(positional)) == ((value,), {})

    @pytest.mark.parametrize("data", ["", "  \n", "{}"])
    def test_empty_input_means_no_arguments(self, transport: JSONTransport, data: str) -> None:
        """Empty input and an empty object call run() with nothing."""
        assert transport.deserialize_arguments(data, signature_of(nothing)) == ((), {})

    def test_variadic_parameters_collect_and_structure(self, transport: JSONTransport) -> None:
        """*args and **kwargs take what is left, each value checked against the annotation."""
        sig = signature_of(variadic)
        assert transport.deserialize_arguments("[1, 2, 3]", sig) == ((1, 2, 3), {})
        assert transport.deserialize_arguments('{"k": "v"}', sig) == ((), {"k": "v"})
        with pytest.raises(DecodeError, match="argument 'args' does not fit int"):
            transport.deserialize_arguments('[1, "two"]', sig)
        with pytest.raises(DecodeError, match="argument 'kwargs' does not fit str"):
            transport.deserialize_arguments('{"k": 1}', sig)

    def test_input_that_does_not_bind_names_the_signature(self, transport: JSONTransport) -> None:
        """Unknown or missing arguments are a DecodeError that shows run()'s signature."""
        with pytest.raises(
            DecodeError, match=r"does not match run\(a: Any, b: Any = 2\).*unexpected keyword"
        ):
            transport.deserialize_arguments('{"a": 1, "c": 3}', signature_of(keywords))
        with pytest.raises(DecodeError, match="missing a required argument: 'a'"):
            transport.deserialize_arguments("{}", signature_of(keywords))
        with pytest.raises(DecodeError, match="too many positional arguments"):
            transport.deserialize_arguments("[1, 2, 3]", signature_of(keywords))

    def test_invalid_json_is_a_decode_error(self, transport: JSONTransport) -> None:
        """Text that is not JSON says so and names the transport."""
        with pytest.raises(DecodeError, match="not valid for JSONTransport"):
            transport.deserialize_arguments("{nope", signature_of(keywords))


class TestTypedArguments:
    def test_annotated_parameters_are_structured(self, transport: JSONTransport) -> None:
        """Dataclasses and datetimes are built from their JSON shapes."""
        args, _ = transport.deserialize_arguments(
            '{"order": {"id": 3, "placed": "2026-11-23T10:00:00"}}', signature_of(typed)
        )
        assert args == (Order(3, dt.datetime(2026, 11, 23, 10, 0)),)

    def test_a_value_that_does_not_fit_says_where(self, transport: JSONTransport) -> None:
        """The error names the parameter, the type and the path of the bad value."""
        with pytest.raises(DecodeError) as info:
            transport.deserialize_arguments(
                '{"order": {"id": "3", "placed": "2026-11-23T10:00:00"}}', signature_of(typed)
            )
        message = str(info.value)
        assert "argument 'order' does not fit Order" in message
        assert "$.order.id" in message or "order.id" in message

    def test_defaults_are_not_structured(self, transport: JSONTransport) -> None:
        """A parameter left to its default is not passed at all."""
        args, kwargs = transport.deserialize_arguments(
            '{"order": {"id": 1, "placed": "2026-01-01T00:00:00"}}', signature_of(typed)
        )
        assert len(args) == 1
        assert kwargs == {}


class TestResults:
    def test_results_are_compact_utf8_json(self, transport: JSONTransport) -> None:
        """Output has no spaces and keeps non-ASCII text as is."""
        assert transport.serialize_result({"a": [1, "é"]}) == '{"a":[1,"é"]}'

    def test_results_are_unstructured_first(self, transport: JSONTransport) -> None:
        """A dataclass result becomes a JSON object."""
        order = Order(1, dt.datetime(2026, 1, 1))
        assert transport.serialize_result(order) == '{"id":1,"placed":"2026-01-01T00:00:00"}'

    @pytest.mark.parametrize("value", [object(), float("nan"), float("inf"), {1j: 1}])
    def test_unencodable_results_raise_encode_error(
        self, transport: JSONTransport, value: object
    ) -> None:
        """Values JSON cannot hold (objects, NaN, infinities, complex keys) are an EncodeError."""
        with pytest.raises(EncodeError, match="result cannot be encoded by JSONTransport"):
            transport.serialize_result(value)

    def test_caller_side_round_trip(self, transport: JSONTransport) -> None:
        """What a caller serializes, the worker deserializes into the same call."""
        data = transport.serialize_arguments(order=Order(2, dt.datetime(2026, 5, 1)), count=4)
        args, kwargs = transport.deserialize_arguments(data, signature_of(typed))
        assert signature_of(typed).bind(*args, **kwargs).arguments == {
            "order": Order(2, dt.datetime(2026, 5, 1)),
            "count": 4,
        }
        assert transport.serialize_arguments(1, 2) == "[1,2]"
        assert transport.serialize_arguments() == "{}"

    def test_mixed_caller_arguments_are_refused(self, transport: JSONTransport) -> None:
        """Task input is one value: positional and keyword arguments cannot both be sent."""
        with pytest.raises(EncodeError, match="not both"):
            transport.serialize_arguments(1, b=2)

    def test_deserialize_result_structures_when_asked(self, transport: JSONTransport) -> None:
        """A caller can read a result back as JSON values or into a type."""
        output = '{"id":1,"placed":"2026-01-01T00:00:00"}'
        assert transport.deserialize_result(output)["id"] == 1
        assert transport.deserialize_result(output, Order) == Order(1, dt.datetime(2026, 1, 1))
        with pytest.raises(DecodeError, match="id"):
            transport.deserialize_result('{"id":"x","placed":"2026-01-01T00:00:00"}', Order)


class TestContract:
    def test_a_transport_must_implement_its_encoding(self) -> None:
        """The base class says which method is missing."""

        class Half(Transport):
            def decode(self, data: str) -> Any:
                return data

        with pytest.raises(NotImplementedError, match=r"Half must implement encode\(value\)"):
            Half().serialize_result(1)
        with pytest.raises(NotImplementedError, match=r"Transport must implement decode"):
            Transport().deserialize_result("1")

    def test_exceptions_of_a_custom_encoding_are_mapped(self) -> None:
        """Whatever a custom decode raises reaches callers as a DecodeError."""

        class Broken(JSONTransport):
            def decode(self, data: str) -> Any:
                raise KeyError(data)

        with pytest.raises(DecodeError, match="not valid for Broken"):
            Broken().deserialize_arguments("1", signature_of(positional))
