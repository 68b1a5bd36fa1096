"""Installing LocalStack into a virtualenv of its own, once, never over a folder of yours.

:class:`activities.local.LocalStepFunctions` calls :func:`install_localstack` as it starts;
LocalStack pins its own boto3, so it never shares the project's environment.
"""

from __future__ import annotations

import fcntl
import logging
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from activities.errors import LocalStepFunctionsError

__all__ = ["LOCALSTACK_VERSION", "default_home", "install_localstack"]

logger = logging.getLogger("activities.local")  # what a user of the local endpoint reads

#: The LocalStack release used: the newest whose Step Functions runs on Python 3.11.
LOCALSTACK_VERSION = "4.9.2"

#: What is installed into LocalStack's virtualenv, besides the pins of the constraints file.
REQUIREMENTS = (
    f"localstack-core[base-runtime]=={LOCALSTACK_VERSION}",
    "antlr4-python3-runtime==4.13.2",
    "jsonpath-ng",
    "jpype1",
    "moto-ext",
    "pydantic",
    "cbor2<6",  # 6.x removed cbor2._decoder: "No component plugins found" at start
    "localstack-twisted<26",  # 26.x imports service_identity unconditionally
    "pyopenssl<24.3",  # newer lacks X509.add_extensions: certificate creation fails
)

#: A full freeze of a working set, passed to pip with ``-c``.
CONSTRAINTS = Path(__file__).with_name("localstack-constraints.txt")

#: Environment variable naming the virtualenv to install LocalStack into.
HOME_VARIABLE = "SFN_ACTIVITIES_LOCALSTACK_HOME"

_MARKER = ".sfn-activities-installed"
_STAGING_MARKER = ".sfn-activities-installing"


def default_home() -> Path:
    """Where LocalStack is installed: ``$SFN_ACTIVITIES_LOCALSTACK_HOME`` or the user cache."""
    configured = os.environ.get(HOME_VARIABLE)
    if configured:
        return Path(configured)
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    tag = f"py{sys.version_info.major}{sys.version_info.minor}"
    return cache / "sfn-activities" / f"localstack-{LOCALSTACK_VERSION}-{tag}"


def install_localstack(home: Path | None = None) -> Path:
    """Install LocalStack into its own virtualenv unless it is there; return its Python.

    It installs into a temporary sibling of ``home`` and renames that into place when
    complete, so that ``home`` is either missing or a finished installation. It never
    deletes ``home``: an existing folder that is not one of its installations (nor empty)
    is refused. Safe to call from several processes at once: they wait for one another.

    Raises:
        LocalStepFunctionsError: ``home`` is a folder of something else, or the
            installation failed (the message holds pip's output).
    """
    home = home if home is not None else default_home()
    python = home / "bin" / "python"
    if (home / _MARKER).exists():
        return python
    home.parent.mkdir(parents=True, exist_ok=True)
    with open(home.parent / f".{home.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (home / _MARKER).exists():  # another process finished it while we waited
            return python
        _refuse_foreign(home)
        _remove_stale_staging(home)
        logger.info("installing LocalStack %s into %s (first use only)", LOCALSTACK_VERSION, home)
        staging = Path(tempfile.mkdtemp(dir=home.parent, prefix=f".{home.name}.installing-"))
        try:
            (staging / _STAGING_MARKER).write_text(str(os.getpid()))
            _run(
                [sys.executable, "-m", "venv", "--prompt", home.name, str(staging)],
                "create a virtualenv",
            )
            _run(
                [str(staging / "bin" / "python"), "-m", "pip", "install", "--quiet",
                 "--disable-pip-version-check", "--no-compile", "-c", str(CONSTRAINTS),
                 *REQUIREMENTS],
                f"install LocalStack {LOCALSTACK_VERSION} from PyPI",
            )  # fmt: skip
            _relocate_scripts(staging, home)
            (staging / _MARKER).write_text(LOCALSTACK_VERSION)
            (staging / _STAGING_MARKER).unlink()
            os.replace(staging, home)  # fails, deleting nothing, if home is no longer empty
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
    return python


def _refuse_foreign(home: Path) -> None:
    """Refuse a ``home`` that exists and is neither empty nor an installation of ours."""
    if not (home.exists() or home.is_symlink()):
        return
    if home.is_dir() and not home.is_symlink() and not any(home.iterdir()):
        return  # an empty folder: the rename replaces it
    msg = (
        f"{home} exists and is not a LocalStack installation of sfn-activities (no "
        f"{_MARKER} in it); it is left alone: move it away, or set {HOME_VARIABLE} to a "
        f"folder that does not exist yet"
    )
    raise LocalStepFunctionsError(msg)


def _remove_stale_staging(home: Path) -> None:
    """Remove what an installation killed half-way left beside ``home`` (under the lock)."""
    for stale in home.parent.glob(f".{home.name}.installing-*"):
        if (stale / _STAGING_MARKER).is_file() and not stale.is_symlink():
            logger.info("removing the unfinished installation %s", stale)
            shutil.rmtree(stale, ignore_errors=True)


def _relocate_scripts(staging: Path, home: Path) -> None:
    """Point the virtualenv's scripts (shebangs, ``activate``) at ``home``, where it will be.

    pip installs with ``--no-compile``, so no byte code holds the temporary path either:
    Python compiles the modules on first import from ``home``.
    """
    old, new = str(staging).encode(), str(home).encode()
    for script in [*(staging / "bin").iterdir(), staging / "pyvenv.cfg"]:
        if script.is_symlink() or not script.is_file():
            continue
        content = script.read_bytes()
        if old in content:
            script.write_bytes(content.replace(old, new))


def _run(command: list[str], what: str) -> None:
    result = subprocess.run(command, capture_output=True, text=True, check=False)  # noqa: S603 - our fixed commands
    if result.returncode != 0:
        msg = (
            f"could not {what} (exit {result.returncode}): {result.stderr.strip()[-2000:]}\n"
            f"This needs Python {sys.version_info.major}.{sys.version_info.minor} with venv and "
            f"access to PyPI. Set {HOME_VARIABLE} to install elsewhere."
        )
        raise LocalStepFunctionsError(msg)
