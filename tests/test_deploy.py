"""The container recipe in examples/deploy agrees with the worker's options and defaults."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from activities._cli.arguments import command_line
from activities.worker._settings import SHUTDOWN_GRACE

DEPLOY = Path(__file__).parent.parent / "examples" / "deploy"

#: The longest a graceful stop waits for the open polls, the docs' rule: 65 seconds.
POLLS = 65

#: Fargate's largest stopTimeout.
FARGATE_STOP_TIMEOUT = 120


def instructions() -> list[tuple[str, str]]:
    """The Dockerfile's instructions, (NAME, arguments), continuation lines joined."""
    found: list[tuple[str, str]] = []
    pending = ""
    for line in (DEPLOY / "Dockerfile").read_text().splitlines():
        if line.lstrip().startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1]
            continue
        whole = (pending + line).strip()
        pending = ""
        if whole:
            name, _, arguments = whole.partition(" ")
            found.append((name.upper(), arguments.strip()))
    assert not pending, "the Dockerfile ends in a continuation line"
    return found


def entrypoint() -> list[str]:
    """The command the image runs: its last ENTRYPOINT, in exec form, and CMD if any."""
    command: list[str] = []
    for kind in ("ENTRYPOINT", "CMD"):
        given = [arguments for name, arguments in instructions() if name == kind]
        if given:
            parsed = json.loads(given[-1])  # shell form is not JSON: it fails here
            assert isinstance(parsed, list), f"{kind} is not exec form: {given[-1]}"
            assert all(isinstance(word, str) for word in parsed), parsed
            command += parsed
    return command


def option(command: list[str], name: str) -> str | None:
    """The value of ``name`` in ``command`` (``--name VALUE`` or ``--name=VALUE``), or None."""
    value = None
    for at, word in enumerate(command):
        if word == name:
            assert at + 1 < len(command), f"{name} without a value"
            value = command[at + 1]
        elif word.startswith(f"{name}="):
            value = word.partition("=")[2]
    return value


def container() -> dict[str, Any]:
    """The worker's container in deployment.yaml, with the pod's spec under ``"pod"``."""
    deployment = yaml.safe_load((DEPLOY / "deployment.yaml").read_text())
    assert deployment["apiVersion"] == "apps/v1"
    assert deployment["kind"] == "Deployment"
    pod = deployment["spec"]["template"]["spec"]
    [worker] = pod["containers"]
    return {**worker, "pod": pod}


def ecs_container() -> dict[str, Any]:
    """The container definition the README gives for ECS, its one JSON block."""
    readme = (DEPLOY / "README.md").read_text()
    [block] = re.findall(r"^```json\n(.*?)^```$", readme, flags=re.DOTALL | re.MULTILINE)
    definition: dict[str, Any] = json.loads(block)
    return definition


def shutdown_grace(command: list[str]) -> float:
    """The grace the image's worker gives running tasks on stop."""
    given = option(command, "--shutdown-grace")
    return SHUTDOWN_GRACE if given is None else float(given)


def cpus(quantity: str | float) -> float:
    """A Kubernetes CPU quantity in CPUs: ``2``, ``"2"`` or ``"2000m"``."""
    text = str(quantity)
    return int(text[:-1]) / 1000 if text.endswith("m") else float(text)


def test_entrypoint_is_exec_form_running_the_worker() -> None:
    """The worker is the container's first process, not a shell that would keep SIGTERM."""
    command = entrypoint()
    assert command[:2] == ["activities", "worker"]
    assert ("STOPSIGNAL", "SIGTERM") in instructions()


def test_image_runs_as_a_user_that_is_not_root() -> None:
    """The last USER of the Dockerfile is neither root nor uid 0."""
    users = [arguments for name, arguments in instructions() if name == "USER"]
    assert users, "no USER: the image runs as root"
    user = users[-1].partition(":")[0]
    assert user not in {"root", "0"}


