"""An activity module that writes, as it is imported, which process imports it.

For tests/test_forkserver.py: the file named by ``SFN_TEST_IMPORT_LOG`` gets a line per
import, the importing process's pid.
"""

from __future__ import annotations

import os

from activities import Activity

_log = os.environ.get("SFN_TEST_IMPORT_LOG")
if _log:
    with open(_log, "a") as imports:
        imports.write(f"{os.getpid()}\n")


class Recorded(Activity):
    """Echoes its input."""

    name = "preload-Recorded"

    def run(self, value: object) -> object:
        """Return ``value``."""
        return value
