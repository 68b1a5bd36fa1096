"""Function activities: @activity makes an Activity class of a plain function."""

from __future__ import annotations

import importlib.util
import json
import pickle
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

import activities
import activities.function
from activities import (
    Activity,
    ActivityDefinitionError,
    ConfigurationError,
    FunctionActivity,
    Worker,
    activity,
)
from activities.cli import main
from activities.registry import discover, task_lists
from activities.testing import ActivityEnvironment
from tests import function_workloads as fw
from tests.stepfunctions import create_machine, history, start, task_state, unique, wait_for
from transport import CompressedTransport, JSONTransport

if TYPE_CHECKING:
    from collections.abc import Iterator

    from mypy_boto3_stepfunctions import SFNClient

    from activities.local import LocalStepFunctions


@pytest.fixture
def env() -> ActivityEnvironment:
    return ActivityEnvironment()


class TestDecorator:
    def test_is_the_packages_activity_and_no_module_shadows_it(self) -> None:
        """``from activities import activity`` is the decorator: no submodule has that name."""
        assert activities.activity is activities.function.activity
        assert importlib.util.find_spec("activities.activity") is None

    def test_bare_makes_an_activity_class_named_after_the_function(self) -> None:
        """The module's name for the function is the class, importable where it is defined."""
        assert isinstance(fw.echo, type)
        assert issubclass(fw.echo, Activity)
        assert issubclass(fw.echo, FunctionActivity)
        assert fw.echo.name == "echo"
        assert (fw.echo.__module__, fw.echo.__qualname__) == ("tests.function_workloads", "echo")
        assert fw.echo.__doc__ == "Return the value."

    def test_the_function_stays_callable_as_run(self) -> None:
        """run is the plain function, a static method: callable on the class, for unit tests."""
        assert fw.stock.run("tea", 2) == {"item": "tea", "quantity": 2, "urgent": False}
        assert fw.stock().run("tea", urgent=True)["urgent"] is True

    def test_options_set_the_class_attributes(self) -> None:
        """name, task_lists, transport, heartbeat_interval and max_concurrency, as on a class."""
        assert fw.count.name == "fn-count"
        assert fw.count.task_lists == ("fn-count-a", "fn-count-b")
        assert isinstance(fw.count.transport, CompressedTransport)
        assert fw.count.heartbeat_interval == 5
        assert fw.count.max_concurrency == 2

    def test_defaults_are_the_activity_class_defaults(self) -> None:
        """Without options, nothing differs from a class that sets nothing."""
        assert isinstance(fw.echo.transport, JSONTransport)
        assert fw.echo.transport is Activity.transport
        assert (fw.echo.task_lists, fw.echo.heartbeat_interval, fw.echo.max_concurrency) == (
            (),
            None,
            None,
        )

    def test_keywords_only_with_parentheses(self) -> None:
        """@activity() with no option is the same as bare."""

        @activity()
        def plain() -> int:
            return 1

        assert plain.name == "plain"
        assert plain.run() == 1

    @pytest.mark.parametrize(
        ("setting", "value", "problem"),
        [
            ("name", "has space", "white space"),
            ("name", "a/b", "'/'"),
            ("task_lists", ["a"], "must be a tuple"),
            ("task_lists", ("ok", "not ok"), "white space"),
            ("transport", "json", "no deserialize_arguments"),
            ("heartbeat_interval", 0, "above 0"),
            ("max_concurrency", 0, ">= 1"),
        ],
    )
    def test_options_are_checked_as_a_class_s_are(
        self, setting: str, value: object, problem: str
    ) -> None:
        """A bad option fails at decoration, with the class's message naming the function."""

        def work() -> None: ...

        with pytest.raises(ActivityDefinitionError, match=problem) as info:
            activity(**{setting: value})(work)  # type: ignore[arg-type]
        assert info.value.setting == setting
        assert "work" in str(info.value)

    def test_a_function_name_that_is_not_an_activity_name_is_refused(self) -> None:
        """A lambda's name, <lambda>, breaks Step Functions' rules: say so and how to fix it."""
        with pytest.raises(ActivityDefinitionError, match=r"<lambda>\.name = '<lambda>'") as info:
            activity(lambda: 1)
        assert info.value.setting == "name"
        assert activity(name="one")(lambda: 1).run() == 1

    @pytest.mark.parametrize("thing", [len, type("Klass", (), {}), print.__call__])
    def test_only_functions_are_accepted(self, thing: Any) -> None:
        """A builtin, a class or a method wrapper is refused at decoration."""
        with pytest.raises(ActivityDefinitionError, match="decorates a function, not"):
            activity(thing)

    def test_async_generators_are_refused(self) -> None:
        """An async generator cannot return a result: refused with a message that says why."""

        async def fetch() -> Any:
            yield 1

        with pytest.raises(ActivityDefinitionError, match="async generator") as info:
            activity(fetch)
        assert info.value.setting == "run"

    def test_async_functions_are_async_activities(self) -> None:
        async def fetch() -> None: ...

        assert activity(fetch)._is_async()


