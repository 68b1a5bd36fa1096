"""Activities and errors that ``tests/test_check.py`` holds state machine definitions against.

Each class is one way an activity heartbeats (or does not); the errors are the project's own.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from activities import Activity, ActivityError, activity

if TYPE_CHECKING:
    from collections.abc import Generator


class OutOfStock(ActivityError):
    """A project's error with a name of its own."""

    error = "Inventory.OutOfStock"


class PaymentDeclined(Exception):
    """A plain exception of the project: reported under its class name."""


class Echo(Activity):
    """Sends no heartbeat: no interval, no yield, no heartbeat() call."""

    def run(self, value: Any) -> Any:
        return value


class Ship(Activity):
    """Heartbeats at each yield."""

    def run(self, order_id: int) -> Generator[None, None, dict[str, int]]:
        yield
        return {"shipped": order_id}


class Charge(Activity):
    """Heartbeats from a helper method."""

    def run(self, amount: int) -> int:
        self._alive()
        return amount

    def _alive(self) -> None:
        self.heartbeat()


class Resize(Activity):
    """Heartbeats every 10 s from the worker."""

    heartbeat_interval = 10

    def run(self, key: str) -> str:
        return key


class Reserve(Activity):
    """Declares the HeartbeatSeconds of its states."""

    heartbeat_interval = 10
    heartbeat_seconds = 60

    def run(self, quantity: int) -> int:
        if quantity <= 0:
            raise OutOfStock(str(quantity))
        return quantity


@activity(name="notify", heartbeat_interval=5)
def notify(message: str) -> str:
    """A function activity with heartbeats."""
    return message
