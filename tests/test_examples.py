"""The examples package behaves as its docs say."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from examples.echo import Echo
from examples.flaky import Reserve
from examples.progress import CountWords

if TYPE_CHECKING:
    from activities.testing import ActivityEnvironment


def test_echo(env: ActivityEnvironment) -> None:
    """Echo returns the value it is given."""
    assert env.run(Echo, '{"value": {"a": [1]}}').result == {"a": [1]}


def test_count_words_heartbeats_per_document(env: ActivityEnvironment) -> None:
    """One heartbeat per document, and the totals as result."""
    report = env.run(CountWords, json.dumps({"documents": ["a b", "c d e", ""]}))
    assert report.result == {"documents": 3, "words": 5}
    assert report.heartbeats == 3


def test_reserve_is_busy_until_the_given_attempt(env: ActivityEnvironment) -> None:
    """Retry on Inventory.Busy succeeds on the attempt the input names."""
    busy = env.run(Reserve, '{"item": "x", "quantity": 1, "attempt": 0, "succeed_on_attempt": 1}')
    assert busy.error == "Inventory.Busy"
    done = env.run(Reserve, '{"item": "x", "quantity": 1, "attempt": 1, "succeed_on_attempt": 1}')
    assert done.result == {"item": "x", "quantity": 1, "attempt": 1}


def test_reserve_rejects_bad_quantities_with_value_error(env: ActivityEnvironment) -> None:
    """A Catch on ValueError sees a bad quantity."""
    assert env.run(Reserve, '{"item": "x", "quantity": 0}').error == "ValueError"
