"""The user's modules, as the command finds them: the import path, and errors that point.

``activities worker myproject`` imports ``myproject`` from the current directory (and
``--path`` ones) first, as ``python -m`` would; a module found nowhere is one line, and
an error raised while importing one names the file and line in the user's code.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import os
import sys
import traceback
from pathlib import Path
from typing import TYPE_CHECKING

from activities.errors import ConfigurationError

if TYPE_CHECKING:
    from collections.abc import Sequence

    from activities.errors import ActivitiesError

__all__ = ["check_findable", "pointed", "put_on_import_path"]

logger = logging.getLogger("activities.cli")  # the command's own lines

#: Where the framework's own modules are: their frames are not where a user's error is.
_OWN = (str(Path(__file__).resolve().parent) + os.sep,)


def pointed(exc: ActivitiesError) -> str:
    """``exc``'s message, led by ``file:line:`` when a user's module raised it at import.

    The place is the traceback's last frame in a file under the current directory (where
    the user's modules are), else its last frame outside the framework and Python's import
    machinery; for a ``SyntaxError``, the place it names. The whole traceback is logged
    at DEBUG.
    """
    cause = exc.__cause__
    if cause is None:
        return str(exc)
    frames = traceback.extract_tb(cause.__traceback__)
    if not any(frame.filename.startswith("<frozen importlib") for frame in frames):
        return str(exc)  # not raised by an import
    logger.debug("the error's traceback", exc_info=cause)
    if isinstance(cause, SyntaxError) and cause.filename and cause.lineno:
        return f"{_shown(cause.filename)}:{cause.lineno}: {exc}"
    theirs = [
        frame
        for frame in frames
        if not frame.filename.startswith("<") and not frame.filename.startswith(_OWN)
    ]
    mine = [frame for frame in theirs if _shown(frame.filename) != frame.filename]
    chosen = mine or theirs
    if not chosen:
        return str(exc)
    return f"{_shown(chosen[-1].filename)}:{chosen[-1].lineno}: {exc}"


def _shown(filename: str) -> str:
    """``filename`` relative to the current directory when it is under it, else as is."""
    path = Path(filename).resolve()
    with contextlib.suppress(ValueError):
        return str(path.relative_to(Path.cwd()))
    return filename


def put_on_import_path(extra: Sequence[str]) -> None:
    """Put ``--path`` directories, then the current one, first on the import path.

    As ``python -m`` does for the current directory; task processes get the same path.
    """
    for directory in reversed([*extra, os.curdir]):
        path = os.path.abspath(directory)
        if path in sys.path:
            sys.path.remove(path)
        sys.path.insert(0, path)


def check_findable(modules: Sequence[str], extra: Sequence[str]) -> None:
    """Refuse, in one line, a module that is nowhere on the import path.

    The line names what was looked for where the user's modules are: the current
    directory and the ``--path`` ones.
    """
    for module in modules:
        top = module.partition(".")[0]
        if importlib.util.find_spec(top) is None:
            where = [f"{os.getcwd()} (the current directory)"]
            where += [os.path.abspath(directory) for directory in extra]
            msg = (
                f"cannot import {module!r}: no {top}.py nor {top}/ in {', '.join(where)}, "
                f"nor elsewhere on sys.path; run the command where it is, or give its "
                f"directory with --path DIR"
            )
            raise ConfigurationError(msg)
