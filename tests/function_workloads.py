"""Function activities for the tests: importable, so that task processes find them."""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import TYPE_CHECKING, Any

from activities import ActivityError, activity
from transport import CompressedTransport

if TYPE_CHECKING:
    from collections.abc import Generator


class Busy(ActivityError):
    error = "Shelf.Busy"


@dataclasses.dataclass
class Parcel:
    id: int
    sent: dt.datetime


@activity
def echo(value: Any) -> Any:
    """Return the value."""
    return value


@activity(name="fn-stock")
def stock(item: str, quantity: int = 1, *, urgent: bool = False) -> dict[str, object]:
    return {"item": item, "quantity": quantity, "urgent": urgent}


@activity
def track(parcel: Parcel, checkpoints: list[dt.date]) -> dict[str, object]:
    """Annotated parameters are structured: a dataclass, dates."""
    assert isinstance(parcel, Parcel)
    assert all(isinstance(day, dt.date) for day in checkpoints)
    return {"id": parcel.id, "hour": parcel.sent.hour, "days": len(checkpoints)}


@activity(
    name="fn-count",
    task_lists=("fn-count-a", "fn-count-b"),
    transport=CompressedTransport(threshold=10),
    heartbeat_interval=5,
    max_concurrency=2,
)
def count(n: int) -> Generator[None, None, str]:
    """Heartbeat once per step; the return value is the result."""
    for _ in range(n):
        yield
    return n * "x"


@activity(name="fn-flaky")
def flaky(attempt: int, succeed_on: int) -> dict[str, int]:
    """Fail as Shelf.Busy until the state machine's retry count reaches ``succeed_on``."""
    if attempt < succeed_on:
        raise Busy(f"busy on attempt {attempt}")
    return {"attempt": attempt}
