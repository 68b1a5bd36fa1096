"""Holding a state machine definition against the activities served: :func:`check_definition`.

Every ``Task`` state whose ``Resource`` is an activity ARN, at any depth (``Parallel``
branches, ``Map`` item processors), is matched by its activity name with the worker's own
naming rules (:func:`activities.registry.task_lists`), and its ``HeartbeatSeconds``,
``Retry`` and ``Catch`` are held against the class that serves it. The rules and why each
matters are in :doc:`/statemachines`; ``activities check`` runs them from the command line.
"""

from __future__ import annotations

import ast
import builtins
import difflib
import inspect
import json
import sys
import textwrap
from typing import TYPE_CHECKING, Any, Literal

import attrs

from activities import errors as framework_errors
from activities._activity import DEFAULT_CADENCE, MIN_HEARTBEAT_SECONDS
from activities._asl import STATES_ERRORS, activity_name
from activities.errors import ActivityError, ConfigurationError
from activities.function import FunctionActivity
from activities.registry import task_lists as served_task_lists
from activities.worker._settings import heartbeat_intervals as intervals_of
from transport import S3ClaimCheckError

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator, Mapping, Sequence

    from activities._activity import Activity

__all__ = ["Finding", "check_definition"]

#: A finding's severity: ``error`` fails the check, ``warning`` fails it with ``--strict``,
#: ``info`` (a state that could not be checked) never does.
Severity = Literal["error", "warning", "info"]

#: How close (difflib's ratio) an unknown name must be to a known one to be called a typo.
CLOSE = 0.8

#: What a state's ``TimeoutSeconds`` is when it sets none.
DEFAULT_TIMEOUT = 99_999_999


@attrs.frozen
class Finding:
    """What :func:`check_definition` found wrong (or could not check) in one state.

    ``str(finding)`` is the line ``activities check`` prints: ``PATH: message``.

    Attributes:
        path: the state's place in the definition: ``Reserve`` at the top,
            ``Fulfil.Branches[1].Ship`` in a ``Parallel``, ``Each.ItemProcessor.Resize``
            in a ``Map``.
        severity: ``"error"`` (executions fail or hang), ``"warning"`` (they may), or
            ``"info"`` (the state's activity could not be read, so it was not checked).
        message: what is wrong and what to change.
    """

    path: str
    severity: Severity
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


def check_definition(
    definition: Mapping[str, Any] | str,
    activities: Iterable[type[Activity]],
    *,
    prefix: str = "",
    task_lists: Mapping[str, Sequence[str]] | None = None,
    heartbeat_intervals: Mapping[str, float | None] | None = None,
) -> list[Finding]:
    """Hold a state machine definition against the activities a worker would serve.

    ::

        findings = check_definition(definition, discover("myproject.activities"))
        assert [f for f in findings if f.severity == "error"] == []

    Args:
        definition: the Amazon States Language definition, parsed or as JSON text.
        activities: the Activity classes served, e.g. :func:`activities.registry.discover`'s.
        prefix: the worker's ``prefix``: put before every activity name served.
        task_lists: the worker's ``task_lists`` option (activity name to task lists).
        heartbeat_intervals: the worker's ``heartbeat_intervals`` option (activity name
            to seconds, or None for none), overriding the classes' ``heartbeat_interval``.

    Returns:
        The findings, in the order of the states in the definition.

    Raises:
        ConfigurationError: the definition is not JSON or has no ``States``, or the
            activities cannot be served together (see :func:`activities.registry.task_lists`).
    """
    findings, _ = _run(
        definition,
        activities,
        prefix=prefix,
        task_lists=task_lists,
        heartbeat_intervals=heartbeat_intervals,
    )
    return findings


