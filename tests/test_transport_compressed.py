from __future__ import annotations

import base64
import json
import logging
import os
import tracemalloc
import zlib
from typing import Any

import pytest

from transport import CompressedTransport, DecodeError, EncodeError, JSONTransport
from transport.compressed import DEFAULT_MAX_DECOMPRESSED

RECORDS = [{"id": i, "name": f"record number {i}", "tags": ["a", "b"]} for i in range(20_000)]

MiB = 1024 * 1024


def envelope_of(compressed: bytes) -> str:
    """The wire form of ``compressed`` zlib data, as a hostile sender would write it."""
    return json.dumps(
        {"__transport__": "zlib+base64", "data": base64.b64encode(compressed).decode()}
    )


def bomb(size: int) -> bytes:
    """A JSON string of ``size`` bytes, compressed (about 1,000 times) without holding it."""
    compressor = zlib.compressobj(9)
    parts = [compressor.compress(b'"')]
    block = b"a" * MiB
    left = size - 2
    while left > 0:
        parts.append(compressor.compress(block[: min(left, MiB)]))
        left -= MiB
    parts.append(compressor.compress(b'"'))
    parts.append(compressor.flush())
    return b"".join(parts)


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
            ({"__transport__": "zlib+base64", "data": "é"}, "corrupt zlib\\+base64 payload"),
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
            ({"max_ratio": 0.5}, "max_ratio"),
            ({"max_ratio": float("nan")}, "max_ratio"),
        ],
    )
    def test_settings_are_validated(self, kwargs: dict[str, Any], name: str) -> None:
        """A bad setting fails at construction, naming the setting."""
        with pytest.raises(ValueError, match=name):
            CompressedTransport(**kwargs)


class TestDecompressionBounds:
    def test_the_default_bound_refuses_a_bomb(self) -> None:
        """66 MB inflated from 65 KB is refused by default, the message says how to allow it."""
        data = envelope_of(bomb(66_000_000))
        with pytest.raises(DecodeError) as info:
            CompressedTransport().deserialize_result(data)
        message = str(info.value)
        assert f"max_decompressed={DEFAULT_MAX_DECOMPRESSED} bytes" in message
        assert "CompressedTransport(max_decompressed=...)" in message

    def test_the_default_bound_is_a_few_mib(self) -> None:
        """A payload decompressing to 8 MiB is read by default, one byte more is refused."""
        transport = CompressedTransport(max_ratio=10_000)
        assert transport.deserialize_result(envelope_of(bomb(8 * MiB))) == "a" * (8 * MiB - 2)
        with pytest.raises(DecodeError, match="max_decompressed="):
            transport.deserialize_result(envelope_of(bomb(8 * MiB + 1)))

    def test_the_ratio_is_bounded(self) -> None:
        """2 MiB from 2 KiB (about 1,000x) is refused as over max_ratio, within max_decompressed."""
        compressed = bomb(2 * MiB)
        assert len(compressed) < 4096
        with pytest.raises(DecodeError) as info:
            CompressedTransport().deserialize_result(envelope_of(compressed))
        message = str(info.value)
        assert "max_ratio=200 times its compressed size" in message
        assert "CompressedTransport(max_ratio=...)" in message
        ratio = 2 * MiB / len(compressed)
        assert CompressedTransport(max_ratio=ratio + 1).deserialize_result(envelope_of(compressed))

    def test_a_bound_at_the_byte(self) -> None:
        """A payload of exactly max_decompressed bytes is read; one byte more is not."""
        transport = CompressedTransport(max_decompressed=1000)
        assert transport.deserialize_result(envelope_of(bomb(1000))) == "a" * 998
        with pytest.raises(DecodeError, match="max_decompressed=1000 bytes"):
            transport.deserialize_result(envelope_of(bomb(1001)))

    @pytest.mark.parametrize(
        "value", [["x"] * 2000, "a" * 1_000_000, [[None] * 100 for _ in range(1000)]]
    )
    def test_small_values_pass_whatever_their_ratio(self, value: Any) -> None:
        """Up to 1 MiB of JSON compressing 200-1,000x is sent compressed and read back."""
        transport = CompressedTransport()
        output = transport.serialize_result(value)
        assert json.loads(output).keys() == {"__transport__", "data"}
        assert transport.deserialize_result(output) == value

    def test_memory_stays_within_the_bound(self) -> None:
        """Inflating a 100 MB bomb holds about max_decompressed bytes, never the 100 MB."""
        data = envelope_of(bomb(100_000_000))
        transport = CompressedTransport()
        tracemalloc.start()
        try:
            with pytest.raises(DecodeError, match="max_decompressed"):
                transport.deserialize_result(data)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert peak < 2 * DEFAULT_MAX_DECOMPRESSED, f"peak {peak} bytes"

    def test_a_full_payload_of_records_is_read(self) -> None:
        """What a Step Functions payload of records holds compressed decodes by default."""
        records = [{"id": i, "name": f"record number {i}", "tags": ["a"]} for i in range(36_000)]
        transport = CompressedTransport()
        output = transport.serialize_result(records)
        assert 200_000 < len(output.encode()) < 262_144
        assert transport.deserialize_result(output) == records


