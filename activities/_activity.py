"""The ``Activity`` base class: what a user subclasses to do the work of a task.

For an activity that is just a function, see :mod:`activities.function`.
"""

from __future__ import annotations

import inspect
import unicodedata
from typing import TYPE_CHECKING, Any, ClassVar

from activities.errors import ActivityDefinitionError
from transport import JSONTransport, Transport

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Generator

    from activities.task import Task

__all__ = ["DEFAULT_CADENCE", "Activity", "activity_name_problem", "cadence", "is_activity_arn"]

#: The longest activity name Step Functions accepts.
MAX_NAME_LENGTH = 80

#: Characters Step Functions refuses in an activity name (besides white space and controls).
FORBIDDEN_NAME_CHARACTERS = frozenset('<>{}[]?*"#%\\^|~`$&,;:/')

#: The least ``heartbeat_seconds`` an activity may declare. The worker heartbeats its tasks
#: every third of it: at least a second apart (a task spends at most a heartbeat a second of
#: the account's quota), with two seconds left for a late or retried heartbeat to land.
MIN_HEARTBEAT_SECONDS = 3

#: Seconds between two heartbeats of a task whose activity declares neither
#: ``heartbeat_seconds`` nor ``heartbeat_interval``: at its yields, and while it waits in
#: the buffer. Made for states whose ``HeartbeatSeconds`` is 30 or more (a heartbeat every
#: third of it); a task costs a tenth of a heartbeat a second of the account's quota.
DEFAULT_CADENCE = 10.0


def cadence(activity: type[Activity], interval: float | None) -> float:
    """Seconds between two heartbeats of a task of ``activity``.

    A third of its ``heartbeat_seconds``, or ``interval`` (its ``heartbeat_interval``, or
    the worker's override) when that is shorter; ``interval`` alone when it declares no
    ``heartbeat_seconds``; :data:`DEFAULT_CADENCE` when it has neither.
    """
    seconds = activity.heartbeat_seconds
    candidates = [seconds / 3] if seconds is not None else []
    if interval is not None:
        candidates.append(interval)
    return min(candidates) if candidates else DEFAULT_CADENCE


def activity_name_problem(name: object) -> str | None:
    r"""Say what makes ``name`` unacceptable as a Step Functions activity name, or ``None``.

    The rules are the API's: 1 to 80 characters, no white space, none of
    ``< > { } [ ] ? * " # % \ ^ | ~ ` $ & , ; : /`` and no control characters.
    """
    if not isinstance(name, str):
        return f"it must be a str, not {type(name).__name__}"
    if not 1 <= len(name) <= MAX_NAME_LENGTH:
        return f"it must be 1 to {MAX_NAME_LENGTH} characters long, not {len(name)}"
    for char in name:
        if char.isspace():
            return "it must not contain white space"
        if char in FORBIDDEN_NAME_CHARACTERS:
            return f"it must not contain {char!r}"
        if unicodedata.category(char).startswith("C"):
            return f"it must not contain the control character {char!r}"
    return None


def is_activity_arn(text: str) -> bool:
    """Whether ``text`` is an activity ARN rather than an activity name."""
    return text.startswith("arn:") and ":activity:" in text


