"""A project's activities: finding them, where they are served, creating them in Step Functions.

- :func:`discover` imports a package and collects the Activity subclasses it defines;
- :func:`task_lists` says on which activity names (or ARNs) each class is served;
- :func:`register` creates those activities and returns their ARNs.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from typing import TYPE_CHECKING

from activities._activity import Activity, activity_name_problem, is_activity_arn
from activities.errors import ConfigurationError

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping, Sequence
    from types import ModuleType

    from activities.client import ActivityClient

__all__ = ["discover", "register", "task_lists"]


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


def task_lists(
    activities: Iterable[type[Activity]],
    *,
    prefix: str = "",
    overrides: Mapping[str, Sequence[str]] | None = None,
) -> dict[str, type[Activity]]:
    """Where each activity is served: task list (activity name or ARN) to class.

    A class is served on its ``task_lists`` or, when it has none, on its ``name``;
    ``overrides`` (keyed by the class's ``name``) replaces that. ``prefix`` goes before
    every name, not before ARNs.

    Raises:
        ConfigurationError: a task list is served by two classes, a prefixed name is not
            a valid activity name, or an override names no activity being served.
    """
    activities = list(activities)
    overrides = dict(overrides or {})
    unknown = set(overrides) - {activity.name for activity in activities}
    if unknown:
        msg = f"task lists given for activities not served: {', '.join(sorted(unknown))}"
        raise ConfigurationError(msg)
    served: dict[str, type[Activity]] = {}
    for activity in activities:
        lists = overrides.get(activity.name) or activity.task_lists or (activity.name,)
        for task_list in lists:
            key = task_list if is_activity_arn(task_list) else prefix + task_list
            problem = None if is_activity_arn(key) else activity_name_problem(key)
            if problem is not None:
                msg = (
                    f"{_path(activity)}: task list {key!r} is not a valid activity name: {problem}"
                )
                raise ConfigurationError(msg)
            other = served.setdefault(key, activity)
            if other is not activity:
                msg = f"{_path(other)} and {_path(activity)} are both served on {key!r}"
                raise ConfigurationError(msg)
    if not served:
        msg = "there is no activity to serve"
        raise ConfigurationError(msg)
    return served


def register(
    client: ActivityClient,
    served: Mapping[str, type[Activity]],
    *,
    tags: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """Create the activities of ``served`` (see :func:`task_lists`); task list to ARN.

    ``CreateActivity`` is idempotent: an activity that exists is found, not duplicated
    (its tags are left as they are). Task lists given as ARNs are taken as they are.
    """
    return {
        task_list: task_list
        if is_activity_arn(task_list)
        else client.create_activity(task_list, tags=tags)
        for task_list in served
    }
