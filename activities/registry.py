"""Finding the activities of a project: the Activity subclasses a module or package defines."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from typing import TYPE_CHECKING

from activities.activity import Activity
from activities.errors import ConfigurationError

if TYPE_CHECKING:
    from collections.abc import Iterable
    from types import ModuleType

__all__ = ["discover"]


def discover(*module_names: str) -> list[type[Activity]]:
    """Import modules (packages with all their submodules) and collect their activities.

    An activity is collected where it is defined: a class imported from elsewhere is not
    collected twice, and classes that do not override ``run()`` (abstract bases) are
    skipped. Nothing is created in Step Functions.

    Raises:
        ConfigurationError: a module cannot be imported, or two activities share a name;
            the message names them.
    """
    found: dict[str, type[Activity]] = {}
    for module in _modules(module_names):
        for activity in _defined_in(module):
            other = found.setdefault(activity.name, activity)
            if other is not activity:
                msg = (
                    f"{_path(other)} and {_path(activity)} are both named {activity.name!r}: "
                    f"set a distinct `name` on one of them"
                )
                raise ConfigurationError(msg)
    return list(found.values())


def _modules(names: Iterable[str]) -> list[ModuleType]:
    modules = []
    for name in names:
        module = _import(name)
        modules.append(module)
        if hasattr(module, "__path__"):
            prefix = f"{module.__name__}."
            for info in pkgutil.walk_packages(module.__path__, prefix, onerror=_import):
                modules.append(_import(info.name))
    return modules


def _import(name: str) -> ModuleType:
    try:
        return importlib.import_module(name)
    except Exception as exc:
        msg = f"cannot import {name!r}: {type(exc).__name__}: {exc}"
        raise ConfigurationError(msg) from exc


def _defined_in(module: ModuleType) -> list[type[Activity]]:
    return [
        value
        for value in vars(module).values()
        if isinstance(value, type)
        and issubclass(value, Activity)
        and value.__module__ == module.__name__
        and value.run is not Activity.run
        and not inspect.isabstract(value)
    ]


def _path(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"
