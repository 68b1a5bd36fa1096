from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

import pytest

from activities import Activity, ActivityDefinitionError, Task
from activities.testing import ActivityEnvironment
from transport import CompressedTransport

if TYPE_CHECKING:
    from collections.abc import Iterator


class Echo(Activity):
    def run(self, value: Any) -> Any:
        return value


class TestName:
    def test_defaults_to_the_class_name(self) -> None:
        """An activity is served under its class name unless told otherwise."""
        assert Echo.name == "Echo"

    def test_explicit_name_is_kept(self) -> None:
        """A class may choose its Step Functions name."""

        class Resize(Activity):
            name = "image-resize_v2"

        assert Resize.name == "image-resize_v2"

    def test_subclasses_do_not_inherit_the_name(self) -> None:
        """A subclass is another activity: it gets its own name."""

        class Base(Activity):
            name = "base"

        class Child(Base):
            pass

        assert Child.name == "Child"

    @pytest.mark.parametrize(
        ("name", "problem"),
        [
            ("", "1 to 80 characters"),
            ("x" * 81, "1 to 80 characters"),
            ("has space", "white space"),
            ("tab\there", "white space"),
            ("a/b", "'/'"),
            ("a:b", "':'"),
            ("{x}", "'{'"),
            ("bell\x07", "control character"),
            (42, "must be a str"),
        ],
    )
    def test_invalid_names_fail_when_the_class_is_defined(self, name: object, problem: str) -> None:
        """Step Functions' naming rules are checked at once, with a message naming the class."""
        with pytest.raises(ActivityDefinitionError, match=problem) as info:
            type("Bad", (Activity,), {"name": name})
        assert info.value.setting == "name"
        assert "Bad.name" in str(info.value)

    def test_longest_valid_name_is_accepted(self) -> None:
        """80 characters of the safe alphabet are fine."""
        assert type("Long", (Activity,), {"name": "a-_9" * 20}).name == "a-_9" * 20


class TestDefinition:
    def test_transport_must_be_a_transport(self) -> None:
        """A transport without the contract's methods fails at class definition."""
        with pytest.raises(ActivityDefinitionError, match="no deserialize_arguments") as info:
            type("Bad", (Activity,), {"transport": "json"})
        assert info.value.setting == "transport"

    @pytest.mark.parametrize("interval", [0, -1, "5", True])
    def test_heartbeat_interval_must_be_positive_seconds(self, interval: object) -> None:
        """A heartbeat interval that is not a positive number fails at class definition."""
        with pytest.raises(ActivityDefinitionError, match="heartbeat_interval") as info:
            type("Bad", (Activity,), {"heartbeat_interval": interval})
        assert info.value.setting == "heartbeat_interval"

    def test_transport_is_swappable_per_class(self) -> None:
        """A class attribute picks the encoding of one activity."""

        class Big(Activity):
            transport = CompressedTransport(threshold=10)

            def run(self) -> str:
                return "x" * 100

        report = ActivityEnvironment().run(Big)
        assert report.output.startswith('{"__transport__"')
        assert report.result == "x" * 100

    def test_unevaluable_annotations_are_a_definition_error(self, env: ActivityEnvironment) -> None:
        """An annotation naming nothing fails the task with a message that says so."""

        class Typo(Activity):
            def run(self, value: Undefined) -> None:  # type: ignore[name-defined]  # noqa: F821
                pass

        report = env.run(Typo, '{"value": 1}')
        assert report.error == "activities.ActivityDefinitionError"
        assert "the annotation of 'value' cannot be evaluated" in (report.cause or "")

    def test_run_must_be_overridden(self, env: ActivityEnvironment) -> None:
        """The base run() fails the task with a message naming the class."""

        class Lazy(Activity):
            pass

        report = env.run(Lazy)
        assert report.error == "NotImplementedError"
        assert "Lazy must override run()" in (report.cause or "")


@dataclasses.dataclass
class Later:
    x: int


