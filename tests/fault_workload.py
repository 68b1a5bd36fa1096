"""An activity for tests of faults of Step Functions: ``activities worker tests.fault_workload``."""

from __future__ import annotations

import time

from activities import Activity


class Pause(Activity):
    """Waits ``seconds``, then returns them: outcomes go out all the time."""

    name = "faults-Pause"

    def run(self, seconds: float) -> float:
        time.sleep(seconds)
        return seconds
