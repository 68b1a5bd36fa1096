"""The container recipe in examples/deploy agrees with the worker's options and defaults.

The autoscaling recipes (keda.yaml, ecs-autoscaling.yaml) too: they scale the Deployment and the
service of the recipe, read metrics the worker and Step Functions really publish, and give a
stopping worker the time its drain takes.
"""

from __future__ import annotations

import ast
import json
import operator
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.metrics import MetricWrapperBase

from activities._cli.arguments import command_line
from activities._ops.prometheus import LiveMetrics, PrometheusMetrics
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


# The autoscaling recipes.

#: The metrics Step Functions publishes for an activity, in the namespace AWS/States with the
#: dimension ActivityArn (its developer guide, "Step Functions metrics for CloudWatch"):
#: counts of tasks, and intervals in milliseconds.
ACTIVITY_COUNTS = frozenset(
    {
        "ActivitiesScheduled",
        "ActivitiesStarted",
        "ActivitiesSucceeded",
        "ActivitiesFailed",
        "ActivitiesTimedOut",
        "ActivitiesHeartbeatTimedOut",
    }
)
ACTIVITY_INTERVALS = frozenset({"ActivityScheduleTime", "ActivityRunTime", "ActivityTime"})

#: An activity's ARN; its name as Step Functions allows it, and CloudWatch Logs too.
ACTIVITY_ARN = re.compile(
    r"arn:aws:states:(?P<region>[a-z]{2}(-[a-z]+)+-\d):(?P<account>\d{12})"
    r":activity:(?P<name>[0-9A-Za-z_-]{1,80})"
)

#: A Kubernetes pod of a Deployment: the Deployment's name, its ReplicaSet's hash, its own.
POD_NAME = "{deployment}-7d4b9c8f6d-x2k9p"

DOCS = Path(__file__).parent.parent / "docs"


def deployment() -> dict[str, Any]:
    """deployment.yaml's Deployment."""
    loaded: dict[str, Any] = yaml.safe_load((DEPLOY / "deployment.yaml").read_text())
    return loaded


def region() -> str:
    """The Region the Deployment's worker serves: its AWS_REGION."""
    [value] = [env["value"] for env in container()["env"] if env["name"] == "AWS_REGION"]
    assert isinstance(value, str)
    return value


def slots(command: list[str]) -> int:
    """The tasks a worker of ``command`` runs at once: processes x threads, or either alone."""
    processes, threads = option(command, "--processes"), option(command, "--threads")
    assert processes or threads, "without --processes the slots are the host's CPUs"
    return int(processes or 1) * int(threads or 1)


def keda(kind: str) -> dict[str, Any]:
    """The one object of ``kind`` in keda.yaml."""
    documents = list(yaml.safe_load_all((DEPLOY / "keda.yaml").read_text()))
    assert all(document["apiVersion"] == "keda.sh/v1alpha1" for document in documents)
    [found] = [document for document in documents if document["kind"] == kind]
    assert isinstance(found, dict)
    return found


def trigger(kind: str) -> dict[str, Any]:
    """The ScaledObject's one trigger of type ``kind``."""
    [found] = [each for each in keda("ScaledObject")["spec"]["triggers"] if each["type"] == kind]
    assert isinstance(found, dict)
    return found


class CloudFormationLoader(yaml.SafeLoader):
    """Reads CloudFormation's short forms (``!Ref``, ``!Sub``, ``!GetAtt`` ...) as long ones."""


def _intrinsic(loader: CloudFormationLoader, suffix: str, node: yaml.Node) -> dict[str, Any]:
    value: Any
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        assert isinstance(node, yaml.MappingNode)
        value = loader.construct_mapping(node, deep=True)
    if suffix == "Ref":
        return {"Ref": value}
    if suffix == "GetAtt" and isinstance(value, str):
        value = value.split(".", 1)
    return {f"Fn::{suffix}": value}


CloudFormationLoader.add_multi_constructor("!", _intrinsic)


def ecs() -> dict[str, Any]:
    """ecs-autoscaling.yaml, its short forms read as the long ones."""
    text = (DEPLOY / "ecs-autoscaling.yaml").read_text()
    template: dict[str, Any] = yaml.load(text, Loader=CloudFormationLoader)  # noqa: S506 - safe + tags
    assert template["AWSTemplateFormatVersion"] == "2010-09-09"
    return template


