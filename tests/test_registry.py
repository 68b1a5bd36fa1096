from __future__ import annotations

import sys
import textwrap
from typing import TYPE_CHECKING

import pytest

from activities import Activity, ActivityClient, ActivityDefinitionError, ConfigurationError
from activities.registry import discover, register, task_lists

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from botocore.stub import Stubber


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A throwaway package 'proj' on sys.path."""
    root = tmp_path / "proj"
    root.mkdir()
    (root / "__init__.py").write_text("")
    monkeypatch.syspath_prepend(str(tmp_path))
    yield root
    for name in [name for name in sys.modules if name == "proj" or name.startswith("proj.")]:
        del sys.modules[name]


def write(path: Path, source: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(source))


class TestDiscover:
    def test_collects_the_package_and_its_submodules(self, project: Path) -> None:
        """Activities of every submodule are found, once, where they are defined."""
        write(
            project / "a.py",
            """
            from activities import Activity
            class Echo(Activity):
                def run(self, value):
                    return value
        """,
        )
        write(project / "sub" / "__init__.py", "")
        write(
            project / "sub" / "b.py",
            """
            from activities import Activity
            from proj.a import Echo  # imported, not defined here
            class Base(Activity):  # does not override run(): an abstract base
                pass
            class Resize(Base):
                def run(self):
                    return 1
        """,
        )
        assert sorted(cls.__qualname__ for cls in discover("proj")) == ["Echo", "Resize"]

    def test_duplicate_names_name_both_classes(self, project: Path) -> None:
        """Two activities served under one name are refused before any poll."""
        write(
            project / "a.py",
            """
            from activities import Activity
            class Echo(Activity):
                def run(self): ...
        """,
        )
        write(
            project / "b.py",
            """
            from activities import Activity
            class Other(Activity):
                name = "Echo"
                def run(self): ...
        """,
        )
        with pytest.raises(ConfigurationError, match=r"proj\.a\.Echo and proj\.b\.Other"):
            discover("proj")

    def test_broken_submodule_is_named(self, project: Path) -> None:
        """An import error deep in the package says which module."""
        write(project / "bad.py", "raise RuntimeError('boom')\n")
        with pytest.raises(ConfigurationError, match=r"cannot import 'proj\.bad': RuntimeError"):
            discover("proj")


class Resize(Activity):
    task_lists = ("resize-gpu", "arn:aws:states:us-east-1:123456789012:activity:resize-cpu")

    def run(self) -> None: ...


class Echo(Activity):
    def run(self) -> None: ...


class TestTaskLists:
    def test_name_by_default_prefixed(self) -> None:
        """A class is served on its name, after the prefix."""
        assert task_lists([Echo], prefix="dev-") == {"dev-Echo": Echo}

    def test_class_task_lists_and_arns(self) -> None:
        """A class's task_lists replace its name; ARNs are not prefixed."""
        assert task_lists([Resize], prefix="dev-") == {
            "dev-resize-gpu": Resize,
            "arn:aws:states:us-east-1:123456789012:activity:resize-cpu": Resize,
        }

    def test_worker_overrides_win(self) -> None:
        """The worker's configuration overrides the class's defaults."""
        served = task_lists([Resize, Echo], overrides={"Resize": ["only-here"]})
        assert served == {"only-here": Resize, "Echo": Echo}

    def test_one_task_list_for_two_classes_is_refused(self) -> None:
        """Two classes cannot share a task list: a task could reach the wrong code."""
        with pytest.raises(ConfigurationError, match="both served on 'Echo'"):
            task_lists([Resize, Echo], overrides={"Resize": ["Echo"]})

    def test_override_for_an_unknown_activity_is_refused(self) -> None:
        """A typo in an override is said, not ignored."""
        with pytest.raises(ConfigurationError, match="not served: Ech0"):
            task_lists([Echo], overrides={"Ech0": ["x"]})

    def test_prefix_that_breaks_the_name_rules_is_refused(self) -> None:
        """A prefix is checked with the name it makes."""
        with pytest.raises(ConfigurationError, match="white space"):
            task_lists([Echo], prefix="dev ")

    def test_invalid_class_task_lists_fail_at_definition(self) -> None:
        """Bad task lists on the class fail when it is defined, naming the setting."""
        with pytest.raises(ActivityDefinitionError, match="task_lists") as info:
            type("Bad", (Activity,), {"task_lists": ["a"]})  # a list, not a tuple
        assert info.value.setting == "task_lists"
        with pytest.raises(ActivityDefinitionError, match="'has space'"):
            type("Bad", (Activity,), {"task_lists": ("has space",)})


class TestRegister:
    def test_creates_names_and_keeps_arns(self, stubbed: tuple[ActivityClient, Stubber]) -> None:
        """CreateActivity for each name (with tags); ARNs are taken as they are."""
        client, stubber = stubbed
        arn = "arn:aws:states:us-east-1:123456789012:activity:dev-resize-gpu"
        stubber.add_response(
            "create_activity",
            {"activityArn": arn, "creationDate": "2026-11-23T00:00:00Z"},
            {"name": "dev-resize-gpu", "tags": [{"key": "team", "value": "data"}]},
        )
        arns = register(client, task_lists([Resize], prefix="dev-"), tags={"team": "data"})
        assert arns == {
            "dev-resize-gpu": arn,
            "arn:aws:states:us-east-1:123456789012:activity:resize-cpu": (
                "arn:aws:states:us-east-1:123456789012:activity:resize-cpu"
            ),
        }
