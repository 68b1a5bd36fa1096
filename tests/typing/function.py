"""Function activities as a user writes them: checked by mypy --strict, never run."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from activities import Activity, FunctionActivity, Worker, activity
from activities.testing import ActivityEnvironment
from transport import CompressedTransport

if TYPE_CHECKING:
    from collections.abc import Generator


@activity
def resize_image(key: str, width: int = 256) -> str:
    return f"{key}@{width}"


@activity(
    name="count-words",
    task_lists=("count-a", "count-b"),
    transport=CompressedTransport(),
    heartbeat_interval=10,
    max_concurrency=4,
)
def count_words(text: str) -> Generator[None, None, int]:
    yield
    return len(text.split())


def test_the_function() -> None:
    # run is the function itself, with its parameters and return type.
    resized: str = resize_image.run("a.png", width=64)
    steps: Generator[None, None, int] = count_words.run("a b")
    as_class: type[FunctionActivity[Any]] = resize_image
    name: str = as_class.name
    assert resized
    assert steps
    assert name


def serve() -> int:
    served: list[type[Activity]] = [resize_image, count_words]
    assert ActivityEnvironment().run(resize_image, '{"key": "a"}').succeeded
    return Worker(served, processes=2).run()
