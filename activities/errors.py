"""Every exception sfn-activities raises, in one tree.

::

    ActivitiesError                   root: catch this to catch anything of ours
    +-- ActivityDefinitionError       an Activity subclass is malformed (bad name, ...)
    +-- ConfigurationError            what to serve, or how, is wrong (duplicate names, ...)
    +-- LocalStepFunctionsError       the local Step Functions could not be installed or started
    +-- ActivityError                 raise from run(): its ``error`` names the failure
    |   +-- InvalidInput              the task input is not valid for run()
    |   +-- SerializationError        run()'s result cannot be encoded
    |   +-- ResultTooLarge            the encoded result exceeds Step Functions' limit
    |   +-- WorkerCrashed             the process running the task died
    |   +-- WorkerShutdown            the worker stopped before the task finished
    +-- TaskCancelled                 Step Functions says the task is gone: stop working
    +-- ServiceError                  a call to Step Functions failed (error or network)
        +-- TaskGone                  TaskTimedOut, TaskDoesNotExist or InvalidToken
        +-- ActivityDoesNotExist      the activity ARN is unknown
        +-- Throttled                 ThrottlingException, ActivityWorkerLimitExceeded
        +-- InvalidOutput             the output was refused as invalid JSON

An exception raised by an activity becomes a task failure whose ``error`` is the
exception's ``error`` attribute (see :class:`ActivityError`) or its class name. The
failures the framework reports itself are named ``activities.<ClassName>``.

All exceptions keep their attributes when pickled, because they cross process boundaries.
"""

from __future__ import annotations

from typing import Any, ClassVar

__all__ = [
    "ActivitiesError",
    "ActivityDefinitionError",
    "ActivityDoesNotExist",
    "ActivityError",
    "ConfigurationError",
    "InvalidInput",
    "InvalidOutput",
    "LocalStepFunctionsError",
    "ResultTooLarge",
    "SerializationError",
    "ServiceError",
    "TaskCancelled",
    "TaskGone",
    "Throttled",
    "WorkerCrashed",
    "WorkerShutdown",
]


class ActivitiesError(Exception):
    """The root of every exception sfn-activities raises.

    Subclasses keep their extra attributes in ``__dict__`` and take them as optional
    keyword arguments, so the default exception pickling (class, args, state) restores
    them whole.
    """

    def __init__(self, message: str = "") -> None:
        super().__init__(message)

    @property
    def message(self) -> str:
        """The human-readable message the exception was raised with."""
        return str(self.args[0]) if self.args else ""

    def __str__(self) -> str:
        return self.message


class ActivityDefinitionError(ActivitiesError, TypeError):
    """An :class:`~activities.Activity` subclass cannot be served as written.

    Raised when the class is defined, e.g. for a ``name`` that Step Functions would refuse,
    or at its first task for what can only be checked then (an annotation of ``run()``
    that names nothing); a task failed by it is reported as
    ``activities.ActivityDefinitionError``.

    Attributes:
        activity: the qualified name of the offending class.
        setting: the class attribute that is wrong.
    """

    #: The ``error`` reported when this exception fails a task.
    error: ClassVar[str] = "activities.ActivityDefinitionError"

    def __init__(self, message: str = "", *, activity: str = "", setting: str = "") -> None:
        super().__init__(message)
        self.activity = activity
        self.setting = setting


class ConfigurationError(ActivitiesError, ValueError):
    """What a worker is asked to serve, or how, cannot work; raised before any poll.

    E.g. two activities with the same name, a module that cannot be imported, or a
    worker setting out of range. The message names the classes or the setting.
    """


class LocalStepFunctionsError(ActivitiesError):
    """The local endpoint could not be installed or started; the message says how to fix it.

    Raised by :class:`activities.local.LocalStepFunctions`, and importable from there.
    """


class ActivityError(ActivitiesError):
    """Base class for exceptions whose Step Functions error name is chosen by their class.

    Subclass it and set ``error`` to the name a state machine's ``Retry`` or ``Catch``
    matches in ``ErrorEquals``::

        class NotFound(ActivityError):
            error = "NotFound"

    A subclass that sets no ``error`` is reported under its class name. Any exception
    class (not only these) may define an ``error`` string attribute to the same effect.
    """

    #: The ``error`` reported to Step Functions when this exception fails a task.
    error: ClassVar[str] = ""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "error" not in cls.__dict__:
            cls.error = cls.__name__


