"""A state machine definition is held against the activities served: check_definition and
``activities check``."""

from __future__ import annotations

import json
import sys
import textwrap
from typing import TYPE_CHECKING, Any

import pytest

from activities import (
    Activity,
    ActivityDefinitionError,
    ActivityError,
    ConfigurationError,
    Finding,
    activity,
)
from activities import check_definition as check
from activities.cli import main
from activities.registry import discover
from tests.check_workload import Charge, Echo, Reserve, Resize, Ship, notify

if TYPE_CHECKING:
    from pathlib import Path

ACTIVITIES: list[type[Activity]] = [Echo, Ship, Charge, Resize, Reserve, notify]


def arn(name: str) -> str:
    """An activity's ARN, as a hand-written definition has it."""
    return f"arn:aws:states:eu-west-1:123456789012:activity:{name}"


def task(resource: object, **fields: Any) -> dict[str, Any]:
    """A Task state; ``resource`` a name is made an activity ARN."""
    if isinstance(resource, str) and not resource.startswith(("arn:", "${")):
        resource = arn(resource)
    return {"Type": "Task", "Resource": resource, "End": True, **fields}


def machine(**states: Any) -> dict[str, Any]:
    """A definition of ``states`` (the first one starts)."""
    return {"StartAt": next(iter(states)), "States": states}


def sound() -> dict[str, Any]:
    """A definition that agrees with :data:`ACTIVITIES` in every way checked."""
    return machine(
        Ship=task("Ship", HeartbeatSeconds=60, Retry=[{"ErrorEquals": ["States.Timeout"]}]),
        Charge=task(
            "Charge",
            HeartbeatSeconds=60,
            Catch=[{"ErrorEquals": ["PaymentDeclined", "ValueError"], "Next": "Resize"}],
        ),
        Resize=task("Resize", HeartbeatSeconds=30),
        Reserve=task(
            "Reserve",
            HeartbeatSeconds=60,
            Retry=[{"ErrorEquals": ["Inventory.OutOfStock", "activities.WorkerCrashed"]}],
        ),
        Notify=task("notify", HeartbeatSeconds=20),
    )


def lines(findings: list[Finding]) -> list[str]:
    return [str(finding) for finding in findings]


class TestSound:
    def test_a_definition_that_agrees_has_no_findings(self) -> None:
        assert check(sound(), ACTIVITIES) == []

    def test_json_text_is_read_as_the_parsed_definition(self) -> None:
        wrong = machine(A=task("Ech", HeartbeatSeconds=60))
        assert check(json.dumps(wrong), ACTIVITIES) == check(wrong, ACTIVITIES) != []

    @pytest.mark.parametrize("definition", ["{", "[]", '{"StartAt": "A"}', {"States": []}])
    def test_what_is_not_a_definition_is_refused(self, definition: Any) -> None:
        with pytest.raises(ConfigurationError, match=r"not JSON|no States"):
            check(definition, ACTIVITIES)


