"""The activity the tests of a worker's metrics serve: its input says how it ends."""

from __future__ import annotations

import time

from prometheus_client import Counter

from activities import Activity, ActivityError

#: A metric of the user's, made when the module is imported: it shows on the worker's
#: /metrics, counted in every task process.
JUDGED = Counter("it_judged", "Tasks judged, by verdict.", ["verdict"], registry=None)


class OutOfStock(ActivityError):
    error = "Inventory.OutOfStock"


class Judge(Activity):
    """Succeeds, fails with Inventory.OutOfStock or ValueError, or sleeps, as told."""

    name = "it-Judge"

    def run(self, verdict: str, seconds: float = 0) -> str:
        JUDGED.labels(verdict).inc()
        if verdict == "out-of-stock":
            raise OutOfStock("none left")
        if verdict == "invalid":
            msg = "not a quantity"
            raise ValueError(msg)
        time.sleep(seconds)
        return verdict
