"""Activities that are just a function: the :func:`activity` decorator.

``@activities.activity`` makes a :class:`FunctionActivity` subclass whose ``run`` is the
function (:class:`~activities.Activity` itself is defined in ``activities._activity``, so
that no module shadows the decorator's name).
"""

from __future__ import annotations

import inspect
from typing import TYPE_CHECKING, Any, Generic, TypeVar, overload

from activities._activity import Activity
from activities.errors import ActivityDefinitionError

if TYPE_CHECKING:
    from collections.abc import Callable

    from transport import Transport

__all__ = ["FunctionActivity", "activity"]

#: The type of the function a :class:`FunctionActivity` runs.
T = TypeVar("T", bound="Callable[..., Any]")


class FunctionActivity(Activity, Generic[T]):
    """The base of the classes :func:`activity` makes: their ``run`` is a function.

    ``run`` is the decorated function itself, as a static method, so a type checker sees
    its parameters and return type: ``resize_image.run("a.png", 64)`` calls the plain
    function, e.g. in a unit test. The class is served as any Activity subclass is.
    """

    run: T


@overload
def activity(function: T, /) -> type[FunctionActivity[T]]: ...
@overload
def activity(
    *,
    name: str | None = None,
    task_lists: tuple[str, ...] = (),
    transport: Transport | None = None,
    heartbeat_interval: float | None = None,
    max_concurrency: int | None = None,
    heartbeat_seconds: int | None = None,
) -> Callable[[T], type[FunctionActivity[T]]]: ...
def activity(
    function: Callable[..., Any] | None = None,
    /,
    *,
    name: str | None = None,
    task_lists: tuple[str, ...] = (),
    transport: Transport | None = None,
    heartbeat_interval: float | None = None,
    max_concurrency: int | None = None,
    heartbeat_seconds: int | None = None,
) -> type[FunctionActivity[Any]] | Callable[[Callable[..., Any]], type[FunctionActivity[Any]]]:
    """Turn a function into an :class:`~activities.Activity` subclass whose ``run`` it is.

    ::

        @activity
        def resize_image(key: str, width: int = 256) -> str:
            ...

        @activity(name="resize-gpu", heartbeat_interval=10)
        def resize_on_gpu(keys: list[str]):
            for key in keys:
                ...
                yield  # a heartbeat, as in a generator run()

    The name the function is defined under becomes the class: ``resize_image`` *is* an
    Activity subclass (a :class:`FunctionActivity`) with the function's module and
    qualified name, so that the worker discovers it, lists it, registers it and sends it
    to task processes (by reference) as it does a class. The function is the class's
    ``run``, a static method: its parameters are the input's schema (annotations
    structured with cattrs), a generator function asks for a heartbeat at each ``yield``,
    and ``resize_image.run(...)`` calls the plain function, e.g. in a unit test. A function
    has no ``self``: an activity that needs ``self.task``, ``self.heartbeat()`` or state
    set up in ``__init__`` is a class.

    Bare, the activity is named after the function (``resize_image``); the keyword
    arguments set the class attributes of the same names, checked as a class's are.

    Args:
        function: the function; given when the decorator is used bare.
        name: the Step Functions activity name; the function's name by default.
        task_lists: the activity names or ARNs served, when not only ``name``.
        transport: how input and output are encoded; :class:`transport.JSONTransport`
            by default.
        heartbeat_interval: seconds between automatic heartbeats while a task runs.
        max_concurrency: the most tasks of the activity run at once in a worker.
        heartbeat_seconds: the ``HeartbeatSeconds`` of the activity's states: the worker
            heartbeats its tasks every third of it, and ``activities check`` holds it
            against the states.

    Returns:
        The Activity subclass, or, when called with keyword arguments only, a decorator
        that makes it.

    Raises:
        ActivityDefinitionError: ``function`` is not a function (an ``async def`` is, an
            async generator is not), or a setting is invalid (e.g. a name Step Functions
            refuses).
    """
    settings: dict[str, Any] = {
        "task_lists": task_lists,
        "heartbeat_interval": heartbeat_interval,
        "max_concurrency": max_concurrency,
        "heartbeat_seconds": heartbeat_seconds,
    }
    if name is not None:
        settings["name"] = name
    if transport is not None:
        settings["transport"] = transport

    def decorate(function: Callable[..., Any]) -> type[FunctionActivity[Any]]:
        return _activity_class(function, settings)

    return decorate if function is None else decorate(function)


def _activity_class(
    function: Callable[..., Any], settings: dict[str, Any]
) -> type[FunctionActivity[Any]]:
    """The Activity subclass standing for ``function``: its run, module and names."""
    qualname = getattr(function, "__qualname__", repr(function))
    if not inspect.isfunction(function):
        msg = f"@activity decorates a function, not {function!r}"
        if isinstance(function, type):
            msg += ": a class is an activity when it subclasses Activity"
        raise ActivityDefinitionError(msg, activity=qualname, setting="run")
    if inspect.isasyncgenfunction(function):
        msg = (
            f"{qualname} is an async generator, which cannot return a result: define it "
            f"with async def and no yield"
        )
        raise ActivityDefinitionError(msg, activity=qualname, setting="run")
    namespace = {
        "__module__": function.__module__,
        "__qualname__": qualname,
        "__doc__": function.__doc__,
        "run": staticmethod(function),
        **settings,
    }
    return type(function.__name__, (FunctionActivity,), namespace)