class TestServed:
    def test_an_activity_no_class_serves_is_an_error_with_the_closest_name(self) -> None:
        findings = check(machine(Fetch=task("Ech", HeartbeatSeconds=60)), ACTIVITIES)
        assert [finding.severity for finding in findings] == ["error"]
        assert str(findings[0]).startswith("Fetch: no activity class serves 'Ech': ")
        assert str(findings[0]).endswith("did you mean Echo?")

    def test_a_name_close_to_nothing_lists_what_is_served(self) -> None:
        (finding,) = check(machine(A=task("Zzzzz", HeartbeatSeconds=60)), ACTIVITIES)
        assert "served: Charge, Echo, Reserve, Resize, Ship, notify" in finding.message

    def test_the_prefix_is_the_workers(self) -> None:
        definition = machine(A=task("dev-Ship", HeartbeatSeconds=60))
        assert check(definition, ACTIVITIES, prefix="dev-") == []
        (finding,) = check(definition, ACTIVITIES)
        assert finding.severity == "error"
        assert "is the prefix 'dev-' missing?" in finding.message

    def test_a_state_without_the_prefix_is_told_the_prefixed_name(self) -> None:
        (finding,) = check(machine(A=task("Ship", HeartbeatSeconds=60)), ACTIVITIES, prefix="dev-")
        assert finding.severity == "error"
        assert "with the prefix 'dev-' it is served as dev-Ship" in finding.message

    def test_task_lists_are_the_workers(self) -> None:
        definition = machine(A=task("ship-eu", HeartbeatSeconds=60))
        assert check(definition, ACTIVITIES, task_lists={"Ship": ["ship-eu"]}) == []
        assert check(definition, ACTIVITIES, prefix="x-", task_lists={"Ship": ["ship-eu"]})
        assert check(
            machine(A=task("Ship", HeartbeatSeconds=60)),
            ACTIVITIES,
            task_lists={"Ship": ["ship-eu"]},
        )

    def test_a_task_list_given_as_an_arn_compares_by_its_name(self) -> None:
        other_region = "arn:aws:states:us-east-1:999999999999:activity:ship-us"
        definition = machine(A=task("ship-us", HeartbeatSeconds=60))
        assert check(definition, ACTIVITIES, task_lists={"Ship": [other_region]}) == []

    def test_a_class_is_served_on_its_own_task_lists(self) -> None:
        class Pack(Activity):
            task_lists = ("pack-a", "pack-b")
            heartbeat_interval = 5

            def run(self) -> None:
                pass

        definition = machine(A=task("pack-b", HeartbeatSeconds=20))
        assert check(definition, [Pack]) == []
        assert check(machine(A=task("Pack", HeartbeatSeconds=20)), [Pack])

    def test_what_cannot_be_served_together_is_refused(self) -> None:
        with pytest.raises(ConfigurationError, match="not served"):
            check(sound(), ACTIVITIES, task_lists={"Nope": ["x"]})


class TestPaths:
    def test_states_at_any_depth_are_found_and_named_by_their_place(self) -> None:
        inner = {"StartAt": "Deep", "States": {"Deep": task("Ech", HeartbeatSeconds=60)}}
        each = {
            "Type": "Map",
            "ItemProcessor": {
                "StartAt": "Inner",
                "States": {"Inner": {"Type": "Parallel", "Branches": [inner], "End": True}},
            },
            "End": True,
        }
        old = {"Type": "Map", "Iterator": {"StartAt": "R", "States": {"R": task("Ech")}}}
        definition = machine(
            Top=task("Ech", HeartbeatSeconds=60, Next="Fan"),
            Fan={
                "Type": "Parallel",
                "Branches": [
                    {"StartAt": "Ok", "States": {"Ok": task("Ship", HeartbeatSeconds=60)}},
                    {"StartAt": "Each", "States": {"Each": each}},
                ],
                "Next": "Old",
            },
            Old={**old, "End": True},
        )
        assert [finding.path for finding in check(definition, ACTIVITIES)] == [
            "Top",
            "Fan.Branches[1].Each.ItemProcessor.Inner.Branches[0].Deep",
            "Old.Iterator.R",
        ]

    def test_findings_come_in_the_order_of_the_definition(self) -> None:
        definition = machine(
            B=task("Echo", Next="A"),
            A=task("Ech", HeartbeatSeconds=60, Retry=[{"ErrorEquals": ["ValueErorr"]}]),
        )
        assert [(f.path, f.severity) for f in check(definition, ACTIVITIES)] == [
            ("B", "warning"),
            ("A", "error"),
            ("A", "warning"),
        ]

    def test_other_states_and_resources_are_not_activities(self) -> None:
        definition = machine(
            Lambda=task("arn:aws:lambda:eu-west-1:123456789012:function:echo", Next="Sdk"),
            Sdk=task("arn:aws:states:::lambda:invoke", Next="Wait"),
            Wait={"Type": "Wait", "Seconds": 1, "Next": "Pass"},
            Pass={"Type": "Pass", "End": True},
        )
        assert check(definition, ACTIVITIES) == []


