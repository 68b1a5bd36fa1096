"""Slots and units: the contract between the worker and the places that run its tasks.

A *slot* runs one task at a time, handed to it by the worker (:class:`Slot`); slots live in
*units* the worker starts, replaces and stops (:class:`Unit`), which tell it when they are
ready, when they are to be recycled and when they ended (:class:`SlotOwner`):

- a task process (:mod:`activities.worker._process`) holds one slot, or several with
  ``threads``: a crash or a leak stays inside it, and it is replaced when it dies;
- in the worker's own process (``threads`` alone), a thread slot is a unit of one slot,
  and an async unit holds the process's async positions
  (:mod:`activities.worker._threadslots`).

What the worker keeps of a slot is its record, :class:`~activities.worker._slotstate.SlotState`;
:func:`take_all` takes what the slots of units that ended answered for.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

    from activities.task import Task
    from activities.worker._slotstate import Held, SlotState

__all__ = ["Slot", "SlotOwner", "Unit", "take_all"]


class SlotOwner(Protocol):
    """What a unit tells the worker. Called from a thread of the unit's own."""

    def on_ready(self, unit: Unit) -> None:
        """The unit's slots take tasks."""

    def on_exit(self, unit: Unit, reason: str, *, was_ready: bool) -> None:
        """The unit ended; ``reason`` says how."""

    def on_recycle(self, unit: Unit) -> None:
        """The unit is to be recycled: hand it no more tasks (see ``Slot.close``)."""

    def on_free(self) -> None:
        """A slot is free, and tasks wait for one."""


class Slot(Protocol):
    """A place that runs one task at a time, handed to it by the worker."""

    name: str
    kind: str
    position: int
    state: SlotState
    #: Whether it takes tasks of sync activities (an async position takes async ones only).
    takes_sync: bool

    @property
    def ready(self) -> bool:
        """Whether the slot takes tasks (its unit has started)."""

    def offer(self, task: Task, index: int) -> bool:
        """Hand ``task`` (of task list ``index``) to the slot; ``False`` if it is not free."""

    def close(self) -> None:
        """Hand the slot no more tasks: it ends once those handed are done."""


class Unit(Protocol):
    """What the worker starts, replaces and stops: a task process, or a thread slot."""

    name: str
    kind: str
    ready: bool

    @property
    def slots(self) -> Sequence[Slot]:
        """The unit's slots."""

    def start(self) -> None:
        """Start the process or thread; ``on_ready`` follows."""

    def terminate(self) -> bool:
        """Stop the unit at once; ``False`` if this kind cannot be stopped."""

    def is_alive(self) -> bool:
        """Whether the unit's process or thread still runs."""


def take_all(units: Iterable[Unit]) -> list[Held]:
    """Take every task the slots of ``units`` answer for (see :meth:`SlotState.take`)."""
    return [held for unit in units for slot in unit.slots for held in slot.state.take()]
