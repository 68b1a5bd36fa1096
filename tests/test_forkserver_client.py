"""The Step Functions client made before task processes fork, and its per-process credentials."""

from __future__ import annotations

import functools
import os
from typing import TYPE_CHECKING

import botocore.credentials
import botocore.exceptions
import pytest

from activities import ActivityClient, make_client
from activities.worker import _forkserver
from activities.worker._forkserver import ProcessCredentials, StartState, premake, take

if TYPE_CHECKING:
    from collections.abc import Iterator

    from mypy_boto3_stepfunctions import SFNClient


@pytest.fixture(autouse=True)
def _environment(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Credentials and a Region in the environment; no premade client left behind."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "first-key")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "first-secret")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    yield
    _forkserver._premade = None


def _user_factory() -> SFNClient:
    return make_client(region_name="eu-west-1")


class TestPremake:
    def test_the_default_client_is_made_and_taken_once(self) -> None:
        """The first task process with the same start takes it; the next makes its own."""
        assert premake(None, connections=4)
        start = StartState.now()
        client = take(None, start, connections=4)
        assert client is not None
        assert client.meta.region_name == "eu-west-1"
        assert take(None, start, connections=4) is None

    def test_its_call_timeout_is_set_before_the_fork(self) -> None:
        """A task process's ActivityClient with the same timeout registers nothing more:
        registering in a forked process copies pages of botocore's event tables."""
        assert premake(None, connections=4, call_timeout=3.0)
        client = take(None, StartState.now(), connections=4)
        assert client is not None
        registered: list[str] = []
        client.meta.events.register = lambda name, *_, **__: registered.append(name)  # type: ignore[method-assign]
        ActivityClient(client, worker_name="w", call_timeout=3.0)
        assert registered == []
        ActivityClient(client, worker_name="w", call_timeout=4.0)
        assert registered, "another timeout is registered"

    def test_a_partial_of_make_client_is_made_with_its_arguments(self) -> None:
        """What `activities worker` passes: the same call the task process would make."""
        factory = functools.partial(make_client, region_name="us-west-2", max_pool_connections=9)
        assert premake(factory, connections=4)
        client = take(
            functools.partial(make_client, region_name="us-west-2", max_pool_connections=9),
            StartState.now(),
            connections=4,
        )
        assert client is not None
        assert client.meta.region_name == "us-west-2"
        assert client.meta.config.max_pool_connections == 9

    def test_a_factory_of_the_users_own_is_left_to_each_process(self) -> None:
        """It may open connections or start threads: only a task process calls it."""
        assert not premake(_user_factory, connections=4)
        assert take(_user_factory, StartState.now(), connections=4) is None

    def test_a_process_that_starts_with_another_environment_makes_its_own(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A variable changed since (a test's, an endpoint's): the premade one would be wrong."""
        assert premake(None, connections=4)
        monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:1")
        assert take(None, StartState.now(), connections=4) is None

    def test_another_factory_or_pool_size_is_not_given_the_premade_client(self) -> None:
        assert premake(None, connections=4)
        assert take(None, StartState.now(), connections=8) is None

    def test_a_client_that_cannot_be_made_is_left_to_each_process(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Each task process then fails to make it and says why; the worker does not."""
        monkeypatch.setenv("AWS_PROFILE", "no-such-profile")
        assert not premake(None, connections=4)


class _Chain:
    """botocore's credential chain, as ProcessCredentials calls it: counted."""

    def __init__(self, *found: botocore.credentials.Credentials | None) -> None:
        self.found = list(found)
        self.calls = 0

    def load_credentials(self) -> botocore.credentials.Credentials | None:
        self.calls += 1
        return self.found.pop(0)


class TestProcessCredentials:
    def test_the_chain_runs_at_the_first_signature_not_before(self) -> None:
        chain = _Chain(botocore.credentials.Credentials("key", "secret", "token"))
        credentials = ProcessCredentials(chain)  # type: ignore[arg-type]
        assert chain.calls == 0
        frozen = credentials.get_frozen_credentials()
        assert (frozen.access_key, frozen.secret_key, frozen.token) == ("key", "secret", "token")
        credentials.get_frozen_credentials()
        assert chain.calls == 1

    def test_each_process_resolves_its_own(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """A copy in a forked process does not sign with what its parent found."""
        chain = _Chain(
            botocore.credentials.Credentials("parent", "s"),
            botocore.credentials.Credentials("child", "s"),
        )
        credentials = ProcessCredentials(chain)  # type: ignore[arg-type]
        assert credentials.get_frozen_credentials().access_key == "parent"
        monkeypatch.setattr(os, "getpid", lambda: -1)
        assert credentials.get_frozen_credentials().access_key == "child"
        assert credentials.access_key == "child"

    def test_no_credentials_is_botocores_own_error(self) -> None:
        credentials = ProcessCredentials(_Chain(None))  # type: ignore[arg-type]
        with pytest.raises(botocore.exceptions.NoCredentialsError):
            credentials.get_frozen_credentials()

    def test_the_premade_client_signs_with_the_environments_credentials(self) -> None:
        assert premake(None, connections=4)
        client = take(None, StartState.now(), connections=4)
        assert client is not None
        signer = client._request_signer
        frozen = signer._credentials.get_frozen_credentials()  # type: ignore[attr-defined]
        assert frozen.access_key == "first-key"
