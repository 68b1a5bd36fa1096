"""What a States Language definition says, read as text.

Step Functions' own error names, and the activity a ``Resource`` names (ARNs with
CloudFormation placeholders included).

:mod:`activities.check` holds these against the code.
"""

from __future__ import annotations

import json
import re

__all__ = ["ACTIVITY_ARN", "STATES_ERRORS", "activity_name", "template_text"]

#: The error names Step Functions itself raises (the States Language's predefined errors).
STATES_ERRORS = frozenset(
    {
        "States.ALL",
        "States.BranchFailed",
        "States.DataLimitExceeded",
        "States.ExceedToleratedFailureThreshold",
        "States.HeartbeatTimeout",
        "States.Http.Socket",
        "States.IntrinsicFailure",
        "States.ItemReaderFailed",
        "States.NoChoiceMatched",
        "States.ParameterPathFailure",
        "States.Permissions",
        "States.QueryEvaluationError",
        "States.ResultPathMatchFailure",
        "States.ResultWriterFailed",
        "States.Runtime",
        "States.TaskFailed",
        "States.Timeout",
    }
)

#: A part of an ARN: literal characters but ``:``, and template placeholders (``${...}``).
PART = r"(?:\$\{[^}]*\}|[^:$])*"
ACTIVITY_ARN = re.compile(
    rf"^arn:(?P<partition>{PART}):states:(?P<region>{PART}):(?P<account>{PART})"
    r":activity:(?P<name>.+)$"
)


def activity_name(resource: object) -> tuple[str | None, str | None]:
    """The activity name ``resource`` names, or ``(None, shown)`` if it cannot be read.

    ``shown`` is the resource as a finding shows it when it is a template placeholder that
    may be an activity; it is ``None`` too when the resource is not an activity.
    """
    text = template_text(resource)
    if text is None:
        return None, json.dumps(resource) if isinstance(resource, dict) else None
    match = ACTIVITY_ARN.match(text)
    if match is None:
        if not text.startswith("arn:") and "${" in text:
            return None, json.dumps(resource) if isinstance(resource, dict) else text
        return None, None  # a Lambda, an integration (arn:aws:states:::...), or not ours
    name = match["name"]
    if "${" in name or ":" in name:
        return None, json.dumps(resource) if isinstance(resource, dict) else text
    return name, None


def template_text(resource: object) -> str | None:
    """``resource`` as one string with placeholders as ``${...}``, or None if unreadable.

    CloudFormation's ``Fn::Sub`` gives its string, ``Fn::Join`` its parts joined (those
    not strings become placeholders); ``Ref`` and ``Fn::GetAtt`` cannot be read.
    """
    if isinstance(resource, str):
        return resource
    if not isinstance(resource, dict) or len(resource) != 1:
        return None
    ((function, value),) = resource.items()
    if function == "Fn::Sub":
        text = value[0] if isinstance(value, list) and value else value
        return text if isinstance(text, str) else None
    if function == "Fn::Join" and isinstance(value, list) and len(value) == 2:  # noqa: PLR2004 - [separator, parts]
        separator, parts = value
        if isinstance(separator, str) and isinstance(parts, list):
            return separator.join(part if isinstance(part, str) else "${?}" for part in parts)
    return None