class TestPlaceholders:
    @pytest.mark.parametrize(
        "resource",
        [
            "arn:aws:states:${AWS::Region}:${AWS::AccountId}:activity:Ech",
            "arn:${AWS::Partition}:states:${Region}:${Prefix}1234:activity:Ech",
            "arn:aws-cn:states:cn-north-1:123456789012:activity:Ech",
            {"Fn::Sub": "arn:aws:states:${AWS::Region}:${AWS::AccountId}:activity:Ech"},
            {"Fn::Sub": ["arn:aws:states:${R}:${A}:activity:Ech", {"R": "x", "A": "y"}]},
            {
                "Fn::Join": [
                    ":",
                    ["arn", {"Ref": "AWS::Partition"}, "states", "eu-west-1", "1", "activity:Ech"],
                ]
            },
        ],
    )
    def test_an_arn_with_placeholders_is_matched_by_its_name(self, resource: object) -> None:
        (finding,) = check(machine(A=task(resource, HeartbeatSeconds=60)), ACTIVITIES)
        assert finding.severity == "error"
        assert finding.message.endswith("did you mean Echo?")

    @pytest.mark.parametrize(
        "resource",
        [
            "${EchoArn}",
            {"Fn::GetAtt": ["EchoActivity", "Arn"]},
            {"Ref": "EchoActivity"},
            "arn:aws:states:${AWS::Region}:${AWS::AccountId}:activity:${Prefix}Echo",
            "arn:aws:states:eu-west-1:123456789012:activity:${Name}",
        ],
    )
    def test_a_placeholder_without_a_name_is_reported_unchecked(self, resource: object) -> None:
        """An info finding, not a warning: nothing is known wrong, and --strict still passes
        a template that names activities by reference, as CDK does."""
        (finding,) = check(machine(A=task(resource)), ACTIVITIES)
        assert finding.severity == "info"
        assert "not checked" in finding.message
        shown = resource if isinstance(resource, str) else json.dumps(resource)
        assert str(finding).startswith(f"A: Resource {shown} is a template placeholder")


