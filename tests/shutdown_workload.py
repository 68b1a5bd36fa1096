"""The one activity the shutdown tests serve from a worker started on the command line."""

from __future__ import annotations

import os
import time
from pathlib import Path

from activities import Activity


class Slow(Activity):
    """Sleeps, then returns: a task still running when the worker is told to stop."""

    name = "it-Slow"

    def run(self, seconds: float, marker: str) -> str:
        Path(marker).write_text(str(os.getpid()))
        time.sleep(seconds)
        return "slept"