def _run(
    definition: Mapping[str, Any] | str,
    activities: Iterable[type[Activity]],
    *,
    prefix: str,
    task_lists: Mapping[str, Sequence[str]] | None,
    heartbeat_intervals: Mapping[str, float | None] | None = None,
) -> tuple[list[Finding], int]:
    """:func:`check_definition`'s findings, and how many activity states were checked."""
    if isinstance(definition, str):
        try:
            definition = json.loads(definition)
        except json.JSONDecodeError as exc:
            msg = f"the definition is not JSON: {exc}"
            raise ConfigurationError(msg) from None
    if not isinstance(definition, dict) or not isinstance(definition.get("States"), dict):
        msg = "the definition has no States: it is not an Amazon States Language definition"
        raise ConfigurationError(msg)
    activities = list(activities)
    served = served_task_lists(activities, prefix=prefix, overrides=task_lists)
    checker = _Checker(
        {task_list.rpartition(":")[2]: cls for task_list, cls in served.items()},
        _known_errors(activities),
        prefix,
        intervals_of({cls.name: cls for cls in activities}, heartbeat_intervals),
    )
    findings = list(checker.states(definition["States"], ""))
    return findings, checker.checked


class _Checker:
    """The rules, applied state by state; ``checked`` counts the activity states matched."""

    def __init__(
        self,
        served: dict[str, type[Activity]],
        errors: set[str],
        prefix: str,
        intervals: Mapping[str, float | None],
    ) -> None:
        self.served = served
        self.prefix = prefix
        self.intervals = intervals
        self.errors = errors
        self.checked = 0

    def states(self, states: Mapping[str, Any], within: str) -> Iterator[Finding]:
        for name, state in states.items():
            if not isinstance(state, dict):
                continue
            path = f"{within}{name}"
            if state.get("Type") == "Task":
                yield from self.task(path, state)
            yield from self.error_names(path, state)
            for index, branch in enumerate(state.get("Branches") or []):
                if isinstance(branch, dict) and isinstance(branch.get("States"), dict):
                    yield from self.states(branch["States"], f"{path}.Branches[{index}].")
            for key in ("ItemProcessor", "Iterator"):
                inner = state.get(key)
                if isinstance(inner, dict) and isinstance(inner.get("States"), dict):
                    yield from self.states(inner["States"], f"{path}.{key}.")

    def task(self, path: str, state: Mapping[str, Any]) -> Iterator[Finding]:
        resource = state.get("Resource")
        name, shown = activity_name(resource)
        if name is None:
            if shown is not None:
                yield Finding(
                    path,
                    "info",
                    f"Resource {shown} is a template placeholder whose activity name cannot "
                    f"be read: if it is an activity, it is not checked (write its ARN with "
                    f"the name, e.g. "
                    f"arn:aws:states:${{AWS::Region}}:${{AWS::AccountId}}:activity:NAME)",
                )
            return
        self.checked += 1
        cls = self.served.get(name)
        if cls is None:
            yield Finding(path, "error", self._unserved(name))
            return
        yield from _heartbeats(path, state, cls, self.intervals[cls.name])

    def _unserved(self, name: str) -> str:
        message = (
            f"no activity class serves {name!r}: its tasks would wait for a worker until "
            f"the state times out"
        )
        close = difflib.get_close_matches(name, list(self.served), n=1, cutoff=0.6)
        ends = [
            served
            for served in self.served
            if name.endswith(served) and name[: -len(served)][-1:] in {"-", "_", "."}
        ]
        if self.prefix and self.prefix + name in self.served:
            return (
                f"{message}; with the prefix {self.prefix!r} it is served as "
                f"{self.prefix + name}: name that in the state"
            )
        if ends:
            return (
                f"{message}; {ends[0]} is served: is the prefix {name[: -len(ends[0])]!r} missing?"
            )
        if close:
            return f"{message}; did you mean {close[0]}?"
        return f"{message}; served: {', '.join(sorted(self.served))}"

    def error_names(self, path: str, state: Mapping[str, Any]) -> Iterator[Finding]:
        for field in ("Retry", "Catch"):
            rules = state.get(field)
            if not isinstance(rules, list):
                continue
            for index, rule in enumerate(rules):
                names = rule.get("ErrorEquals") if isinstance(rule, dict) else None
                for error in names if isinstance(names, list) else []:
                    if not isinstance(error, str) or error in self.errors:
                        continue
                    close = difflib.get_close_matches(error, self.errors, n=1, cutoff=CLOSE)
                    if close:
                        yield Finding(
                            path,
                            "warning",
                            f"{field}[{index}] matches {error!r}, which nothing known raises: "
                            f"did you mean {close[0]}?",
                        )
                    elif error.startswith("States."):
                        yield Finding(
                            path,
                            "warning",
                            f"{field}[{index}] matches {error!r}, which is not an error "
                            f"Step Functions raises (States.* names are its own)",
                        )


