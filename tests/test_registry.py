from __future__ import annotations

import sys
import textwrap
from typing import TYPE_CHECKING

import pytest

from activities import ConfigurationError
from activities.registry import discover

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A throwaway package 'proj' on sys.path."""
    root = tmp_path / "proj"
    root.mkdir()
    (root / "__init__.py").write_text("")
    monkeypatch.syspath_prepend(str(tmp_path))
    yield root
    for name in [name for name in sys.modules if name == "proj" or name.startswith("proj.")]:
        del sys.modules[name]


def write(path: Path, source: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(source))


class TestDiscover:
    def test_collects_the_package_and_its_submodules(self, project: Path) -> None:
        """Activities of every submodule are found, once, where they are defined."""
        write(
            project / "a.py",
            """
            from activities import Activity
            class Echo(Activity):
                def run(self, value):
                    return value
        """,
        )
        write(project / "sub" / "__init__.py", "")
        write(
            project / "sub" / "b.py",
            """
            from activities import Activity
            from proj.a import Echo  # imported, not defined here
            class Base(Activity):  # does not override run(): an abstract base
                pass
            class Resize(Base):
                def run(self):
                    return 1
        """,
        )
        assert sorted(cls.__qualname__ for cls in discover("proj")) == ["Echo", "Resize"]

    def test_duplicate_names_name_both_classes(self, project: Path) -> None:
        """Two activities served under one name are refused before any poll."""
        write(
            project / "a.py",
            """
            from activities import Activity
            class Echo(Activity):
                def run(self): ...
        """,
        )
        write(
            project / "b.py",
            """
            from activities import Activity
            class Other(Activity):
                name = "Echo"
                def run(self): ...
        """,
        )
        with pytest.raises(ConfigurationError, match=r"proj\.a\.Echo and proj\.b\.Other"):
            discover("proj")

    def test_broken_submodule_is_named(self, project: Path) -> None:
        """An import error deep in the package says which module."""
        write(project / "bad.py", "raise RuntimeError('boom')\n")
        with pytest.raises(ConfigurationError, match=r"cannot import 'proj\.bad': RuntimeError"):
            discover("proj")