class TestSignature:
    def test_string_annotations_are_evaluated(self, env: ActivityEnvironment) -> None:
        """Under `from __future__ import annotations` types are still structured."""

        class Typed(Activity):
            def run(self, item: Later) -> int:
                return item.x * 2

        assert env.run(Typed, '{"item": {"x": 21}}').result == 42

    def test_return_annotation_may_name_type_checking_imports(
        self, env: ActivityEnvironment
    ) -> None:
        """Only parameter annotations are evaluated: the return type is never needed."""

        class Lines(Activity):
            def run(self, n: int) -> Iterator[int]:  # Iterator is imported for mypy only
                yield from range(n)

        assert env.run(Lines, "[2]").heartbeats == 2

    def test_static_run_keeps_its_first_parameter(self, env: ActivityEnvironment) -> None:
        """A staticmethod run() has no self to drop."""

        class Static(Activity):
            @staticmethod
            def run(value: int) -> int:
                return value + 1

        assert env.run(Static, "[1]").result == 2

    @pytest.mark.parametrize(
        ("data", "expected"),
        [
            ("[1]", [1, 2, [], {}, None]),
            ("[1, 5, 6, 7]", [1, 5, [6, 7], {}, None]),
            ('{"a": 1, "flag": true, "z": 0}', [1, 2, [], {"z": 0}, True]),
        ],
    )
    def test_any_python_signature(
        self, env: ActivityEnvironment, data: str, expected: list[Any]
    ) -> None:
        """Defaults, *args, **kwargs and keyword-only parameters all bind."""

        class Everything(Activity):
            def run(
                self, a: int, b: int = 2, *rest: int, flag: bool | None = None, **extra: int
            ) -> list[Any]:
                return [a, b, list(rest), extra, flag]

        assert env.run(Everything, data).result == expected


class TestTaskContext:
    def test_task_is_available_during_run(self, env: ActivityEnvironment) -> None:
        """self.task tells the token, the ARN, the worker and when the task started."""

        class Introspect(Activity):
            def run(self) -> dict[str, str]:
                return {
                    "token": self.task.token,
                    "arn": self.task.activity_arn,
                    "worker": self.task.worker_name,
                    "started": self.task.started_at.isoformat(),
                }

        result = env.run(Introspect).result
        assert result["token"] == "test-task-token"
        assert result["arn"].endswith(":activity:Introspect")
        assert result["worker"] == "test-worker"
        assert result["started"].endswith("+00:00")

    def test_task_and_heartbeat_are_refused_outside_a_task(self) -> None:
        """Using them outside run() is a clear error, not an AttributeError."""
        with pytest.raises(RuntimeError, match="only available while run"):
            _ = Echo().task
        with pytest.raises(RuntimeError, match="only available while run"):
            Echo().heartbeat()

    def test_context_is_cleared_after_the_task(self, env: ActivityEnvironment) -> None:
        """An instance serving many tasks does not keep the last one's context."""
        echo = Echo()
        env.run(echo, "[1]")
        with pytest.raises(RuntimeError):
            _ = echo.task

    def test_task_repr_hides_input_and_most_of_the_token(self) -> None:
        """Logs that print a task do not leak its input or its whole token."""
        task = Task(
            token="secret-token-" + "x" * 50,
            activity_arn="arn",
            worker_name="w",
            input='{"password": 1}',
        )
        assert "password" not in repr(task)
        assert "x" * 20 not in repr(task)
        assert task.token_prefix == "secret-token"


class TestAsyncRun:
    """An async def run() is an activity (tests/test_async.py); an async generator is not."""

    def test_async_def_run_is_an_async_activity(self) -> None:
        class Fetch(Activity):
            async def run(self, url: str) -> str:
                return url

        class Plain(Activity):
            def run(self, url: str) -> str:
                return url

        assert Fetch._is_async()
        assert not Plain._is_async()

    def test_an_async_generator_run_is_refused(self) -> None:
        with pytest.raises(ActivityDefinitionError, match=r"Stream\.run is an async generator"):

            class Stream(Activity):
                async def run(self) -> Any:
                    yield 1

    def test_a_sync_run_and_its_subclasses_are_made(self) -> None:

        class Plain(Activity):
            def run(self) -> int:
                return 1

        class Child(Plain):
            pass

        assert Child().run() == 1