def _heartbeats(
    path: str, state: Mapping[str, Any], cls: type[Activity], interval: float | None
) -> Iterator[Finding]:
    """The heartbeat rules of an activity state served by ``cls``.

    ``interval`` is the seconds between its automatic heartbeats: its
    ``heartbeat_interval``, or the worker's override. A class that declares the state's
    ``HeartbeatSeconds`` as its ``heartbeat_seconds`` is heartbeated every third of it,
    whatever it does; one that declares neither is heartbeated every
    :data:`~activities._activity.DEFAULT_CADENCE` seconds at its yields.
    """
    if "HeartbeatSecondsPath" in state:
        return  # set by the execution's input: nothing to hold it against here
    seconds = state.get("HeartbeatSeconds")
    if seconds is not None and (isinstance(seconds, bool) or not isinstance(seconds, int)):
        return  # a JSONata expression, read at run time
    declared = cls.heartbeat_seconds
    if declared is not None and seconds != declared:
        state_says = "no HeartbeatSeconds" if seconds is None else f"HeartbeatSeconds {seconds}"
        yield Finding(
            path,
            "error",
            f"{state_says}, but {cls.name} declares heartbeat_seconds = {declared}: set "
            f'"HeartbeatSeconds": {declared} or change the class',
        )
        return
    if declared is not None:
        return  # the worker heartbeats its tasks every third of it, yields or not
    if seconds is None:
        suggested = f"e.g. {int(3 * interval)}, 3 x heartbeat_interval" if interval else "e.g. 60"
        yield Finding(
            path,
            "warning",
            f"no HeartbeatSeconds: a worker that dies holding a task leaves the execution "
            f"waiting until TimeoutSeconds ({_timeout(state)}); set HeartbeatSeconds "
            f"({suggested}) and declare it as {cls.name}'s heartbeat_seconds",
        )
        return
    if interval is not None and seconds <= interval:
        yield Finding(
            path,
            "error",
            f"HeartbeatSeconds {seconds} is at or below {cls.name}'s heartbeat_interval "
            f"({interval:g} s): its heartbeats come too late and every task that runs longer "
            f"fails with States.Timeout; raise HeartbeatSeconds to {int(3 * interval)} or "
            f"lower heartbeat_interval to {seconds / 3:.3g}",
        )
    elif interval is None and _sends_no_heartbeat(cls):
        waiting = (
            f", and so may one that waits for a slot (its first heartbeat comes "
            f"{DEFAULT_CADENCE / 2:g} to {DEFAULT_CADENCE:g} s after it was received)"
            if seconds <= DEFAULT_CADENCE
            else ""
        )
        yield Finding(
            path,
            "error" if waiting else "warning",
            f"HeartbeatSeconds {seconds}, but {cls.name} sends no heartbeat (no "
            f"heartbeat_seconds, no heartbeat_interval, no yield in run(), no heartbeat() "
            f"call): a task running longer than {seconds} s fails with States.Timeout"
            f"{waiting}; {_keep_up(cls, seconds)}",
        )
    elif interval is None and seconds < 3 * DEFAULT_CADENCE:
        late = seconds <= DEFAULT_CADENCE
        cost = (
            "too late: every task that runs longer fails with States.Timeout"
            if late
            else "with little margin for a late heartbeat"
        )
        yield Finding(
            path,
            "error" if late else "warning",
            f"HeartbeatSeconds {seconds}, but {cls.name} declares no heartbeat_seconds: the "
            f"worker heartbeats its tasks every {DEFAULT_CADENCE:g} s (at a yield, or while "
            f"one waits for a slot), {cost}; {_keep_up(cls, seconds)}",
        )


