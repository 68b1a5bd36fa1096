"""The public surface is exactly what __all__ says, and the packages stay independent."""

from __future__ import annotations

import importlib.metadata
import subprocess
import sys
import types
import typing

import pytest

import activities
import activities.local
import activities.testing
import transport


@pytest.mark.parametrize("module", [activities, activities.local, activities.testing, transport])
def test_all_is_the_public_surface(module: object) -> None:
    """Every public class and function is in __all__, and every name in it exists.

    Module constants (the ``#:`` tunables) are documented attributes; listing them in
    __all__ is left to each module. ruff keeps __all__ sorted.
    """
    name_of_module: str = module.__name__  # type: ignore[attr-defined]
    is_package = hasattr(module, "__path__")

    def defined_here(value: object) -> bool:
        if isinstance(value, types.UnionType):  # a type alias such as Outcome
            value = typing.get_args(value)[0]
        home = getattr(value, "__module__", name_of_module)
        return home.startswith(name_of_module) if is_package else home == name_of_module

    public = {
        name
        for name, value in vars(module).items()
        if not name.startswith("_")
        and not isinstance(value, types.ModuleType)
        and name not in {"annotations", "TYPE_CHECKING"}
        and isinstance(value, type | types.FunctionType | types.UnionType)
        and defined_here(value)
    }
    exported = module.__all__  # type: ignore[attr-defined]
    api = {name for name in exported if not name.isupper() and name != "__version__"}
    assert api == public
    for name in exported:
        assert hasattr(module, name)


def test_version_comes_from_the_distribution() -> None:
    """__version__ is never typed twice: it is the installed distribution's."""
    assert activities.__version__ == importlib.metadata.version("sfn-activities")


def test_transport_does_not_import_activities() -> None:
    """transport is usable alone, by code that only starts executions."""
    code = "import sys, transport; assert 'activities' not in sys.modules, sorted(sys.modules)"
    subprocess.run([sys.executable, "-c", code], check=True)