def resource(kind: str) -> tuple[str, dict[str, Any]]:
    """The template's one resource of type ``kind``: its logical id and its properties."""
    [(name, found)] = [
        (name, each) for name, each in ecs()["Resources"].items() if each["Type"] == kind
    ]
    return name, found["Properties"]


def ecs_worker() -> dict[str, Any]:
    """The worker's container definition in the template's task definition."""
    [worker] = resource("AWS::ECS::TaskDefinition")[1]["ContainerDefinitions"]
    assert isinstance(worker, dict)
    return worker


def ecs_command() -> list[str]:
    """What the ECS task runs: the image's command, and the container's Command after it."""
    return entrypoint() + list(ecs_worker().get("Command", []))


def tracking() -> dict[str, Any]:
    """The one target tracking policy's configuration."""
    policy = resource("AWS::ApplicationAutoScaling::ScalingPolicy")[1]
    assert policy["PolicyType"] == "TargetTrackingScaling"
    configuration: dict[str, Any] = policy["TargetTrackingScalingPolicyConfiguration"]
    return configuration


def queries() -> dict[str, dict[str, Any]]:
    """The policy's metric queries by their Id."""
    metrics = tracking()["CustomizedMetricSpecification"]["Metrics"]
    return {query["Id"]: query for query in metrics}


def metric_math(expression: str, values: dict[str, float | None]) -> float | None:
    """The value of a CloudWatch metric math ``expression`` at one period; None: no data.

    Reads arithmetic, numbers, query Ids and ``FILL(series, number)``, the function the
    template uses; a missing value (None) makes the result missing, as in CloudWatch.
    """

    operators = {ast.Add: operator.add, ast.Sub: operator.sub}
    operators |= {ast.Mult: operator.mul, ast.Div: operator.truediv}

    def value(node: ast.AST) -> float | None:
        match node:
            case ast.Constant(value=int() | float() as number):
                return float(number)
            case ast.Name(id=name):
                return values[name]  # a KeyError: an Id that is not a query
            case ast.Call(func=ast.Name(id="FILL"), args=[series, filler]):
                given = value(series)
                return value(filler) if given is None else given
            case ast.BinOp(left=left, op=op, right=right) if type(op) in operators:
                first, second = value(left), value(right)
                both = first is not None and second is not None
                return operators[type(op)](first, second) if both else None
        pytest.fail(f"metric math this test does not read: {ast.unparse(node)}")

    return value(ast.parse(expression, mode="eval").body)


def exported() -> dict[str, list[dict[str, str]]]:
    """Every sample the worker's /metrics shows, by name, with the label sets of its series.

    Made by the worker's own collectors, for an activity Resize on two positions, a slot and
    an async position.
    """

    class Record:
        def running_cells(self) -> list[int]:
            return [0, -1]

        def buffered_by_task_list(self) -> list[int]:
            return [0]

    families = list(LiveMetrics(Record(), ["Resize"], 2, async_positions=[1]).collect())
    counted = PrometheusMetrics()
    counted.start_at_zero(["Resize"])
    for metric in vars(counted).values():
        if isinstance(metric, MetricWrapperBase):
            families += metric.collect()
    samples: dict[str, list[dict[str, str]]] = {}
    for family in families:
        for sample in family.samples:
            samples.setdefault(sample.name, []).append(sample.labels)
    return samples


def selectors(query: str) -> list[tuple[str, list[tuple[str, str, str]]]]:
    """The series selectors of a PromQL query: (metric name, [(label, operator, value)])."""
    found = []
    for name, matchers in re.findall(r"([A-Za-z_:][\w:]*)\s*\{([^}]*)\}", query):
        parsed = re.findall(r'(\w+)\s*(=~|!~|!=|=)\s*"([^"]*)"', matchers)
        assert len(parsed) == matchers.count('"') // 2, f"a matcher not read: {matchers}"
        found.append((name, parsed))
    return found


