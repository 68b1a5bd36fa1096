"""A JSON transport that compresses large values to fit Step Functions' 256 KiB limit."""

from __future__ import annotations

import base64
import binascii
import json
import zlib
from typing import TYPE_CHECKING, Any

from transport.default import JSONTransport
from transport.errors import DecodeError

if TYPE_CHECKING:
    import cattrs

__all__ = ["CompressedTransport"]

#: The envelope's marker key; its value names the encoding of ``data``.
ENVELOPE_KEY = "__transport__"

#: The encoding this transport writes into the envelope.
ENCODING = "zlib+base64"

#: Values whose JSON is smaller than this many UTF-8 bytes are sent as plain JSON.
DEFAULT_THRESHOLD = 4096

#: The most bytes a compressed payload may expand to, against decompression bombs.
DEFAULT_MAX_DECOMPRESSED = 64 * 1024 * 1024


class CompressedTransport(JSONTransport):
    """JSON that is zlib-compressed and base64-encoded in a JSON envelope when it is large.

    Step Functions caps a task's output (and an execution's input) at 256 KiB. Repetitive
    JSON, such as lists of records, often compresses ten to fifty times, so a result that
    would fail as too large fits once compressed. The wire form stays valid JSON::

        {"__transport__": "zlib+base64", "data": "eJzLSM3JyVcozy/KSQEAGgQEXQ=="}

    Values under ``threshold`` bytes are sent as plain JSON, so small results stay readable
    in the console and usable by ``ResultSelector``/``OutputPath``. Decoding accepts both
    forms, so a state machine may pass plain JSON input to a compressed activity. Whoever
    reads the output decodes it with the same transport's
    :meth:`~transport.Transport.deserialize_result`.

    Args:
        threshold: the smallest JSON size, in UTF-8 bytes, that is compressed.
        level: the zlib compression level, 1 (fast) to 9 (small).
        max_decompressed: the most bytes a payload may decompress to; larger input is
            refused with a :class:`~transport.DecodeError`.
        converter: as for :class:`~transport.Transport`.
    """

    def __init__(
        self,
        *,
        threshold: int = DEFAULT_THRESHOLD,
        level: int = 6,
        max_decompressed: int = DEFAULT_MAX_DECOMPRESSED,
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
        super().__init__(converter=converter)
        self.threshold = threshold
        self.level = level
        self.max_decompressed = max_decompressed

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(threshold={self.threshold}, level={self.level}, "
            f"max_decompressed={self.max_decompressed})"
        )

    def encode(self, value: Any) -> str:
        """Encode as JSON, wrapped compressed in an envelope when it reaches the threshold."""
        text = super().encode(value)
        raw = text.encode()
        if len(raw) < self.threshold:
            return text
        payload = base64.b64encode(zlib.compress(raw, self.level)).decode("ascii")
        return json.dumps({ENVELOPE_KEY: ENCODING, "data": payload}, separators=(",", ":"))

    def decode(self, data: str) -> Any:
        """Decode plain JSON or an envelope written by :meth:`encode`."""
        value = super().decode(data)
        if not (isinstance(value, dict) and value.keys() == {ENVELOPE_KEY, "data"}):
            return value
        if value[ENVELOPE_KEY] != ENCODING:
            msg = (
                f"unknown encoding {value[ENVELOPE_KEY]!r:.40} (this transport reads {ENCODING!r})"
            )
            raise DecodeError(msg)
        try:
            compressed = base64.b64decode(value["data"], validate=True)
            inflater = zlib.decompressobj()
            raw = inflater.decompress(compressed, self.max_decompressed)
        except (TypeError, binascii.Error, zlib.error) as exc:
            msg = f"corrupt {ENCODING} payload: {exc}"
            raise DecodeError(msg) from exc
        if inflater.unconsumed_tail or not inflater.eof:
            msg = (
                f"compressed payload is truncated or expands beyond "
                f"max_decompressed={self.max_decompressed} bytes"
            )
            raise DecodeError(msg)
        return super().decode(raw.decode())
