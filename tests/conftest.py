"""Shared fixtures of the test suite."""

from __future__ import annotations

import pytest

from activities.testing import ActivityEnvironment


@pytest.fixture
def env() -> ActivityEnvironment:
    """A stand-in Step Functions that never cancels."""
    return ActivityEnvironment()
