"""The smallest activity: returns what it was given."""

from __future__ import annotations

from typing import Any

from activities import Activity


class Echo(Activity):
    """Return the input's ``value``: ``{"value": "hi"}`` gives ``"hi"``."""

    def run(self, value: Any) -> Any:
        """Return ``value`` unchanged."""
        return value
