"""Development tasks: ``nox`` runs the checks CI runs; ``nox -s NAME`` runs one."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import nox

nox.options.sessions = ["tests", "unit", "lint", "typing", "docs"]
nox.options.default_venv_backend = "venv"
nox.options.error_on_missing_interpreters = True

PYPROJECT = nox.project.load_toml("pyproject.toml")


def install_group(session: nox.Session, group: str, *, project: bool = True) -> None:
    """Install a PEP 735 dependency group, and the project itself unless told not to."""
    session.install(*nox.project.dependency_groups(PYPROJECT, group))
    if project:
        session.install(".")


#: The interpreters besides the default one whose unit tests CI runs: the forkserver leans
#: on private ``multiprocessing`` state, which a Python release may change.
OTHER_PYTHONS = ["3.12", "3.13"]

#: What the unit tests of an interpreter run with besides the tests' group: on 3.12,
#: urllib3 1.x (1.26; botocore allows 1.25.4 and later), so that the direct path's use of
#: urllib3's pool (``activities._aws.connections``) is checked against both of its majors.
UNIT_EXTRAS = {"3.12": ["urllib3<2"]}


def _find_pyenv_pythons() -> None:
    """Put pyenv's installed-but-not-selected interpreters of OTHER_PYTHONS on the PATH.

    pyenv's shims answer only for the versions selected (``pyenv global``); nox looks on
    the PATH. A machine without pyenv is left as it is.
    """
    root = Path(os.environ.get("PYENV_ROOT") or Path.home() / ".pyenv") / "versions"
    found = []
    for version in OTHER_PYTHONS:
        if shutil.which(f"python{version}") and not _is_pyenv_shim(f"python{version}"):
            continue
        installs = sorted(root.glob(f"{version}.*/bin/python{version}"))
        if installs:
            found.append(str(installs[-1].parent))
    if found:
        os.environ["PATH"] = os.pathsep.join([*found, os.environ.get("PATH", "")])


def _is_pyenv_shim(command: str) -> bool:
    where = shutil.which(command)
    return where is not None and "/shims/" in where


_find_pyenv_pythons()


@nox.session
def tests(session: nox.Session) -> None:
    """Run the test suite, one pytest process per core (``-- -p no:xdist`` for one)."""
    install_group(session, "tests")
    session.run("pytest", *parallel(session), *session.posargs)


@nox.session(python=OTHER_PYTHONS)
def unit(session: nox.Session) -> None:
    """Run the tests that need no local Step Functions on Python 3.12 and 3.13.

    LocalStack runs on 3.11 only (``docs/local.md``); ``tests`` runs every test there.
    3.12's run with urllib3 1.26 (``UNIT_EXTRAS``).
    """
    install_group(session, "tests")
    extras = UNIT_EXTRAS.get(str(session.python), [])
    if extras:
        session.install(*extras)
    session.run("pytest", *parallel(session), "-m", "not integration", *session.posargs)


def parallel(session: nox.Session) -> list[str]:
    """pytest-xdist's options: a process per core, unless the arguments choose otherwise."""
    chosen = any(
        arg in {"-n", "-p", "--numprocesses"} or arg.startswith("-n") for arg in session.posargs
    )
    return [] if chosen else ["--numprocesses", "auto"]


@nox.session
def lint(session: nox.Session) -> None:
    """Check formatting and lint with ruff."""
    install_group(session, "lint", project=False)
    session.run("ruff", "format", "--check", ".")
    session.run("ruff", "check", ".")


@nox.session
def typing(session: nox.Session) -> None:
    """Type-check both packages and the typing examples with mypy --strict."""
    install_group(session, "typing")
    session.run("mypy", *session.posargs)


@nox.session
def demo(session: nox.Session) -> None:
    """Serve the examples against a local Step Functions and run a batch of executions."""
    session.install(".")
    session.run("python", "-m", "examples.demo", *session.posargs)


@nox.session
def bench(session: nox.Session) -> None:
    """Measure the worker against bare boto3 loops; writes docs/benchmarks.md."""
    session.install(".[prometheus]")
    session.run("python", "-m", "benchmarks.run", *session.posargs)


@nox.session
def claimcheck(session: nox.Session) -> None:
    """Measure a task process's memory while 50 MB go through the claim-check transport."""
    session.install(".")
    session.run("python", "-m", "benchmarks.claimcheck", *session.posargs)


@nox.session
def faults(session: nox.Session) -> None:
    """Throttling: how fast the worker recovers, how it backs off (benchmarks/faults.py)."""
    session.install(".")
    session.run("python", "-m", "benchmarks.faults", *session.posargs)


@nox.session
def cost(session: nox.Session) -> None:
    """CPU per zero-work task of the worker's whole process tree, against bare boto3 loops."""
    session.install(".")
    session.run("python", "-m", "benchmarks.cost", *session.posargs)


@nox.session
def heartbeats(session: nox.Session) -> None:
    """SendTaskHeartbeat calls a second for 500 yielding tasks (benchmarks/heartbeats.py)."""
    session.install(".")
    session.run("python", "-m", "benchmarks.heartbeats", *session.posargs)


@nox.session
def chaos(session: nox.Session) -> None:
    """Kill task processes under load, stop workers while they start: what is left open?"""
    session.install(".")
    session.run("python", "-m", "benchmarks.chaos", *session.posargs)


@nox.session
def docs(session: nox.Session) -> None:
    """Build the documentation, failing on any warning (broken links, bad references)."""
    install_group(session, "docs")
    out = session.create_tmp() + "/html"
    session.run("sphinx-build", "--fail-on-warning", "--nitpicky", "--quiet", "docs", out)
    session.log(f"the HTML is in {out}/index.html")
