"""The repository keeps its promises to a new user."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).parent.parent


def test_ci_runs_the_readme_test_command() -> None:
    """The command the README gives for the tests is the one CI runs."""
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    commands = re.findall(r"^python3 -m pip install .*nox.*$", readme, flags=re.MULTILINE)
    test_commands = [command for command in commands if "-s tests" in command]
    assert len(test_commands) == 1, commands
    assert test_commands[0] in ci.splitlines()


def test_readme_has_exactly_the_install_demo_and_test_commands() -> None:
    """A new user is given three commands: install it, see it work, run the tests."""
    readme = (ROOT / "README.md").read_text()
    commands = re.findall(r"^python3 -m pip install .*$", readme, flags=re.MULTILINE)
    assert len(commands) == 3, commands
    assert commands[0] == "python3 -m pip install ."
    assert commands[1].endswith("python3 -m nox -s demo")
    assert "-s tests" in commands[2]


def test_changelog_has_an_unreleased_section() -> None:
    """Changes are recorded as they are made."""
    assert "## Unreleased" in (ROOT / "CHANGELOG.md").read_text()
