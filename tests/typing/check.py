"""Checking a state machine against the code, as a project's test writes it: mypy only."""

from __future__ import annotations

from activities import Activity, Finding, check_definition


class Echo(Activity):
    heartbeat_interval = 10.0
    heartbeat_seconds = 30

    def run(self, value: str) -> str:
        return value


def test_the_state_machine_agrees_with_the_code(definition: dict[str, object]) -> None:
    findings: list[Finding] = check_definition(definition, [Echo], prefix="dev-")
    errors = [str(finding) for finding in findings if finding.severity == "error"]
    assert not errors, "\n".join(errors)
    paths: list[str] = [finding.path for finding in findings]
    del paths
