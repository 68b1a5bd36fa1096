"""The activity the tests of a worker's metrics serve: its input says how it ends."""

from __future__ import annotations

import time

from activities import Activity, ActivityError


class OutOfStock(ActivityError):
    error = "Inventory.OutOfStock"


class Judge(Activity):
    """Succeeds, fails with Inventory.OutOfStock or ValueError, or sleeps, as told."""

    name = "it-Judge"

    def run(self, verdict: str, seconds: float = 0) -> str:
        if verdict == "out-of-stock":
            raise OutOfStock("none left")
        if verdict == "invalid":
            msg = "not a quantity"
            raise ValueError(msg)
        time.sleep(seconds)
        return verdict
