"""JSON, the default transport: what Step Functions itself speaks."""

from __future__ import annotations

import json
from typing import Any

from transport.base import Transport

__all__ = ["JSONTransport"]


class JSONTransport(Transport):
    """Plain JSON, compact and UTF-8: a state machine sees exactly the values ``run()`` returned.

    ``NaN`` and infinities are refused (they are not JSON and Step Functions would reject
    the output), and non-ASCII text is kept as is rather than escaped, so the output is as
    small as JSON allows when measured in UTF-8 bytes, the unit of Step Functions' limit.
    """

    def encode(self, value: Any) -> str:
        """Encode a JSON-shaped value as compact JSON text."""
        return json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(",", ":"))

    def decode(self, data: str) -> Any:
        """Decode JSON text."""
        return json.loads(data)