class TestKeda:
    def test_scales_the_deployment(self) -> None:
        """The ScaledObject's target is the Deployment of deployment.yaml, by its name."""
        target = keda("ScaledObject")["spec"]["scaleTargetRef"]
        assert target.get("apiVersion", "apps/v1") == deployment()["apiVersion"]
        assert target.get("kind", "Deployment") == deployment()["kind"]
        assert target["name"] == deployment()["metadata"]["name"]

    def test_keeps_at_least_one_worker(self) -> None:
        """No worker takes no task, so ActivityScheduleTime would have nothing to scale from."""
        spec = keda("ScaledObject")["spec"]
        assert 1 <= spec["minReplicaCount"] <= spec["maxReplicaCount"]

    def test_removes_workers_slower_than_a_drain(self) -> None:
        """The scale-down window outlasts the pod's grace, which covers the polls and tasks."""
        pod = container()["pod"]
        assert pod["terminationGracePeriodSeconds"] >= POLLS + shutdown_grace(entrypoint())
        behavior = keda("ScaledObject")["spec"]["advanced"]["horizontalPodAutoscalerConfig"]
        window = behavior["behavior"]["scaleDown"]["stabilizationWindowSeconds"]
        assert window >= pod["terminationGracePeriodSeconds"]

    def test_metadata_values_are_strings(self) -> None:
        """KEDA's trigger metadata is a map of strings: a YAML number is refused."""
        for each in keda("ScaledObject")["spec"]["triggers"]:
            for key, value in each["metadata"].items():
                assert isinstance(value, str), f"{each['type']}: {key}: {value!r}"

    def test_prometheus_query_reads_the_workers_busy_slots(self) -> None:
        """The query names series the worker exports, with label values it sets."""
        query = trigger("prometheus")["metadata"]["query"]
        samples = exported()
        found = selectors(query)
        assert found, query
        for name, matchers in found:
            assert name in samples, f"{name}: the worker exports no such metric"
            own = {label: {labels.get(label) for labels in samples[name]} for label, *_ in matchers}
            for label, match, value in matchers:
                if label in own and None not in own[label] and match == "=":
                    assert value in own[label], f"{name}{{{label}={value!r}}}: never set"
        assert ("sfn_activities_slots", "state", "busy") in {
            (name, label, value) for name, matchers in found for label, _, value in matchers
        }

    def test_prometheus_query_selects_the_deployments_pods(self) -> None:
        """Its pod matcher takes the Deployment's pods and no other Deployment's."""
        name = deployment()["metadata"]["name"]
        [pattern] = [
            value
            for _, matchers in selectors(trigger("prometheus")["metadata"]["query"])
            for label, operator, value in matchers
            if label == "pod" and operator == "=~"
        ]
        assert re.fullmatch(pattern, POD_NAME.format(deployment=name))
        assert not re.fullmatch(pattern, POD_NAME.format(deployment=f"other-{name}"))

    def test_busy_slots_target_is_under_a_replicas_slots(self) -> None:
        """Busy slots per replica never exceed its slots: a target as high never adds one."""
        busy = trigger("prometheus")
        assert busy.get("metricType", "AverageValue") == "AverageValue"  # a sum over the pods
        assert 0 < float(busy["metadata"]["threshold"]) < slots(entrypoint())

    def test_cloudwatch_trigger_reads_what_step_functions_publishes(self) -> None:
        """AWS/States, by ActivityArn: a wait in milliseconds, averaged, not shared by replicas."""
        cloudwatch = trigger("aws-cloudwatch")
        metadata = cloudwatch["metadata"]
        assert metadata["namespace"] == "AWS/States"
        assert metadata["dimensionName"] == "ActivityArn"
        assert metadata["metricName"] in ACTIVITY_COUNTS | ACTIVITY_INTERVALS
        if metadata["metricName"] in ACTIVITY_INTERVALS:
            assert metadata["metricStat"] in {"Average", "Maximum"} or re.fullmatch(
                r"p\d+(\.\d+)?", metadata["metricStat"]
            )
            assert cloudwatch["metricType"] == "Value"
        else:
            assert metadata["metricStat"] == "Sum"
        assert "metricUnit" not in metadata  # a unit other than the one published finds nothing

    def test_cloudwatch_trigger_follows_the_workers_activity(self) -> None:
        """An activity ARN of the Region the Deployment's worker serves, KEDA reading there."""
        metadata = trigger("aws-cloudwatch")["metadata"]
        arn = ACTIVITY_ARN.fullmatch(metadata["dimensionValue"])
        assert arn, metadata["dimensionValue"]
        assert arn["region"] == metadata["awsRegion"] == region()
        assert arn["name"] == ecs()["Parameters"]["ActivityName"]["Default"]

    def test_cloudwatch_window_is_one_keda_accepts(self) -> None:
        """A period CloudWatch has, and a collection time of whole periods, beyond one."""
        metadata = trigger("aws-cloudwatch")["metadata"]
        period = int(metadata["metricStatPeriod"])
        assert period in {1, 5, 10, 30} or period % 60 == 0
        collection = int(metadata["metricCollectionTime"])
        assert collection > period
        assert collection % period == 0
        assert float(metadata["targetMetricValue"]) > 0
        assert "minMetricValue" in metadata  # KEDA refuses the trigger without it

    def test_cloudwatch_trigger_authenticates_with_pod_identity(self) -> None:
        """Its TriggerAuthentication is the file's, provider aws (aws-eks is deprecated)."""
        authentication = keda("TriggerAuthentication")
        reference = trigger("aws-cloudwatch")["authenticationRef"]
        assert reference["name"] == authentication["metadata"]["name"]
        assert reference.get("kind", "TriggerAuthentication") == "TriggerAuthentication"
        assert authentication["spec"]["podIdentity"]["provider"] == "aws"