class Activity:
    """Base class of activities: subclass it and override :meth:`run`.

    ::

        class Echo(Activity):
            def run(self, value):
                return value

    The task input is mapped onto ``run()``'s parameters by :attr:`transport` (a JSON
    object becomes keyword arguments, an array positional ones, any other value the single
    argument), and what ``run()`` returns becomes the task's output. An exception fails
    the task with the exception's ``error`` attribute or class name as the Step Functions
    error (see :class:`~activities.ActivityError`).

    ``run()`` may be a generator: each ``yield`` asks for a heartbeat and the generator's
    ``return`` value is the result. The worker sends one when one is due, at the task's
    cadence (a third of ``heartbeat_seconds``; see :doc:`/heartbeats`), however often it
    yields. When Step Functions answers that the task is gone,
    :class:`~activities.TaskCancelled` is raised at the ``yield`` (or from
    :meth:`heartbeat`) so that the work stops.

    ``run()`` may be ``async def``: the worker runs it on its task process's event loop,
    many at once (see :doc:`/async`), with ``await self.heartbeat()`` for a heartbeat;
    when the task is gone its coroutine is cancelled at the ``await`` it is in.

    One instance serves many tasks, one at a time: set up expensive state (clients,
    models) in ``__init__``, which takes no arguments.

    Attributes:
        name: the Step Functions activity name served; the class name by default.
            Checked against the API's rules when the class is defined.
        transport: encodes input and output; :class:`transport.JSONTransport` by default.
        task_lists: the activity names (or ARNs) this class is served on, when it is not
            only its ``name``: e.g. ``("resize-gpu", "resize-cpu")``. A worker's
            ``prefix`` goes before names, and its ``task_lists`` option overrides this.
        heartbeat_interval: when set, the worker sends a heartbeat every this many seconds
            (or every third of ``heartbeat_seconds``, if sooner) while a task runs, whether
            or not ``run()`` yields, so a long call into a library keeps its task alive.
            When Step Functions answers that the task is gone, work that does not yield is
            stopped by replacing its process.
        max_concurrency: when set, at most this many of the activity's tasks run at
            once across a worker, e.g. for a rate-limited downstream API; its task lists
            are not polled while its running and waiting tasks reach it, so its tasks
            stay in Step Functions for other workers. A worker's ``max_concurrency``
            option overrides this.
        heartbeat_seconds: when set, the ``HeartbeatSeconds`` the activity's ``Task``
            states declare, a whole number of seconds, at least 3 and above
            ``heartbeat_interval``. The worker heartbeats each of its tasks, running or
            waiting for a slot, every third of it, whether or not ``run()`` yields; its
            yields send nothing more. Without it (and without ``heartbeat_interval``), a
            task's yields send a heartbeat every 10 s, made for ``HeartbeatSeconds`` of 30
            or more (see :doc:`/heartbeats`). ``activities check`` (see
            :doc:`/statemachines`) reports a state whose ``HeartbeatSeconds`` differs.
    """

    name: ClassVar[str] = "Activity"
    transport: ClassVar[Transport] = JSONTransport()
    task_lists: ClassVar[tuple[str, ...]] = ()
    heartbeat_interval: ClassVar[float | None] = None
    max_concurrency: ClassVar[int | None] = None
    heartbeat_seconds: ClassVar[int | None] = None

    _task: Task | None = None
    _heartbeat: Callable[[], None] | None = None
    _run_is_async: ClassVar[bool] = False

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "name" not in cls.__dict__:
            cls.name = cls.__name__
        problem = activity_name_problem(cls.name)
        if problem is not None:
            msg = (
                f"{cls.__qualname__}.name = {cls.name!r} is not a valid Step Functions "
                f"activity name: {problem}"
            )
            raise ActivityDefinitionError(msg, activity=cls.__qualname__, setting="name")
        lists = cls.task_lists
        if not isinstance(lists, tuple) or not all(isinstance(item, str) for item in lists):
            msg = (
                f"{cls.__qualname__}.task_lists = {lists!r} must be a tuple of activity "
                f"names or ARNs"
            )
            raise ActivityDefinitionError(msg, activity=cls.__qualname__, setting="task_lists")
        for item in lists:
            problem = None if is_activity_arn(item) else activity_name_problem(item)
            if problem is not None:
                msg = f"{cls.__qualname__}.task_lists: {item!r} is not an activity name: {problem}"
                raise ActivityDefinitionError(msg, activity=cls.__qualname__, setting="task_lists")
        interval = cls.heartbeat_interval
        if interval is not None and (
            isinstance(interval, bool) or not isinstance(interval, int | float) or interval <= 0
        ):
            msg = (
                f"{cls.__qualname__}.heartbeat_interval = {interval!r} must be a number of "
                f"seconds above 0, or None"
            )
            raise ActivityDefinitionError(
                msg, activity=cls.__qualname__, setting="heartbeat_interval"
            )
        _check_heartbeat_seconds(cls)
        limit = cls.max_concurrency
        if limit is not None and (
            isinstance(limit, bool) or not isinstance(limit, int) or limit < 1
        ):
            msg = (
                f"{cls.__qualname__}.max_concurrency = {limit!r} must be a whole number "
                f">= 1, or None"
            )
            raise ActivityDefinitionError(msg, activity=cls.__qualname__, setting="max_concurrency")
        for method in ("deserialize_arguments", "serialize_result"):
            if not callable(getattr(cls.transport, method, None)):
                msg = (
                    f"{cls.__qualname__}.transport = {cls.transport!r} is not a transport: "
                    f"it has no {method}() method (subclass transport.Transport)"
                )
                raise ActivityDefinitionError(msg, activity=cls.__qualname__, setting="transport")
        run = inspect.unwrap(cls.__dict__.get("run", _no_run))
        if isinstance(run, staticmethod | classmethod):
            run = run.__func__
        cls._run_is_async = inspect.iscoroutinefunction(inspect.unwrap(cls.run))
        if inspect.isasyncgenfunction(run):
            msg = (
                f"{cls.__qualname__}.run is an async generator, which cannot return a "
                f"result: define it with async def and no yield, and call "
                f"`await self.heartbeat()` where a yield would be"
            )
            raise ActivityDefinitionError(msg, activity=cls.__qualname__, setting="run")

    def run(self, *args: Any, **kwargs: Any) -> Any:
        """Do the work of one task; override it. The return value is the task's output."""
        msg = f"{type(self).__qualname__} must override run()"
        raise NotImplementedError(msg)

    @property
    def task(self) -> Task:
        """The task being run, with its token, activity ARN, worker name, input and start.

        Raises:
            RuntimeError: no task is running on this instance.
        """
        if self._task is None:
            msg = f"{type(self).__qualname__}.task is only available while run() runs a task"
            raise RuntimeError(msg)
        return self._task

    def heartbeat(self) -> Awaitable[None]:
        """Tell Step Functions the task is alive, resetting its ``HeartbeatSeconds`` clock.

        In a worker the heartbeat is sent when one is due at the task's cadence (a call
        between two due times sends nothing; see :doc:`/heartbeats`), from a thread of its
        own: this never waits for the network (``ActivityClient.process`` sends it in
        place). In an ``async def run()``, ``await self.heartbeat()``; in a sync one, call
        it (what it returns needs no awaiting there).

        Raises:
            TaskCancelled: Step Functions no longer knows the task (it timed out or its
                execution ended): stop the work; nothing more will be sent for it.
            RuntimeError: no task is running on this instance.
        """
        if self._heartbeat is None:
            msg = f"{type(self).__qualname__}.heartbeat() is only available while run() runs a task"
            raise RuntimeError(msg)
        self._heartbeat()
        return _SENT

    def _deserialize_arguments(self, data: str) -> tuple[tuple[Any, ...], dict[str, Any]]:
        """Turn the task input into ``run()``'s ``(args, kwargs)``; override to customize.

        By default delegates to ``self.transport.deserialize_arguments`` with ``run()``'s
        signature. Any exception it raises fails the task as ``activities.InvalidInput``
        (an :class:`~activities.ActivityError` keeps its own ``error``).
        """
        return self.transport.deserialize_arguments(data, self._run_signature())

    def _serialize_result(self, result: Any) -> str:
        """Turn ``run()``'s return value into the task output; override to customize.

        By default delegates to ``self.transport.serialize_result``. Any exception it
        raises fails the task as ``activities.SerializationError``.
        """
        return self.transport.serialize_result(result)

    @classmethod
    def _run_signature(cls) -> inspect.Signature:
        """``run()``'s parameters without ``self``, annotations evaluated; cached per class.

        Only the parameters' annotations are evaluated (they say how to structure input);
        the return annotation is dropped, so it may name types imported only for type
        checking.
        """
        cached = cls.__dict__.get("_signature_cache")
        if cached is not None:
            return cached  # type: ignore[no-any-return]
        run = cls.run
        parameters = list(inspect.signature(run).parameters.values())
        if not isinstance(inspect.getattr_static(cls, "run"), staticmethod | classmethod):
            parameters = parameters[1:]  # self: run is looked up on the class, unbound
        namespace = getattr(inspect.unwrap(run), "__globals__", {})
        for index, parameter in enumerate(parameters):
            if isinstance(parameter.annotation, str):
                try:
                    annotation = eval(parameter.annotation, namespace, dict(vars(cls)))  # noqa: S307 - what typing.get_type_hints does
                except Exception as exc:
                    msg = (
                        f"{cls.__qualname__}.run: the annotation of {parameter.name!r} "
                        f"cannot be evaluated: {exc}"
                    )
                    raise ActivityDefinitionError(
                        msg, activity=cls.__qualname__, setting="run"
                    ) from exc
                parameters[index] = parameter.replace(annotation=annotation)
        signature = inspect.Signature(parameters)
        cls._signature_cache = signature  # type: ignore[attr-defined]
        return signature

    @classmethod
    def _is_generator(cls) -> bool:
        """Whether ``run()`` is a generator function, whose every ``yield`` is a heartbeat."""
        return inspect.isgeneratorfunction(cls.run)

    @classmethod
    def _is_async(cls) -> bool:
        """Whether ``run()`` is ``async def``: its tasks run on an event loop.

        Asked for every task: known once the class is defined (see ``__init_subclass__``).
        """
        return cls._run_is_async