class TestHeartbeats:
    def test_a_state_without_heartbeat_seconds_is_a_warning_saying_what_it_costs(self) -> None:
        (finding,) = check(machine(A=task("Ship")), ACTIVITIES)
        assert finding.severity == "warning"
        assert finding.message.startswith("no HeartbeatSeconds: a worker that dies holding")
        assert "until TimeoutSeconds (99,999,999 s, as it is unset)" in finding.message
        (finding,) = check(machine(A=task("Ship", TimeoutSeconds=3600)), ACTIVITIES)
        assert "until TimeoutSeconds (3,600 s)" in finding.message

    def test_the_suggested_heartbeat_seconds_follow_the_interval(self) -> None:
        (finding,) = check(machine(A=task("Resize")), ACTIVITIES)
        assert "set HeartbeatSeconds (e.g. 30, 3 x heartbeat_interval)" in finding.message

    @pytest.mark.parametrize("seconds", [5, 10])
    def test_heartbeat_seconds_at_or_below_the_interval_is_an_error(self, seconds: int) -> None:
        (finding,) = check(machine(A=task("Resize", HeartbeatSeconds=seconds)), ACTIVITIES)
        assert finding.severity == "error"
        assert finding.message.startswith(
            f"HeartbeatSeconds {seconds} is at or below Resize's heartbeat_interval (10 s)"
        )
        assert check(machine(A=task("Resize", HeartbeatSeconds=11)), ACTIVITIES) == []

    @pytest.mark.parametrize(
        ("fields", "said"),
        [({"HeartbeatSeconds": 90}, "HeartbeatSeconds 90"), ({}, "no HeartbeatSeconds")],
    )
    def test_a_declared_heartbeat_seconds_must_be_the_states(
        self, fields: dict[str, Any], said: str
    ) -> None:
        (finding,) = check(machine(A=task("Reserve", **fields)), ACTIVITIES)
        assert finding.severity == "error"
        assert str(finding) == (
            f"A: {said}, but Reserve declares heartbeat_seconds = 60: set "
            f'"HeartbeatSeconds": 60 or change the class'
        )

    def test_an_activity_that_sends_no_heartbeat_is_a_warning(self) -> None:
        (finding,) = check(machine(A=task("Echo", HeartbeatSeconds=60)), ACTIVITIES)
        assert finding.severity == "warning"
        assert "Echo sends no heartbeat" in finding.message
        assert finding.message.endswith(
            "declare heartbeat_seconds = 60 on Echo (the worker then heartbeats every third of it)"
        )

    def test_one_that_sends_none_under_a_short_heartbeat_seconds_is_an_error(self) -> None:
        """HeartbeatSeconds 5: even a task of a second fails if it waits 5 s for a slot."""
        (finding,) = check(machine(A=task("Echo", HeartbeatSeconds=5)), ACTIVITIES)
        assert finding.severity == "error"
        assert "so may one that waits for a slot (its first heartbeat comes 5 to 10 s" in (
            finding.message
        )

    def test_an_activity_that_declares_the_states_heartbeat_seconds_is_heartbeated(
        self,
    ) -> None:
        """The worker heartbeats it every third of them, whatever run() does or the interval."""

        class Declared(Activity):
            heartbeat_seconds = 60

            def run(self) -> None: ...

        state = machine(A=task("Declared", HeartbeatSeconds=60))
        assert check(state, [Declared]) == []
        assert check(state, [Declared], heartbeat_intervals={"Declared": 90}) == []

    @pytest.mark.parametrize("seconds", [5, 10])
    def test_yields_under_heartbeat_seconds_of_ten_or_less_are_too_late(self, seconds: int) -> None:
        """Without heartbeat_seconds, the worker sends a yielding task's heartbeats every 10 s."""
        (finding,) = check(machine(A=task("Ship", HeartbeatSeconds=seconds)), ACTIVITIES)
        assert finding.severity == "error"
        assert str(finding) == (
            f"A: HeartbeatSeconds {seconds}, but Ship declares no heartbeat_seconds: the worker "
            f"heartbeats its tasks every 10 s (at a yield, or while one waits for a slot), too "
            f"late: every task that runs longer fails with States.Timeout; declare "
            f"heartbeat_seconds = {seconds} on Ship (the worker then heartbeats every third of it)"
        )

    @pytest.mark.parametrize(
        ("seconds", "severity"), [(11, "warning"), (29, "warning"), (30, None)]
    )
    def test_yields_under_heartbeat_seconds_below_thirty_have_little_margin(
        self, seconds: int, severity: str | None
    ) -> None:
        findings = check(machine(A=task("Ship", HeartbeatSeconds=seconds)), ACTIVITIES)
        assert [finding.severity for finding in findings] == ([severity] if severity else [])
        if severity:
            assert "with little margin for a late heartbeat" in findings[0].message

    def test_under_three_seconds_the_interval_is_suggested(self) -> None:
        """heartbeat_seconds cannot be under 3: automatic heartbeats can."""
        (finding,) = check(machine(A=task("Ship", HeartbeatSeconds=2)), ACTIVITIES)
        assert finding.message.endswith("set heartbeat_interval = 0.67 on Ship")

    @pytest.mark.parametrize("served", [Ship, Charge, Resize, notify])
    def test_a_yield_a_heartbeat_call_or_an_interval_is_a_heartbeat(
        self, served: type[Activity]
    ) -> None:
        assert check(machine(A=task(served.name, HeartbeatSeconds=60)), [served]) == []

    def test_an_async_run_awaiting_heartbeats_sends_them(self) -> None:
        class Poll(Activity):
            async def run(self) -> None:
                await self.heartbeat()

        assert check(machine(A=task("Poll", HeartbeatSeconds=60)), [Poll]) == []

    def test_a_function_activity_without_heartbeats_sends_none(self) -> None:
        @activity
        def plain(value: int) -> int:
            return value

        (finding,) = check(machine(A=task("plain", HeartbeatSeconds=60)), [plain])
        assert "plain sends no heartbeat" in finding.message

    def test_a_run_whose_source_cannot_be_read_is_not_reported(self) -> None:
        namespace: dict[str, Any] = {}
        exec("def run(self, value):\n    return value\n", namespace)  # noqa: S102 - no source file
        hidden = type("Hidden", (Activity,), {"run": namespace["run"]})
        assert check(machine(A=task("Hidden", HeartbeatSeconds=60)), [hidden]) == []

    def test_the_workers_heartbeat_intervals_override_the_classes(self) -> None:
        resize = machine(A=task("Resize", HeartbeatSeconds=30))
        (finding,) = check(resize, ACTIVITIES, heartbeat_intervals={"Resize": 45})
        assert "at or below Resize's heartbeat_interval (45 s)" in finding.message
        (finding,) = check(resize, ACTIVITIES, heartbeat_intervals={"Resize": None})
        assert "Resize sends no heartbeat" in finding.message
        echo = machine(A=task("Echo", HeartbeatSeconds=30))
        assert check(echo, ACTIVITIES, heartbeat_intervals={"Echo": 10}) == []
        with pytest.raises(ConfigurationError, match="'Nope' is not an activity being served"):
            check(echo, ACTIVITIES, heartbeat_intervals={"Nope": 10})

    def test_heartbeat_seconds_from_the_input_is_not_held(self) -> None:
        definition = machine(A=task("Resize", HeartbeatSecondsPath="$.heartbeat"))
        assert check(definition, ACTIVITIES) == []