class InvalidInput(ActivityError):
    """The task input could not be turned into arguments for ``run()``.

    The message says why: the input is not valid for the transport (e.g. not JSON), it
    does not bind to ``run()``'s signature, or a value does not fit its annotation.
    """

    error = "activities.InvalidInput"


class SerializationError(ActivityError):
    """The value ``run()`` returned could not be encoded by the activity's transport."""

    error = "activities.SerializationError"


class ResultTooLarge(ActivityError):
    """The encoded result is larger than Step Functions accepts for a task's output.

    Attributes:
        size: the size of the encoded result, in UTF-8 bytes.
        limit: the largest size Step Functions accepts, in UTF-8 bytes.
    """

    error = "activities.ResultTooLarge"

    def __init__(self, message: str = "", *, size: int = 0, limit: int = 0) -> None:
        super().__init__(message)
        self.size = size
        self.limit = limit


class WorkerCrashed(ActivityError):
    """The process running the task died (a segfault, ``os._exit``, the OOM killer).

    The worker fails the task at once with this error, so the state machine can retry it
    without waiting for the task's timeout, and replaces the process.
    """

    error = "activities.WorkerCrashed"


class WorkerShutdown(ActivityError):
    """The worker was stopped and the task could not finish within the shutdown grace.

    The task is failed with this error rather than abandoned, so a ``Retry`` can run it
    on another worker at once.
    """

    error = "activities.WorkerShutdown"


class TaskCancelled(ActivitiesError):
    """Step Functions no longer knows the task: it timed out, or its execution ended.

    Raised inside the activity's code, from :meth:`~activities.Activity.heartbeat` or at a
    ``yield``, so that the work stops. Nothing more is sent for a cancelled task: letting
    this exception propagate out of ``run()`` is the expected way to end.
    """


class ServiceError(ActivitiesError):
    """A call to Step Functions failed: the service answered with an error, or the network did.

    Attributes:
        code: the service's error code, e.g. ``"TaskTimedOut"``; for a network error, the
            botocore exception's class name, e.g. ``"EndpointConnectionError"``.
        operation: the API operation that failed, e.g. ``"SendTaskHeartbeat"``.
        transient: the failure passes (throttling, a 5xx, a timeout, a lost connection):
            the same call may succeed later.
        earlier_unanswered: an earlier attempt of the same call, retried by
            :class:`~activities.ActivityClient`, was sent but got no answer: it may have
            reached Step Functions all the same (a ``TaskGone`` then may mean that the
            outcome it carried was taken).
    """

    def __init__(
        self,
        message: str = "",
        *,
        code: str = "",
        operation: str = "",
        transient: bool = False,
        earlier_unanswered: bool = False,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.operation = operation
        self.transient = transient
        self.earlier_unanswered = earlier_unanswered

    @property
    def unanswered(self) -> bool:
        """Whether the request was sent but no answer came back (it may have landed)."""
        return self.code in _UNANSWERED

    @property
    def earlier_may_have_landed(self) -> bool:
        """Whether an earlier attempt of the same call may have reached Step Functions.

        One got no answer (:attr:`earlier_unanswered`), or botocore retried the call
        itself before it raised this (a client of the user's own that retries).
        """
        if self.earlier_unanswered:
            return True
        response = getattr(self.__cause__, "response", None)
        if not isinstance(response, dict):
            return False
        return bool(response.get("ResponseMetadata", {}).get("RetryAttempts", 0))


#: Codes of a failure whose request was sent but got no answer.
_UNANSWERED = frozenset({"ReadTimeoutError", "ConnectionClosedError"})


class TaskGone(ServiceError):
    """The task token is no longer valid: the task timed out, finished or never existed.

    Step Functions says this with ``TaskTimedOut``, ``TaskDoesNotExist`` or
    ``InvalidToken``; all three mean the same to a worker: stop, and send nothing more.
    """


class ActivityDoesNotExist(ServiceError):
    """The activity ARN polled does not exist (deleted, mistyped, or another Region)."""


class Throttled(ServiceError):
    """Step Functions refused the call for now; retry it later with a backoff.

    Covers HTTP 429 whatever its body, every error code botocore's retries take as
    throttling (``ThrottlingException``, ``TooManyRequestsException``,
    ``RequestLimitExceeded``, ...) and, for polls, ``ActivityWorkerLimitExceeded``.
    """


class InvalidOutput(ServiceError):
    """Step Functions refused a task's output as invalid."""