class TestInput:
    @pytest.mark.parametrize(
        ("data", "expected"),
        [
            ('{"item": "tea", "quantity": 3}', {"item": "tea", "quantity": 3, "urgent": False}),
            ('{"item": "tea", "urgent": true}', {"item": "tea", "quantity": 1, "urgent": True}),
            ('["tea", 4]', {"item": "tea", "quantity": 4, "urgent": False}),
            ('"tea"', {"item": "tea", "quantity": 1, "urgent": False}),
        ],
        ids=["object", "keyword-only", "array", "single-value"],
    )
    def test_input_maps_onto_the_function_s_parameters(
        self, env: ActivityEnvironment, data: str, expected: dict[str, Any]
    ) -> None:
        """An object is keyword arguments, an array positional ones, a value the one argument."""
        assert env.run(fw.stock, data).result == expected

    def test_no_self_is_dropped(self, env: ActivityEnvironment) -> None:
        """The function's first parameter is a parameter: there is no self to skip."""
        assert env.run(fw.echo, "7").result == 7
        assert env.run(fw.echo, '{"value": [1]}').result == [1]

    def test_input_that_does_not_bind_is_invalid(self, env: ActivityEnvironment) -> None:
        """A missing or unknown argument fails as activities.InvalidInput, naming the signature."""
        report = env.run(fw.stock, '{"thing": "tea"}')
        assert report.error == "activities.InvalidInput"
        assert "(item: str, quantity: int = 1, *, urgent: bool = False)" in (report.cause or "")

    def test_annotated_parameters_are_structured(self, env: ActivityEnvironment) -> None:
        """String annotations are evaluated in the function's module and structured by cattrs."""
        data = {
            "parcel": {"id": 7, "sent": "2026-11-23T10:00:00Z"},
            "checkpoints": ["2026-11-23", "2026-11-24"],
        }
        assert env.run(fw.track, json.dumps(data)).result == {"id": 7, "hour": 10, "days": 2}

    def test_a_value_that_does_not_fit_its_annotation_is_invalid(
        self, env: ActivityEnvironment
    ) -> None:
        """Scalars are strict, as for a class: "7" is not an int."""
        data = {"parcel": {"id": "7", "sent": "2026-11-23T10:00:00Z"}, "checkpoints": []}
        report = env.run(fw.track, json.dumps(data))
        assert report.error == "activities.InvalidInput"
        assert "parcel" in (report.cause or "")

    def test_errors_are_named_as_for_a_class(self, env: ActivityEnvironment) -> None:
        """An ActivityError's name, or the exception's class name, is the error."""
        assert env.run(fw.flaky, '{"attempt": 0, "succeed_on": 1}').error == "Shelf.Busy"

        @activity
        def divide(a: int, b: int) -> float:
            return a / b

        assert env.run(divide, "[1, 0]").error == "ZeroDivisionError"


class TestGenerator:
    def test_each_yield_is_a_heartbeat_and_the_return_value_the_result(
        self, env: ActivityEnvironment
    ) -> None:
        """A generator function heartbeats at each yield; its return value is the output."""
        report = env.run(fw.count, '{"n": 3}')
        assert report.heartbeats == 3
        assert report.result == "xxx"

    def test_cancellation_reaches_the_yield(self) -> None:
        """When the task is gone, the generator is stopped at its next yield."""
        stopped = []

        @activity
        def patient() -> Iterator[None]:
            try:
                while True:
                    yield
            finally:
                stopped.append(True)

        report = ActivityEnvironment(cancel_after_heartbeats=2).run(patient)
        assert report.cancelled
        assert report.heartbeats == 2
        assert stopped == [True]