def test_image_is_built_from_slim_python_without_a_pip_cache() -> None:
    """python:3.12-slim, unbuffered output, and no pip cache kept in a layer."""
    assert instructions()[0] == ("FROM", "python:3.12-slim")
    environment = " ".join(arguments for name, arguments in instructions() if name == "ENV")
    assert "PYTHONUNBUFFERED=1" in environment.split()
    assert "PIP_NO_CACHE_DIR=1" in environment.split()


def test_entrypoint_is_accepted_by_the_worker_parser(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Every option the image passes is one ``activities worker`` takes, with its value."""
    command = entrypoint()
    try:
        arguments = command_line().parse_args(command[1:])
    except SystemExit:
        error = capsys.readouterr().err
        pytest.fail(f"activities {' '.join(command[1:])}: {error}", pytrace=False)
    assert arguments.command == "worker"
    assert arguments.modules == ["myproject.activities"]
    assert arguments.processes == 2
    assert arguments.metrics_port == 9090
    assert arguments.metrics_host == "0.0.0.0"  # noqa: S104 - reachable from outside the container
    assert arguments.log_format == "json"


def test_metrics_listen_beyond_the_container() -> None:
    """The default host, 127.0.0.1, would fail every probe and scrape from outside."""
    assert option(entrypoint(), "--metrics-host") == "0.0.0.0"  # noqa: S104 - the point


def test_probes_and_scrape_reach_the_metrics_port() -> None:
    """Liveness on /healthz and readiness on /readyz, on the port the worker serves."""
    port = int(option(entrypoint(), "--metrics-port") or 0)
    worker = container()
    ports = {entry["name"]: entry["containerPort"] for entry in worker["ports"]}
    assert ports.get("metrics") == port
    exposed = [arguments for name, arguments in instructions() if name == "EXPOSE"]
    assert exposed == [str(port)]
    for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
        get = worker[probe]["httpGet"]
        assert get["path"] == path, probe
        assert ports.get(get["port"], get["port"]) == port, probe
    deployment = yaml.safe_load((DEPLOY / "deployment.yaml").read_text())
    annotations = deployment["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/port"] == str(port)
    assert annotations["prometheus.io/path"] == "/metrics"


def test_probe_timings() -> None:
    """Liveness every 10 s, 3 failures in a row before a restart; readiness every 5 s."""
    probe = container()["livenessProbe"]
    assert probe["periodSeconds"] == 10
    assert probe["failureThreshold"] == 3
    assert probe["timeoutSeconds"] <= 5
    assert container()["readinessProbe"]["periodSeconds"] == 5


def test_kubernetes_waits_for_a_graceful_stop() -> None:
    """terminationGracePeriodSeconds covers the polls, the shutdown grace and some slack."""
    pod = container()["pod"]
    grace = shutdown_grace(entrypoint())
    assert pod["terminationGracePeriodSeconds"] >= POLLS + grace
    assert "preStop" not in container().get("lifecycle", {})


def test_ecs_waits_for_a_graceful_stop() -> None:
    """The README's stopTimeout follows the same rule and fits Fargate's maximum."""
    stop_timeout = ecs_container()["stopTimeout"]
    assert stop_timeout >= POLLS + shutdown_grace(entrypoint())
    assert stop_timeout <= FARGATE_STOP_TIMEOUT


def test_ecs_health_check_asks_healthz_on_the_metrics_port() -> None:
    """The slim image has no curl: the check is python, on the port the worker serves."""
    command = ecs_container()["healthCheck"]["command"]
    assert command[:3] == ["CMD", "python", "-c"]
    urls = re.findall(r"http://127\.0\.0\.1:(\d+)(/\w+)", command[3])
    assert urls == [(option(entrypoint(), "--metrics-port"), "/healthz")]
    compile(command[3], "healthCheck", "exec")  # a SyntaxError fails the test


def test_cpus_match_the_processes() -> None:
    """One CPU per task process, on Kubernetes and in the README's ECS definition."""
    processes = int(option(entrypoint(), "--processes") or 0)
    resources = container()["resources"]
    assert cpus(resources["limits"]["cpu"]) == processes
    assert cpus(resources["requests"]["cpu"]) == processes
    assert ecs_container()["cpu"] == 1024 * processes
