"""Waiting for something to happen in a test, without asserting anything about time."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable


def wait_until(condition: Callable[[], object], timeout: float = 30) -> bool:
    """Poll ``condition`` until it is true; the timeout only bounds a broken test."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.01)
    return bool(condition())