class TestEcsAutoscaling:
    def test_task_waits_for_a_graceful_stop(self) -> None:
        """StopTimeout covers the polls and the shutdown grace, within Fargate's maximum."""
        stop_timeout = ecs_worker()["StopTimeout"]
        assert stop_timeout >= POLLS + shutdown_grace(ecs_command())
        assert stop_timeout <= FARGATE_STOP_TIMEOUT

    def test_removes_workers_slower_than_a_drain(self) -> None:
        """A scale-in waits for the last one's drain to end: its cooldown outlasts StopTimeout."""
        assert tracking()["ScaleInCooldown"] >= ecs_worker()["StopTimeout"]
        assert not tracking().get("DisableScaleIn", False)

    def test_scales_the_templates_service(self) -> None:
        """The scalable target is the desired count of the template's service in its cluster."""
        cluster, _ = resource("AWS::ECS::Cluster")
        service_name, service = resource("AWS::ECS::Service")
        task_definition, _ = resource("AWS::ECS::TaskDefinition")
        target_name, target = resource("AWS::ApplicationAutoScaling::ScalableTarget")
        assert service["Cluster"] == {"Ref": cluster}
        assert service["TaskDefinition"] == {"Ref": task_definition}
        assert "DesiredCount" not in service  # a stack update would undo the scaling
        assert target["ServiceNamespace"] == "ecs"
        assert target["ScalableDimension"] == "ecs:service:DesiredCount"
        assert target["ResourceId"] == {
            "Fn::Sub": f"service/${{{cluster}}}/${{{service_name}.Name}}"
        }
        assert 1 <= target["MinCapacity"] <= target["MaxCapacity"]
        policy = resource("AWS::ApplicationAutoScaling::ScalingPolicy")[1]
        assert policy["ScalingTargetId"] == {"Ref": target_name}
        running = queries()["tasks"]["MetricStat"]
        assert running["Metric"]["Namespace"] == "ECS/ContainerInsights"
        assert running["Metric"]["MetricName"] == "RunningTaskCount"
        assert {each["Name"]: each["Value"] for each in running["Metric"]["Dimensions"]} == {
            "ClusterName": {"Ref": cluster},
            "ServiceName": {"Fn::GetAtt": [service_name, "Name"]},
        }
        settings = resource("AWS::ECS::Cluster")[1]["ClusterSettings"]
        assert {"Name": "containerInsights", "Value": "enabled"} in settings  # RunningTaskCount

    def test_metrics_are_the_activitys(self) -> None:
        """Step Functions' own metrics of the activity, in the stack's Region, the worker's too."""
        name = ecs()["Parameters"]["ActivityName"]["Default"]
        published = [each["MetricStat"] for each in queries().values() if "MetricStat" in each]
        activity = [stat for stat in published if stat["Metric"]["Namespace"] == "AWS/States"]
        assert activity
        for stat in activity:
            assert stat["Metric"]["MetricName"] in ACTIVITY_COUNTS | ACTIVITY_INTERVALS
            [dimension] = stat["Metric"]["Dimensions"]
            assert dimension["Name"] == "ActivityArn"
            given = dimension["Value"]["Fn::Sub"]
            assert "${AWS::Region}" in given
            arn = given.replace("${AWS::Region}", "eu-west-1")
            arn = arn.replace("${AWS::AccountId}", "123456789012").replace("${ActivityName}", name)
            assert ACTIVITY_ARN.fullmatch(arn), given
        environment = {each["Name"]: each["Value"] for each in ecs_worker()["Environment"]}
        assert environment["AWS_REGION"] == {"Ref": "AWS::Region"}

    def test_metric_is_tasks_in_flight_per_worker(self) -> None:
        """Arrivals a second times seconds in flight, per running task; 0 when idle."""
        by_id = queries()
        [returned] = [query for query in by_id.values() if query.get("ReturnData", True)]
        expression = returned["Expression"]
        stats = {
            query["MetricStat"]["Metric"]["MetricName"]: (query_id, query["MetricStat"]["Stat"])
            for query_id, query in by_id.items()
            if "MetricStat" in query
        }
        scheduled, scheduled_stat = stats["ActivitiesScheduled"]
        in_flight, in_flight_stat = stats["ActivityTime"]
        tasks, _ = stats["RunningTaskCount"]
        assert (scheduled_stat, in_flight_stat) == ("Sum", "Average")
        # 120 tasks a minute (2 a second), 1,500 ms each from scheduled to closed, 3 workers:
        # 3 tasks in flight, 1 per worker.
        busy = {scheduled: 120.0, in_flight: 1500.0, tasks: 3.0}
        assert metric_math(expression, busy) == pytest.approx(1.0)
        idle = {scheduled: None, in_flight: None, tasks: 3.0}
        assert metric_math(expression, idle) == 0.0
        for query_id in by_id:
            assert re.fullmatch(r"[a-z]\w*", query_id), query_id

    def test_target_is_a_workers_slots(self) -> None:
        """At the target every slot of every worker is busy and no task waits."""
        assert tracking()["TargetValue"] == slots(ecs_command())

    def test_task_matches_the_image(self) -> None:
        """CPUs for the processes, the metrics port, and the README's health check."""
        processes = int(option(ecs_command(), "--processes") or 0)
        definition = resource("AWS::ECS::TaskDefinition")[1]
        assert int(definition["Cpu"]) == ecs_worker()["Cpu"] == 1024 * processes
        [mapping] = ecs_worker()["PortMappings"]
        assert mapping["ContainerPort"] == int(option(ecs_command(), "--metrics-port") or 0)
        check = ecs_worker()["HealthCheck"]
        readme = ecs_container()["healthCheck"]
        assert check["Command"] == readme["command"]
        assert [check[key] for key in ("Interval", "Timeout", "Retries", "StartPeriod")] == [
            readme[key] for key in ("interval", "timeout", "retries", "startPeriod")
        ]

    def test_task_role_allows_what_the_worker_calls(self) -> None:
        """The task role grants the actions docs/deployment.md lists, no more, no fewer."""
        blocks = re.findall(
            r"^```json\n(.*?)^```$",
            (DOCS / "deployment.md").read_text(),
            flags=re.DOTALL | re.MULTILINE,
        )
        [listed] = [json.loads(block) for block in blocks if '"states:CreateActivity"' in block]
        task_role = resource("AWS::ECS::TaskDefinition")[1]["TaskRoleArn"]["Fn::GetAtt"][0]
        role = ecs()["Resources"][task_role]["Properties"]
        granted = [
            statement
            for policy in role["Policies"]
            for statement in policy["PolicyDocument"]["Statement"]
        ]
        assert [(each["Effect"], sorted(each["Action"])) for each in granted] == [
            (listed["Effect"], sorted(listed["Action"]))
        ]
