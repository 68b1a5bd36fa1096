"""Sixty zero-work activities, one per task list, for the "many task lists" scenario.

    activities worker benchmarks.many --processes 2

The classes (``Many00`` to ``Many59``, named ``bench-Many-00`` to ``bench-Many-59``) are made
in a loop and set as this module's attributes, where the worker's discovery finds them and
its task processes import them.
"""

from __future__ import annotations

from typing import Any

from activities import Activity
from benchmarks.work import MANY


def _echo(self: Activity, value: Any) -> Any:
    """Zero work: return the input."""
    return value


for _index, _name in enumerate(MANY):
    _qualname = f"Many{_index:02d}"
    globals()[_qualname] = type(
        _qualname,
        (Activity,),
        {
            "__module__": __name__,
            "__qualname__": _qualname,
            "__doc__": f"Zero work, on the task list {_name}.",
            "name": _name,
            "run": _echo,
        },
    )