class TestErrorNames:
    @pytest.mark.parametrize(
        ("written", "meant"),
        [
            ("ValueErorr", "ValueError"),
            ("States.Timout", "States.Timeout"),
            ("States.TaskFailed ", "States.TaskFailed"),
            ("activities.WorkerCrashd", "activities.WorkerCrashed"),
            ("transport.S3ClaimCheckErorr", "transport.S3ClaimCheckError"),
            ("Inventory.OutOfStok", "Inventory.OutOfStock"),
            ("PaymentDeclind", "PaymentDeclined"),
        ],
    )
    @pytest.mark.parametrize("field", ["Retry", "Catch"])
    def test_a_name_close_to_a_known_error_is_a_warning(
        self, written: str, meant: str, field: str
    ) -> None:
        rules = [{"ErrorEquals": ["States.ALL"]}, {"ErrorEquals": ["KeyError", written]}]
        definition = machine(A=task("Ship", HeartbeatSeconds=60, **{field: rules}))
        (finding,) = check(definition, ACTIVITIES)
        assert finding.severity == "warning"
        assert str(finding) == (
            f"A: {field}[1] matches {written!r}, which nothing known raises: did you mean {meant}?"
        )

    @pytest.mark.parametrize(
        "name",
        ["Inventory.Busy", "Lambda.ServiceException", "ValueError", "activities.InvalidInput"],
    )
    def test_known_names_and_the_users_own_are_not_reported(self, name: str) -> None:
        definition = machine(A=task("Ship", HeartbeatSeconds=60, Retry=[{"ErrorEquals": [name]}]))
        assert check(definition, ACTIVITIES) == []

    def test_an_unknown_states_name_is_a_warning(self) -> None:
        definition = machine(
            A=task("Ship", HeartbeatSeconds=60, Retry=[{"ErrorEquals": ["States.Whatever"]}])
        )
        (finding,) = check(definition, ACTIVITIES)
        assert "not an error Step Functions raises" in finding.message

    def test_the_retry_and_catch_of_every_state_are_read(self) -> None:
        catch = [{"ErrorEquals": ["States.BranchFailedd"], "Next": "End"}]
        definition = machine(
            Fan={"Type": "Parallel", "Branches": [], "Catch": catch, "Next": "End"},
            End={"Type": "Succeed"},
        )
        (finding,) = check(definition, ACTIVITIES)
        assert str(finding).startswith("Fan: Catch[0] matches 'States.BranchFailedd'")

    def test_an_error_of_another_modules_activity_error_is_known(self) -> None:
        """Any ActivityError subclass imported counts as the project's."""

        class Elsewhere(ActivityError):
            error = "Billing.CardExpiredLongName"

        definition = machine(
            A=task("Ship", HeartbeatSeconds=60, Retry=[{"ErrorEquals": [Elsewhere.error]}])
        )
        assert check(definition, ACTIVITIES) == []