def write(path: Path, source: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(source))


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A throwaway package 'fnproj' on sys.path."""
    root = tmp_path / "fnproj"
    write(root / "__init__.py", "")
    monkeypatch.syspath_prepend(str(tmp_path))
    yield root
    for name in [name for name in sys.modules if name.partition(".")[0] == "fnproj"]:
        del sys.modules[name]


class TestServing:
    def test_discovered_where_defined(self, project: Path) -> None:
        """discover() finds function activities by module, once, beside classes."""
        write(
            project / "a.py",
            """
            from activities import Activity, activity

            @activity
            def resize_image(key: str) -> str:
                return key

            class Echo(Activity):
                def run(self, value):
                    return value
            """,
        )
        write(
            project / "b.py",
            """
            from activities import activity
            from fnproj.a import resize_image  # imported, not defined here

            @activity(name="thumbnail")
            def thumb(key: str) -> str:
                return key
            """,
        )
        found = {cls.name: f"{cls.__module__}.{cls.__qualname__}" for cls in discover("fnproj")}
        assert found == {
            "resize_image": "fnproj.a.resize_image",
            "Echo": "fnproj.a.Echo",
            "thumbnail": "fnproj.b.thumb",
        }

    def test_a_function_and_a_class_of_one_name_are_refused(self, project: Path) -> None:
        """Two activities served under one name name both, whatever they were written as."""
        write(
            project / "a.py",
            """
            from activities import Activity, activity

            @activity(name="Echo")
            def echo(value): return value

            class Echo(Activity):
                def run(self, value): return value
            """,
        )
        with pytest.raises(ConfigurationError, match=r"fnproj\.a\.echo and fnproj\.a\.Echo"):
            discover("fnproj")

    def test_served_on_their_task_lists(self) -> None:
        """The worker's registry maps their task lists, prefixed, as for classes."""
        served = task_lists(discover("tests.function_workloads"), prefix="dev-")
        assert served == {
            "dev-echo": fw.echo,
            "dev-fn-stock": fw.stock,
            "dev-track": fw.track,
            "dev-fn-count-a": fw.count,
            "dev-fn-count-b": fw.count,
            "dev-fn-flaky": fw.flaky,
        }

    def test_listed_by_the_command(self, capsys: pytest.CaptureFixture[str]) -> None:
        """`activities list` shows them with the path they are imported by."""
        assert main(["list", "tests.function_workloads"]) == 0
        rows = [line.split() for line in capsys.readouterr().out.splitlines()]
        assert ["fn-flaky", "tests.function_workloads.flaky"] in rows
        assert ["echo", "tests.function_workloads.echo"] in rows

    def test_pickled_by_reference(self) -> None:
        """A task process receives the class by name: unpickling gives the very class."""
        data = pickle.dumps(fw.track)
        assert b"tests.function_workloads" in data
        assert len(data) < 200
        assert pickle.loads(data) is fw.track

    def test_unpickled_in_a_fresh_process(self) -> None:
        """Another interpreter imports the module and runs the function activity it names."""
        code = (
            "import pickle, sys\n"
            "from activities.testing import ActivityEnvironment\n"
            "cls = pickle.loads(sys.stdin.buffer.read())\n"
            "print(ActivityEnvironment().run(cls, '[\"tea\", 2]').output)\n"
        )
        done = subprocess.run(
            [sys.executable, "-c", code],
            input=pickle.dumps(fw.stock),
            capture_output=True,
            check=True,
            cwd=Path(__file__).parent.parent,  # where tests.function_workloads is imported from
        )
        assert json.loads(done.stdout) == {"item": "tea", "quantity": 2, "urgent": False}


@pytest.mark.integration
class TestAgainstStepFunctions:
    def test_retry_on_the_error_name_of_a_function_activity(
        self, local_sfn: LocalStepFunctions, sfn: SFNClient
    ) -> None:
        """A task process serves the function; Retry matches its error; attempt 2 succeeds."""
        prefix = unique("fn") + "-"
        worker = Worker([fw.flaky], processes=1, prefix=prefix, client=local_sfn.client_factory())
        worker.start()
        try:
            state = task_state(
                f"arn:aws:states:us-east-1:000000000000:activity:{prefix}{fw.flaky.name}",
                Parameters={"attempt.$": "$$.State.RetryCount", "succeed_on": 1},
                Retry=[{"ErrorEquals": ["Shelf.Busy"], "IntervalSeconds": 1, "MaxAttempts": 2}],
            )
            execution = start(sfn, create_machine(sfn, {"Stock": state}, "Stock"), {})
            done = wait_for(sfn, execution)
        finally:
            worker.terminate()
        assert done["status"] == "SUCCEEDED", done
        assert json.loads(done["output"]) == {"attempt": 1}
        failures = [e for e in history(sfn, execution) if e["type"] == "ActivityFailed"]
        assert [f["activityFailedEventDetails"]["error"] for f in failures] == ["Shelf.Busy"]

    def test_registered_by_the_command(
        self, local_sfn: LocalStepFunctions, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """`activities register` creates their activities and prints the ARNs."""
        prefix = unique("fnreg") + "-"
        args = ["register", "tests.function_workloads", "--prefix", prefix]
        args += ["--endpoint-url", local_sfn.endpoint_url, "--region", "us-east-1"]
        with pytest.MonkeyPatch.context() as patch:
            for name, value in local_sfn.environment().items():
                patch.setenv(name, value)
            assert main(args) == 0
        rows = dict(line.split() for line in capsys.readouterr().out.splitlines())
        arn = "arn:aws:states:us-east-1:000000000000:activity:"
        assert rows[prefix + "echo"] == arn + prefix + "echo"
        assert rows[prefix + "fn-count-b"] == arn + prefix + "fn-count-b"
        assert local_sfn.client().describe_activity(activityArn=arn + prefix + "fn-flaky")