class _Sent:
    """What :meth:`Activity.heartbeat` returns: awaiting it is over at once (it was sent)."""

    __slots__ = ()

    def __await__(self) -> Generator[None, None, None]:
        return iter(())  # type: ignore[return-value]


_SENT = _Sent()


def _check_heartbeat_seconds(cls: type[Activity]) -> None:
    """Refuse a ``heartbeat_seconds`` Step Functions would refuse, or heartbeats cannot meet."""
    seconds = cls.heartbeat_seconds
    if seconds is None:
        return
    if isinstance(seconds, bool) or not isinstance(seconds, int) or seconds < 1:
        msg = (
            f"{cls.__qualname__}.heartbeat_seconds = {seconds!r} must be a whole number of "
            f"seconds >= {MIN_HEARTBEAT_SECONDS} (a state's HeartbeatSeconds), or None"
        )
        raise ActivityDefinitionError(msg, activity=cls.__qualname__, setting="heartbeat_seconds")
    if seconds < MIN_HEARTBEAT_SECONDS:
        msg = (
            f"{cls.__qualname__}.heartbeat_seconds = {seconds!r} is too short: the worker "
            f"heartbeats every third of it, which must be a second or more, so that a late or "
            f"retried heartbeat still lands in time and a task spends at most one a second "
            f"of the account's quota; raise the states' HeartbeatSeconds to "
            f"{MIN_HEARTBEAT_SECONDS} or more"
        )
        raise ActivityDefinitionError(msg, activity=cls.__qualname__, setting="heartbeat_seconds")
    interval = cls.heartbeat_interval
    if interval is not None and interval >= seconds:
        msg = (
            f"{cls.__qualname__}.heartbeat_seconds = {seconds!r} must be above its "
            f"heartbeat_interval ({interval!r}): the heartbeats would come too late"
        )
        raise ActivityDefinitionError(msg, activity=cls.__qualname__, setting="heartbeat_seconds")


def _no_run() -> None:
    """What a class that does not define ``run`` has of its own: nothing async."""
