"""The activities sfn-activities serves in the benchmarks, one module each.

    activities worker benchmarks.workloads.nothing --processes 2

The ``activities worker`` command serves every activity of the modules it is given, so
each workload lives in a module of its own and the worker serves that one task list, as a
user's worker would.
"""

from __future__ import annotations

from benchmarks.workloads.awaiting import Await
from benchmarks.workloads.burn import Burn
from benchmarks.workloads.chatty import Chatty
from benchmarks.workloads.dispatch import Dispatch
from benchmarks.workloads.nothing import Nothing
from benchmarks.workloads.sleeping import Sleep

__all__ = ["Await", "Burn", "Chatty", "Dispatch", "Nothing", "Sleep"]

#: The module serving each benchmark activity, by the activity's name.
MODULES = {
    Nothing.name: Nothing.__module__,
    Burn.name: Burn.__module__,
    Dispatch.name: Dispatch.__module__,
    Chatty.name: Chatty.__module__,
    Await.name: Await.__module__,
    Sleep.name: Sleep.__module__,
}
