"""Zero work: ``activities worker benchmarks.workloads.nothing``."""

from __future__ import annotations

from typing import Any

from activities import Activity


class Nothing(Activity):
    """Zero work: the framework's own cost."""

    name = "bench-Nothing"

    def run(self, value: Any) -> Any:
        """Return ``value``."""
        return value