class TestDeclaredHeartbeatSeconds:
    """``Activity.heartbeat_seconds`` is checked when the class is defined."""

    @pytest.mark.parametrize("seconds", [0, -1, 1.5, True, "60"])
    def test_it_must_be_whole_seconds_above_zero(self, seconds: object) -> None:
        with pytest.raises(ActivityDefinitionError, match="heartbeat_seconds") as info:
            type("Bad", (Activity,), {"heartbeat_seconds": seconds})
        assert info.value.setting == "heartbeat_seconds"

    @pytest.mark.parametrize("seconds", [1, 2])
    def test_it_must_be_three_or_more(self, seconds: int) -> None:
        """The worker heartbeats every third of it, a second apart at the least."""
        with pytest.raises(ActivityDefinitionError) as info:
            type("Short", (Activity,), {"heartbeat_seconds": seconds})
        assert info.value.setting == "heartbeat_seconds"
        assert str(info.value).endswith("raise the states' HeartbeatSeconds to 3 or more")

    @pytest.mark.parametrize("interval", [60, 90])
    def test_it_must_be_above_the_heartbeat_interval(self, interval: int) -> None:
        with pytest.raises(ActivityDefinitionError, match="too late"):
            type("Bad", (Activity,), {"heartbeat_seconds": 60, "heartbeat_interval": interval})

    def test_the_decorator_sets_it(self) -> None:
        @activity(heartbeat_seconds=30, heartbeat_interval=10)
        def timed() -> None:
            pass

        assert timed.heartbeat_seconds == 30
        assert Activity.heartbeat_seconds is None


MODULE = "tests.check_workload"


