from __future__ import annotations

import base64
import json
import zlib

import pytest

from transport import CompressedTransport, DecodeError, JSONTransport

RECORDS = [{"id": i, "name": f"record number {i}", "tags": ["a", "b"]} for i in range(20_000)]


class TestCompressedTransport:
    def test_small_values_stay_plain_json(self) -> None:
        """Under the threshold the output is what JSONTransport would send."""
        transport = CompressedTransport(threshold=100)
        assert transport.serialize_result({"a": 1}) == JSONTransport().serialize_result({"a": 1})

    def test_large_values_are_enveloped_and_round_trip(self) -> None:
        """A large value becomes a valid JSON envelope and decodes back to the same value."""
        transport = CompressedTransport()
        output = transport.serialize_result(RECORDS)
        envelope = json.loads(output)
        assert envelope["__transport__"] == "zlib+base64"
        assert transport.deserialize_result(output) == RECORDS

    def test_compression_fits_what_plain_json_cannot(self) -> None:
        """Repetitive data over Step Functions' 256 KiB limit fits once compressed."""
        plain = JSONTransport().serialize_result(RECORDS)
        compressed = CompressedTransport().serialize_result(RECORDS)
        assert len(plain.encode()) > 262_144
        assert len(compressed.encode()) < 262_144

    def test_plain_json_input_is_accepted(self) -> None:
        """A state machine can pass ordinary JSON to an activity using this transport."""
        assert CompressedTransport().deserialize_result('{"a": [1, 2]}') == {"a": [1, 2]}

    def test_objects_that_merely_resemble_an_envelope_are_left_alone(self) -> None:
        """Only the exact two-key envelope is unwrapped."""
        value = {"__transport__": "zlib+base64", "data": "x", "other": 1}
        assert CompressedTransport().deserialize_result(json.dumps(value)) == value

    @pytest.mark.parametrize(
        ("envelope", "message"),
        [
            ({"__transport__": "brotli", "data": ""}, "unknown encoding 'brotli'"),
            ({"__transport__": "zlib+base64", "data": "!!!"}, "corrupt zlib\\+base64 payload"),
            (
                {"__transport__": "zlib+base64", "data": base64.b64encode(b"not zlib").decode()},
                "corrupt",
            ),
            (
                {
                    "__transport__": "zlib+base64",
                    "data": base64.b64encode(zlib.compress(b'"abc"')[:-3]).decode(),
                },
                "truncated",
            ),
        ],
    )
    def test_bad_envelopes_are_decode_errors(self, envelope: dict[str, str], message: str) -> None:
        """A wrong encoding name, bad base64, non-zlib or cut data each say what is wrong."""
        with pytest.raises(DecodeError, match=message):
            CompressedTransport().deserialize_result(json.dumps(envelope))

    def test_decompression_is_bounded(self) -> None:
        """A payload that expands past max_decompressed is refused, not inflated."""
        bomb = zlib.compress(b'"' + b"a" * 1_000_000 + b'"', 9)
        envelope = {"__transport__": "zlib+base64", "data": base64.b64encode(bomb).decode()}
        with pytest.raises(DecodeError, match="max_decompressed=1000"):
            CompressedTransport(max_decompressed=1000).deserialize_result(json.dumps(envelope))

    @pytest.mark.parametrize(
        ("kwargs", "name"),
        [
            ({"threshold": -1}, "threshold"),
            ({"level": 0}, "level"),
            ({"max_decompressed": 0}, "max_decompressed"),
        ],
    )
    def test_settings_are_validated(self, kwargs: dict[str, int], name: str) -> None:
        """A bad setting fails at construction, naming the setting."""
        with pytest.raises(ValueError, match=name):
            CompressedTransport(**kwargs)
