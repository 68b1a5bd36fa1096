"""An activity that fails with error names a state machine's Retry and Catch match."""

from __future__ import annotations

from activities import Activity, ActivityError


class Busy(ActivityError):
    """A transient failure: worth retrying. Step Functions error ``Inventory.Busy``."""

    error = "Inventory.Busy"


class Reserve(Activity):
    """Reserve stock for an order.

    Fails with ``Inventory.Busy`` on the attempts before ``succeed_on_attempt`` (the state
    machine passes ``$$.State.RetryCount`` as ``attempt``), and with ``ValueError`` for a
    quantity that is not positive.
    """

    def run(
        self, item: str, quantity: int, attempt: int = 0, succeed_on_attempt: int = 0
    ) -> dict[str, object]:
        """Return the reservation, or raise ``Busy`` or ``ValueError``."""
        if quantity <= 0:
            msg = f"quantity must be positive, got {quantity}"
            raise ValueError(msg)
        if attempt < succeed_on_attempt:
            msg = f"inventory busy on attempt {attempt}, try again"
            raise Busy(msg)
        return {"item": item, "quantity": quantity, "attempt": attempt}