class TestWhatIsSent:
    def test_incompressible_values_are_sent_plain(self) -> None:
        """200 KB of random text is sent as plain JSON, never larger than plain JSON."""
        text = base64.b64encode(os.urandom(150_000)).decode()
        plain = JSONTransport().serialize_result(text)
        output = CompressedTransport().serialize_result(text)
        assert output == plain
        assert len(output.encode()) <= len(plain.encode())
        assert CompressedTransport().deserialize_result(output) == text

    def test_what_the_reader_would_refuse_is_sent_plain(
        self, caplog: pytest.LogCaptureFixture
    ) -> None:
        """A value compressing past max_ratio goes plain, and a warning names the setting."""
        value = [0] * 1_000_000
        with caplog.at_level(logging.WARNING, logger="transport.compressed"):
            output = CompressedTransport().serialize_result(value)
        assert output == JSONTransport().serialize_result(value)
        assert "CompressedTransport(max_ratio=...)" in caplog.text
        allowing = CompressedTransport(max_ratio=2000)
        output = allowing.serialize_result(value)
        assert json.loads(output).keys() == {"__transport__", "data"}
        assert allowing.deserialize_result(output) == value

    def test_json_over_max_decompressed_is_sent_plain(
        self, caplog: pytest.LogCaptureFixture
    ) -> None:
        """A value whose JSON is over max_decompressed is not compressed; a warning says why."""
        with caplog.at_level(logging.WARNING, logger="transport.compressed"):
            output = CompressedTransport(max_decompressed=10_000).serialize_result(RECORDS[:500])
        assert output == JSONTransport().serialize_result(RECORDS[:500])
        assert "max_decompressed=10000 bytes" in caplog.text


ENVELOPE_SHAPED = [
    {"__transport__": "zlib+base64", "data": "x"},
    {"__transport__": "brotli", "data": {"a": [1, 2]}},
    {"data": None, "__transport__": None},
    json.loads(CompressedTransport().encode(RECORDS)),
    {"__transport__": "zlib+base64", "data": RECORDS},
]


class TestEnvelopeShapedValues:
    @pytest.mark.parametrize("value", ENVELOPE_SHAPED)
    def test_encode_and_decode_round_trip(self, value: dict[str, Any]) -> None:
        """A value of the envelope's two keys decodes back to itself, whatever its size."""
        transport = CompressedTransport()
        assert transport.decode(transport.encode(value)) == value

    @pytest.mark.parametrize("value", ENVELOPE_SHAPED)
    def test_results_round_trip(self, value: dict[str, Any]) -> None:
        """As a task's result, a value of the envelope's shape reaches the caller unchanged."""
        transport = CompressedTransport()
        output = transport.serialize_result(value)
        assert json.loads(output)["__transport__"] == "zlib+base64"
        assert transport.deserialize_result(output) == value

    def test_an_envelope_is_unwrapped_once(self) -> None:
        """An envelope inside an envelope is returned as it is, not unwrapped again."""
        inner = CompressedTransport().encode(RECORDS)
        outer = envelope_of(zlib.compress(inner.encode()))
        assert CompressedTransport().deserialize_result(outer) == json.loads(inner)

    def test_plain_input_with_another_encoding_is_still_an_error(self) -> None:
        """A state machine's plain object of the envelope's keys, another encoding, is refused."""
        data = json.dumps({"__transport__": "gzip", "data": {"a": 1}})
        with pytest.raises(DecodeError, match="unknown encoding 'gzip'"):
            CompressedTransport().deserialize_result(data)

    def test_one_over_the_bounds_cannot_be_sent(self) -> None:
        """It cannot go plain either, so a value that would be refused when read is an error."""
        value = {"__transport__": "zlib+base64", "data": "a" * (2 * MiB)}
        with pytest.raises(EncodeError, match="max_ratio=200"):
            CompressedTransport().serialize_result(value)
