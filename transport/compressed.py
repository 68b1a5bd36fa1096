"""A JSON transport that compresses large values to fit Step Functions' 256 KiB limit."""

from __future__ import annotations

import base64
import json
import logging
import zlib
from typing import TYPE_CHECKING, Any

from transport.default import JSONTransport
from transport.errors import DecodeError, EncodeError

if TYPE_CHECKING:
    import cattrs

__all__ = ["CompressedTransport"]

logger = logging.getLogger(__name__)

#: The envelope's marker key; its value names the encoding of ``data``.
ENVELOPE_KEY = "__transport__"

#: The encoding this transport writes into the envelope.
ENCODING = "zlib+base64"

#: Values whose JSON is smaller than this many UTF-8 bytes are sent as plain JSON.
DEFAULT_THRESHOLD = 4096

#: The most bytes a compressed payload may expand to, against decompression bombs.
#: A Step Functions payload is at most 256 KiB (1 MiB of input in newer API models), and
#: JSON records compress ten to fifty times (a list of records about 12x): 256 KiB of
#: compressed data means a few MiB of JSON. 8 MiB is 32 times a full payload, and its
#: Python objects stay in the tens of MiB (a few hundred at worst, for JSON of tiny
#: objects), where the 64 MiB this replaces let an 85 KB input take 1.7 GB.
DEFAULT_MAX_DECOMPRESSED = 8 * 1024 * 1024

#: The most times a compressed payload may expand (decompressed size / compressed size).
#: Records reach 10-50x; a bomb reaches deflate's ceiling, about 1,000x.
DEFAULT_MAX_RATIO = 200

#: Decompressed sizes up to this many bytes are accepted whatever the ratio: a few KiB of
#: one repeated character compress over 200x, and holding 1 MiB harms no process.
RATIO_FLOOR = 1024 * 1024

#: Bytes inflated per step: the output grows in steps this size, checked against the bound.
INFLATE_STEP = 64 * 1024


