"""Shared fixtures of the test suite."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from activities.local import LocalStepFunctions
from activities.testing import ActivityEnvironment

if TYPE_CHECKING:
    from collections.abc import Iterator

    from mypy_boto3_stepfunctions import SFNClient


@pytest.fixture
def env() -> ActivityEnvironment:
    """A stand-in Step Functions that never cancels."""
    return ActivityEnvironment()


@pytest.fixture(scope="session")
def local_sfn() -> Iterator[LocalStepFunctions]:
    """One real local Step Functions for the whole session (starting one costs seconds)."""
    with LocalStepFunctions() as local:
        yield local


@pytest.fixture
def sfn(local_sfn: LocalStepFunctions) -> SFNClient:
    """A client of the local Step Functions."""
    return local_sfn.client()
