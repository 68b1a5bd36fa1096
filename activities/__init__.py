"""sfn-activities: write AWS Step Functions activity workers as plain Python classes.

::

    from activities import Activity

    class Echo(Activity):
        def run(self, value):
            return value

or, for an activity that is just a function::

    from activities import activity

    @activity
    def echo(value):
        return value
"""

from __future__ import annotations

from importlib.metadata import version as _version

from activities._activity import Activity
from activities._aws.retry import RetryPolicy
from activities.check import Finding, check_definition
from activities.client import ActivityClient, default_worker_name, make_client
from activities.errors import (
    ActivitiesError,
    ActivityDefinitionError,
    ActivityDoesNotExist,
    ActivityError,
    ConfigurationError,
    InvalidInput,
    InvalidOutput,
    ResultTooLarge,
    SerializationError,
    ServiceError,
    TaskCancelled,
    TaskGone,
    Throttled,
    WorkerCrashed,
    WorkerShutdown,
)
from activities.function import FunctionActivity, activity
from activities.outcome import Cancelled, Failure, Outcome, Success, failure_from_exception
from activities.task import Task
from activities.worker import Worker

__version__ = _version("sfn-activities")

__all__ = [
    "ActivitiesError",
    "Activity",
    "ActivityClient",
    "ActivityDefinitionError",
    "ActivityDoesNotExist",
    "ActivityError",
    "Cancelled",
    "ConfigurationError",
    "Failure",
    "Finding",
    "FunctionActivity",
    "InvalidInput",
    "InvalidOutput",
    "Outcome",
    "ResultTooLarge",
    "RetryPolicy",
    "SerializationError",
    "ServiceError",
    "Success",
    "Task",
    "TaskCancelled",
    "TaskGone",
    "Throttled",
    "Worker",
    "WorkerCrashed",
    "WorkerShutdown",
    "__version__",
    "activity",
    "check_definition",
    "default_worker_name",
    "failure_from_exception",
    "make_client",
]