class CompressedTransport(JSONTransport):
    """JSON that is zlib-compressed and base64-encoded in a JSON envelope when it is large.

    Step Functions caps a task's output (and an execution's input) at 256 KiB. Repetitive
    JSON, such as lists of records, often compresses ten to fifty times, so a result that
    would fail as too large fits once compressed. The wire form stays valid JSON::

        {"__transport__": "zlib+base64", "data": "eJxTykjNycnXUSjPL8pJUQIAI9wEzQ=="}

    Values under ``threshold`` bytes are sent as plain JSON, so small results stay readable
    in the console and usable by ``ResultSelector``/``OutputPath``; so are values that do
    not compress (the envelope is sent only when it is the smaller form), and values whose
    envelope this transport would itself refuse to read (over ``max_decompressed`` or
    ``max_ratio``; a warning says so). A value that is itself an object of the envelope's
    two keys is always sent in an envelope, so that it decodes back to itself. Decoding
    accepts both forms, so a state machine may pass plain JSON input to a compressed
    activity. Whoever reads the output decodes it with the same transport's
    :meth:`~transport.Transport.deserialize_result`.

    Decompression is bounded, against decompression bombs: a payload is inflated in
    steps, and refused with a :class:`~transport.DecodeError` as soon as it passes
    ``max_decompressed`` bytes, or (past 1 MiB) ``max_ratio`` times its compressed size.

    Args:
        threshold: the smallest JSON size, in UTF-8 bytes, that is compressed.
        level: the zlib compression level, 1 (fast) to 9 (small).
        max_decompressed: the most bytes a payload may decompress to (8 MiB by default).
        max_ratio: the most times a payload may expand, decompressed size over compressed
            size (200 by default); sizes up to 1 MiB are accepted whatever the ratio.
        converter: as for :class:`~transport.Transport`.

    Raises:
        ValueError: a setting is out of range.
    """

    def __init__(
        self,
        *,
        threshold: int = DEFAULT_THRESHOLD,
        level: int = 6,
        max_decompressed: int = DEFAULT_MAX_DECOMPRESSED,
        max_ratio: float = DEFAULT_MAX_RATIO,
        converter: cattrs.Converter | None = None,
    ) -> None:
        if threshold < 0:
            msg = f"threshold must be >= 0, got {threshold}"
            raise ValueError(msg)
        if not 1 <= level <= 9:  # noqa: PLR2004 - zlib's own range
            msg = f"level must be between 1 and 9, got {level}"
            raise ValueError(msg)
        if max_decompressed < 1:
            msg = f"max_decompressed must be >= 1, got {max_decompressed}"
            raise ValueError(msg)
        if not max_ratio >= 1:  # NaN included
            msg = f"max_ratio must be >= 1, got {max_ratio}"
            raise ValueError(msg)
        super().__init__(converter=converter)
        self.threshold = threshold
        self.level = level
        self.max_decompressed = max_decompressed
        self.max_ratio = max_ratio

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(threshold={self.threshold}, level={self.level}, "
            f"max_decompressed={self.max_decompressed}, max_ratio={self.max_ratio})"
        )

    def encode(self, value: Any) -> str:
        """Encode as JSON, or as a compressed envelope when that is smaller (see the class).

        Raises:
            EncodeError: ``value`` has the envelope's shape, so must be sent in one, but
                its envelope is over this transport's bounds.
        """
        text = super().encode(value)
        shaped = _is_envelope(value)
        raw = text.encode()
        if len(raw) < self.threshold and not shaped:
            return text
        compressed = zlib.compress(raw, self.level)
        envelope = json.dumps(
            {ENVELOPE_KEY: ENCODING, "data": base64.b64encode(compressed).decode("ascii")},
            separators=(",", ":"),
        )
        if not shaped and len(envelope) >= len(raw):  # the envelope is ASCII: chars are bytes
            return text
        limit, setting = self._limit(len(compressed))
        if len(raw) <= limit:
            return envelope
        why = (
            f"its {len(raw)} bytes of JSON, compressed to {len(compressed)}, would expand "
            f"beyond {self._bound(setting)} when read, which this transport refuses (pass "
            f"CompressedTransport({setting}=...), to the reader too, to accept more)"
        )
        if shaped:
            msg = f"a value shaped like the {ENCODING} envelope must be sent in one, but {why}"
            raise EncodeError(msg)
        logger.warning("Sending plain JSON, not compressed: %s", why)
        return text

    def decode(self, data: str) -> Any:
        """Decode plain JSON or an envelope written by :meth:`encode`.

        An envelope is unwrapped once: what it holds is returned as it is.

        Raises:
            DecodeError: an envelope names another encoding, is corrupt or truncated, or
                expands past ``max_decompressed`` or ``max_ratio``; the message says which.
        """
        value = super().decode(data)
        if not _is_envelope(value):
            return value
        if value[ENVELOPE_KEY] != ENCODING:
            msg = (
                f"unknown encoding {value[ENVELOPE_KEY]!r:.40} (this transport reads {ENCODING!r})"
            )
            raise DecodeError(msg)
        try:
            compressed = base64.b64decode(value["data"], validate=True)
        except (TypeError, ValueError) as exc:  # binascii.Error; non-ASCII text
            msg = f"corrupt {ENCODING} payload: {exc}"
            raise DecodeError(msg) from exc
        del value
        raw = self._inflate(compressed)
        try:
            text = raw.decode()
        except UnicodeDecodeError as exc:
            msg = f"corrupt {ENCODING} payload: not UTF-8 JSON: {exc}"
            raise DecodeError(msg) from None
        del raw
        return super().decode(text)

    def _inflate(self, compressed: bytes) -> bytearray:
        """Decompress in steps, never holding more than the bound allows.

        Raises:
            DecodeError: the payload is corrupt, truncated, or expands past the bound.
        """
        limit, setting = self._limit(len(compressed))
        inflater = zlib.decompressobj()
        raw = bytearray()
        pending = compressed
        while not inflater.eof:
            # One byte past the limit at most, to tell "exactly at" from "beyond".
            room = min(INFLATE_STEP, limit + 1 - len(raw))
            try:
                chunk = inflater.decompress(pending, room)
            except zlib.error as exc:
                msg = f"corrupt {ENCODING} payload: {exc}"
                raise DecodeError(msg) from exc
            raw += chunk
            if len(raw) > limit:
                msg = (
                    f"compressed payload of {len(compressed)} bytes expands beyond "
                    f"{self._bound(setting)}; pass CompressedTransport({setting}=...) to "
                    "accept more"
                )
                raise DecodeError(msg)
            pending = inflater.unconsumed_tail
            # A full step may leave output inside zlib with all input read: go on then.
            if not pending and not inflater.eof and len(chunk) < room:
                msg = f"compressed payload is truncated ({len(compressed)} bytes)"
                raise DecodeError(msg)
        return raw

    def _limit(self, compressed_size: int) -> tuple[int, str]:
        """The most bytes ``compressed_size`` bytes may expand to, and the setting that says so."""
        by_ratio = max(RATIO_FLOOR, self.max_ratio * compressed_size)
        if by_ratio >= self.max_decompressed:
            return self.max_decompressed, "max_decompressed"
        return int(by_ratio), "max_ratio"

    def _bound(self, setting: str) -> str:
        """The bound named ``setting``, with its value, as an error message says it."""
        if setting == "max_decompressed":
            return f"max_decompressed={self.max_decompressed} bytes"
        return f"max_ratio={self.max_ratio} times its compressed size"


def _is_envelope(value: Any) -> bool:
    """Whether ``value`` has the envelope's shape: an object of its two keys exactly."""
    return isinstance(value, dict) and value.keys() == {ENVELOPE_KEY, "data"}
