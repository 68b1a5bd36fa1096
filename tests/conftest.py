"""Shared fixtures of the test suite."""

from __future__ import annotations

from typing import TYPE_CHECKING

import botocore.session
import pytest
from botocore.stub import Stubber

from activities import ActivityClient
from activities.local import LocalStepFunctions
from activities.testing import ActivityEnvironment

if TYPE_CHECKING:
    from collections.abc import Iterator

    from mypy_boto3_stepfunctions import SFNClient


@pytest.fixture
def env() -> ActivityEnvironment:
    """A stand-in Step Functions that never cancels."""
    return ActivityEnvironment()


@pytest.fixture
def stubbed() -> Iterator[tuple[ActivityClient, Stubber]]:
    """An ActivityClient over a botocore client whose responses the test lays out."""
    session = botocore.session.get_session()
    sfn = session.create_client(
        "stepfunctions",
        region_name="us-east-1",
        aws_access_key_id="test",
        aws_secret_access_key="test",
    )
    with Stubber(sfn) as stubber:
        yield ActivityClient(sfn, worker_name="test-worker"), stubber  # type: ignore[arg-type]
        stubber.assert_no_pending_responses()


@pytest.fixture(scope="session")
def local_sfn() -> Iterator[LocalStepFunctions]:
    """One real local Step Functions for the whole session (starting one costs seconds)."""
    with LocalStepFunctions() as local:
        yield local


@pytest.fixture
def sfn(local_sfn: LocalStepFunctions) -> SFNClient:
    """A client of the local Step Functions."""
    return local_sfn.client()