class TestCommand:
    """``activities check MODULE... DEFINITION``: the findings, a summary, an exit code."""

    def write(self, tmp_path: Path, definition: dict[str, Any], name: str = "sm.json") -> str:
        path = tmp_path / name
        path.write_text(json.dumps(definition))
        return str(path)

    def test_a_sound_definition_passes(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        assert main(["check", MODULE, self.write(tmp_path, sound()), "--strict"]) == 0
        assert capsys.readouterr().out == "0 errors, 0 warnings in 5 activity states\n"

    def test_it_prints_what_the_function_returns(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        definition = machine(
            A=task("Ech", HeartbeatSeconds=60, Next="B"),
            B=task("Resize", HeartbeatSeconds=5, Next="C"),
            C=task("Ship", Retry=[{"ErrorEquals": ["ValueErorr"]}], Next="D"),
            D=task({"Ref": "Other"}),
        )
        assert main(["check", MODULE, self.write(tmp_path, definition)]) == 1
        printed = capsys.readouterr().out.splitlines()
        findings = check(definition, discover(MODULE))
        assert printed == [
            *lines(findings),
            "2 errors, 2 warnings in 3 activity states; 1 state not checked",
        ]

    def test_warnings_fail_only_with_strict(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        path = self.write(tmp_path, machine(A=task("Ship")))
        assert main(["check", MODULE, path]) == 0
        assert main(["check", MODULE, path, "--strict"]) == 1
        assert capsys.readouterr().out.splitlines()[-1] == "0 errors, 1 warning in 1 activity state"

    def test_unchecked_states_pass_even_with_strict(self, tmp_path: Path) -> None:
        path = self.write(tmp_path, machine(A=task("${EchoArn}")))
        assert main(["check", MODULE, path, "--strict"]) == 0

    def test_prefix_and_task_lists_are_the_workers(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        path = self.write(
            tmp_path,
            machine(
                A=task("dev-ship-eu", HeartbeatSeconds=60, Next="B"),
                B=task("dev-Resize", HeartbeatSeconds=30),
            ),
        )
        assert main(["check", MODULE, path, "--prefix", "dev-", "--task-list", "Ship=ship-eu"]) == 0
        assert main(["check", MODULE, path, "--task-list", "Ship=ship-eu"]) == 1
        assert "is the prefix 'dev-' missing?" in capsys.readouterr().out

    def test_heartbeat_intervals_are_the_workers(self, tmp_path: Path) -> None:
        path = self.write(tmp_path, machine(A=task("Echo", HeartbeatSeconds=30)))
        assert main(["check", MODULE, path, "--strict"]) == 1
        assert main(["check", MODULE, path, "--strict", "--heartbeat-interval", "Echo=10"]) == 0
        assert main(["check", MODULE, path, "--heartbeat-interval", "Echo=30"]) == 1

    def test_options_go_before_or_after_the_modules_and_the_definition(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """As for the other subcommands, the positional arguments are not split by options."""
        monkeypatch.setattr(sys, "path", sys.path.copy())
        (tmp_path / "extra_activities.py").write_text(
            "from activities import Activity\n\n\n"
            "class Extra(Activity):\n    def run(self):\n        yield\n"
        )
        definition = sound()
        definition["States"]["Notify"]["Next"] = "Extra"
        del definition["States"]["Notify"]["End"]
        definition["States"]["Extra"] = task("Extra", HeartbeatSeconds=60)
        path = self.write(tmp_path, definition)
        where = ["--path", str(tmp_path)]
        assert main(["check", "--strict", *where, MODULE, "extra_activities", path]) == 0
        assert main(["check", MODULE, "extra_activities", path, "--strict", *where]) == 0
        assert main(["check", "extra_activities", path, *where]) == 1  # the others unserved
        with pytest.raises(SystemExit) as exit_:
            main(["check", MODULE, "--strict", "extra_activities", path, *where])
        assert exit_.value.code == 2

    def test_yaml_is_read_by_its_suffix(self, tmp_path: Path) -> None:
        pytest.importorskip("yaml")
        path = tmp_path / "sm.yaml"
        path.write_text(
            textwrap.dedent(
                f"""\
                StartAt: A
                States:
                  A:
                    Type: Task
                    Resource: {arn("Ech")}
                    HeartbeatSeconds: 60
                    End: true
                """
            )
        )
        assert main(["check", MODULE, str(path)]) == 1

    def test_yaml_without_pyyaml_is_one_line(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setitem(sys.modules, "yaml", None)  # import yaml raises ImportError
        path = tmp_path / "sm.yml"
        path.write_text("StartAt: A\n")
        assert main(["check", MODULE, str(path)]) == 2
        assert capsys.readouterr().err == (
            f"activities check: error: reading {path} needs PyYAML: python3 -m pip install "
            "pyyaml (or give JSON)\n"
        )

    @pytest.mark.parametrize(
        ("content", "said"),
        [(None, "cannot read the definition"), ("{", "is not JSON"), ("[]", "has no States")],
    )
    def test_a_file_that_is_no_definition_is_a_usage_error(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str | None, said: str
    ) -> None:
        path = tmp_path / "sm.json"
        if content is not None:
            path.write_text(content)
        assert main(["check", MODULE, str(path)]) == 2
        error = capsys.readouterr().err
        assert error.startswith("activities check: error: ")
        assert said in error
        assert error.count("\n") == 1

    def test_a_definition_is_required(self, capsys: pytest.CaptureFixture[str]) -> None:
        with pytest.raises(SystemExit) as exit_:
            main(["check", MODULE])
        assert exit_.value.code == 2
        assert "required: DEFINITION" in capsys.readouterr().err
