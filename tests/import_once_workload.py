"""An activity module that refuses a second import, in another process than the first.

For tests/test_forkserver.py: a module with such an import-time side effect is served
when the forkserver is a copy of the worker's process, and makes a new forkserver fail as
it preloads it.
"""

from __future__ import annotations

import os

from activities import Activity

_first = os.environ.setdefault("SFN_TEST_IMPORTED_IN", str(os.getpid()))
if _first != str(os.getpid()):
    msg = f"imported in process {_first} already"
    raise RuntimeError(msg)


class Once(Activity):
    """Echoes its input."""

    name = "preload-Once"

    def run(self, value: object) -> object:
        """Return ``value``."""
        return value