def _keep_up(cls: type[Activity], seconds: int) -> str:
    """What makes the worker heartbeat ``cls``'s tasks in time for ``HeartbeatSeconds``."""
    if seconds >= MIN_HEARTBEAT_SECONDS:
        return (
            f"declare heartbeat_seconds = {seconds} on {cls.name} (the worker then heartbeats "
            f"every third of it)"
        )
    return f"set heartbeat_interval = {seconds / 3:.2g} on {cls.name}"


def _timeout(state: Mapping[str, Any]) -> str:
    timeout = state.get("TimeoutSeconds")
    if isinstance(timeout, int) and not isinstance(timeout, bool):
        return f"{timeout:,} s"
    if "TimeoutSecondsPath" in state or timeout is not None:
        return "as the input sets it"
    return f"{DEFAULT_TIMEOUT:,} s, as it is unset"


def _sends_no_heartbeat(cls: type[Activity]) -> bool:
    """Whether ``cls`` surely sends no heartbeat; a source that cannot be read is not sure.

    Besides a ``heartbeat_interval``, it sends one with a generator ``run()``, or a call
    of a ``heartbeat`` anywhere in the class (a helper method may make it) or in the function
    of a function activity.
    """
    run = inspect.unwrap(cls.run)
    if inspect.isgeneratorfunction(run) or inspect.isasyncgenfunction(run):
        return False
    try:
        sources = [inspect.getsource(run)]
        if not issubclass(cls, FunctionActivity):
            sources.append(inspect.getsource(cls))
        trees = [ast.parse(textwrap.dedent(source)) for source in sources]
    except (OSError, TypeError, SyntaxError):
        return False
    return not any(_calls_heartbeat(tree) for tree in trees)


def _calls_heartbeat(tree: ast.AST) -> bool:
    """Whether ``tree`` calls ``heartbeat(...)`` or ``something.heartbeat(...)``."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            function = node.func
            if isinstance(function, ast.Attribute) and function.attr == "heartbeat":
                return True
            if isinstance(function, ast.Name) and function.id == "heartbeat":
                return True
    return False


def _known_errors(activities: Sequence[type[Activity]]) -> set[str]:
    """The error names a ``Retry`` or ``Catch`` may mean.

    Step Functions' own, the framework's, Python's built-in exceptions, the ``error`` of
    every ActivityError subclass imported, and the exceptions defined in the activities'
    modules (by class name and ``error``).
    """
    names = set(STATES_ERRORS)
    names.update(
        name
        for name, value in vars(builtins).items()
        if isinstance(value, type) and issubclass(value, BaseException)
    )
    for value in vars(framework_errors).values():
        names.update(_error_of(value))
    names.update(_error_of(S3ClaimCheckError))
    for subclass in _subclasses(ActivityError):
        names.update(_error_of(subclass))
    modules = {cls.__module__ for cls in activities}
    for module_name in modules:
        module = sys.modules.get(module_name)
        for value in vars(module).values() if module is not None else ():
            if (
                isinstance(value, type)
                and issubclass(value, BaseException)
                and value.__module__ == module_name
            ):
                names.add(value.__name__)
                names.update(_error_of(value))
    return names


def _error_of(value: object) -> list[str]:
    error = getattr(value, "error", None) if isinstance(value, type) else None
    return [error] if isinstance(error, str) and error else []


def _subclasses(cls: type[ActivityError]) -> Iterator[type[ActivityError]]:
    for subclass in cls.__subclasses__():
        yield subclass
        yield from _subclasses(subclass)
