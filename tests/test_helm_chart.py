"""The Helm chart, checked without a cluster: lint, schemas, and the rendered objects.

Manifests are rendered with `helm template` and parsed; the rendered config.toml goes
to the real `toloka-bridge check-config` with the files the Deployment mounts laid out
in a temporary directory.
"""

import base64
import json
import re
import subprocess
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest
import yaml
from prometheus_client import CollectorRegistry

from bridge.config import Config, HttpSettings, load_config
from bridge.endpoints import Health, serve_endpoints
from tests.helm_harness import (
    ALL_ON,
    CHART,
    DEV_CLI,
    EXISTING_SECRET,
    PROBES,
    SECRET_KEYS,
    STANDARD_LABELS,
    Release,
    RenderError,
    chart_file,
    check_config,
    tools,
)

pytestmark = pytest.mark.timeout(900)

# --- lint, schemas, what is rendered ----------------------------------------------


@pytest.mark.parametrize("values", [[], [ALL_ON], [EXISTING_SECRET]])
def test_helm_lint_strict_passes(values: list[Path]) -> None:
    """`helm lint --strict` accepts the default values and each ci/ values file."""
    command = [tools()["helm"], "lint", "--strict", str(CHART)]
    for path in values:
        command += ["-f", str(path)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("values", [[], [ALL_ON], [EXISTING_SECRET]])
@pytest.mark.parametrize("kubernetes", ["1.25.0", "1.36.0"])
def test_manifests_match_the_kubernetes_schemas(
    values: list[Path], kubernetes: str
) -> None:
    """kubeconform -strict finds every built-in object valid (the CRDs are skipped)."""
    paths = tools()
    folder = "{{ .NormalizedKubernetesVersion }}-local{{ .StrictSuffix }}"
    location = f"{paths['kubernetes-schemas']}/{folder}/"
    location += "{{ .ResourceKind }}{{ .KindSuffix }}.json"
    command = [paths["kubeconform"], "-strict", "-summary", "-schema-location"]
    command += [location, "-kubernetes-version", kubernetes]
    command += ["-skip", "ServiceMonitor,PrometheusRule", "-"]
    manifests = yaml.safe_dump_all(Release(*values).manifests)
    result = subprocess.run(
        command, input=manifests, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Invalid: 0, Errors: 0" in result.stdout


def test_default_values_render_no_optional_object() -> None:
    """By default: the bridge's own objects and the helm test pod, nothing else."""
    expected = ["ConfigMap", "Deployment", "Pod", "Secret", "Service", "ServiceAccount"]
    assert Release().kinds == expected


@pytest.mark.parametrize("values", [[], [ALL_ON]])
def test_every_pod_meets_the_restricted_pod_security_standard(
    values: list[Path],
) -> None:
    """Non-root ids, no privilege escalation, read-only root, no capabilities."""
    release = Release(*values)
    for pod in (release.pod, release.one("Pod")["spec"]):
        context = pod["securityContext"]
        assert context["runAsNonRoot"] is True
        assert min(context["runAsUser"], context["runAsGroup"]) > 0
        assert context["seccompProfile"] == {"type": "RuntimeDefault"}
        assert pod["automountServiceAccountToken"] is False
        assert not any("hostPath" in volume for volume in pod.get("volumes", []))
        for container in pod["containers"]:
            security = container["securityContext"]
            assert security["allowPrivilegeEscalation"] is False
            assert security["readOnlyRootFilesystem"] is True
            assert security["privileged"] is False
            assert security["capabilities"] == {"drop": ["ALL"]}
            for bound in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(container["resources"][bound])


def test_the_only_writable_path_is_an_empty_dir_at_tmp() -> None:
    """/tmp is an emptyDir with a size limit; every other mount is read-only."""
    release = Release(ALL_ON)
    volumes = {volume["name"]: volume for volume in release.pod["volumes"]}
    for mount in release.container["volumeMounts"]:
        if mount["mountPath"] == "/tmp":
            assert volumes[mount["name"]]["emptyDir"] == {"sizeLimit": "32Mi"}
        else:
            assert mount["readOnly"] is True


@pytest.mark.parametrize("values", [[], [ALL_ON]])
def test_probes_use_the_port_the_config_makes_the_bridge_listen_on(
    values: list[Path],
) -> None:
    """Every probe's port is the container port numbered http.port in the TOML."""
    release = Release(*values)
    http = release.toml["http"]
    assert http["host"] == "0.0.0.0"
    assert {release.probe_port(probe) for probe in PROBES} == {http["port"]}
    target_port = release.one("Service")["spec"]["ports"][0]["targetPort"]
    assert target_port == release.container["readinessProbe"]["httpGet"]["port"]


async def test_probe_and_scrape_paths_are_served_by_the_bridge_endpoints() -> None:
    """The chart's paths answer on bridge.endpoints: healthz, metrics, readyz."""
    release = Release(ALL_ON)
    paths = [release.container[probe]["httpGet"]["path"] for probe in PROBES]
    paths.append(release.one("ServiceMonitor")["spec"]["endpoints"][0]["path"])
    settings = HttpSettings(host="127.0.0.1", port=0)
    async with (
        serve_endpoints(settings, CollectorRegistry(), Health()) as endpoints,
        httpx.AsyncClient(base_url=endpoints.base_url) as client,
    ):
        answers = [(await client.get(path)).status_code for path in paths]
    assert paths == ["/healthz", "/healthz", "/readyz", "/metrics"]
    assert answers == [200, 200, 503, 200]


def test_termination_grace_outlasts_the_shutdown_grace() -> None:
    """The kubelet waits longer than the cycle in flight may take; less is refused."""
    for release in (Release(), Release(ALL_ON)):
        grace = release.toml["poll"]["shutdown_grace_seconds"]
        assert release.pod["terminationGracePeriodSeconds"] > grace
    with pytest.raises(RenderError, match=r"must exceed config\.poll\.shutdownGrace"):
        Release(terminationGracePeriodSeconds=20)


def test_a_single_poller_rolls_out_with_recreate() -> None:
    """One replica, Recreate; a second replica is refused by the schema."""
    deployment = Release().one("Deployment")
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}
    with pytest.raises(RenderError, match="replicaCount"):
        Release(replicaCount=2)


# --- labels, checksums, secrets ---------------------------------------------------


def test_every_object_carries_the_standard_labels() -> None:
    """app.kubernetes.io/* and helm.sh/chart everywhere (the test pod lacks `name`)."""
    chart = chart_file("Chart.yaml")
    for manifest in Release(ALL_ON).manifests:
        labels = manifest["metadata"]["labels"]
        is_test_pod = manifest["kind"] == "Pod"
        expected = STANDARD_LABELS - (
            {"app.kubernetes.io/name"} if is_test_pod else set()
        )
        assert expected <= set(labels), manifest["kind"]
        assert labels["helm.sh/chart"] == f"toloka-bridge-{chart['version']}"
        assert labels["app.kubernetes.io/version"] == chart["appVersion"]


def test_selectors_use_only_name_and_instance() -> None:
    """Deployment, Service, monitor, budget and policy select by name and instance."""
    release = Release(ALL_ON)
    selector = {
        "app.kubernetes.io/name": "bridge",
        "app.kubernetes.io/instance": "toloka",
    }
    deployment = release.one("Deployment")
    assert deployment["spec"]["selector"]["matchLabels"] == selector
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert selector.items() <= pod_labels.items()
    assert release.one("Service")["spec"]["selector"] == selector
    for kind in ("ServiceMonitor", "PodDisruptionBudget"):
        assert release.one(kind)["spec"]["selector"]["matchLabels"] == selector
    policy = release.one("NetworkPolicy")
    assert policy["spec"]["podSelector"]["matchLabels"] == selector
    test_pod_labels = release.one("Pod")["metadata"]["labels"]
    assert not selector.items() <= test_pod_labels.items()


def test_checksums_change_when_the_config_or_the_secret_changes() -> None:
    """A config change rolls the pod by checksum/config, a key by checksum/secret."""

    def annotations(**settings: object) -> dict[str, str]:
        template = Release(**settings).one("Deployment")["spec"]["template"]
        return dict(template["metadata"]["annotations"])

    base = annotations(**{"auth.tolokaApiKey": "key-one"})
    config_changed = annotations(
        **{"auth.tolokaApiKey": "key-one", "config.poll.intervalSeconds": 7}
    )
    key_changed = annotations(**{"auth.tolokaApiKey": "key-two"})
    assert config_changed["checksum/config"] != base["checksum/config"]
    assert config_changed["checksum/secret"] == base["checksum/secret"]
    assert key_changed["checksum/secret"] != base["checksum/secret"]
    assert key_changed["checksum/config"] == base["checksum/config"]


def test_secrets_reach_only_the_secret() -> None:
    """Key and password are in the Secret; no ConfigMap, env or annotation has them."""
    key, password = "tk-4f1d9c-secret", "pw-8e2b7a-secret"
    settings = {"auth.tolokaApiKey": key, "auth.kafkaSaslPassword": password}
    release = Release(ALL_ON, **settings)
    for manifest in release.manifests:
        if manifest["kind"] == "Secret":
            values = manifest["data"].values()
            assert {base64.b64decode(v).decode() for v in values} == {key, password}
        else:
            assert key not in json.dumps(manifest), manifest["kind"]
            assert password not in json.dumps(manifest), manifest["kind"]
    rendered = {
        (section, name) for section, table in release.toml.items() for name in table
    }
    assert not rendered & SECRET_KEYS


def test_an_existing_secret_replaces_the_chart_secret() -> None:
    """With auth.existingSecret the chart makes no Secret and mounts the named one."""
    release = Release(EXISTING_SECRET)
    assert "Secret" not in release.kinds
    volumes = release.pod["volumes"]
    assert {v["secret"]["secretName"] for v in volumes if "secret" in v} == {
        "toloka-bridge-credentials"
    }
    with pytest.raises(RenderError, match=r"leave auth\.tolokaApiKey"):
        Release(EXISTING_SECRET, **{"auth.tolokaApiKey": "also-a-key"})


# --- the rendered config ----------------------------------------------------------


def test_every_rendered_key_is_a_bridge_setting() -> None:
    """All-on renders every setting of bridge/config.py except the two secrets."""
    sections = {f.name: f.type for f in msgspec.structs.fields(Config)}
    known = {
        (section, field.name)
        for section, settings in sections.items()
        for field in msgspec.structs.fields(settings)
    }
    toml = Release(ALL_ON).toml
    rendered = {(section, key) for section, table in toml.items() for key in table}
    assert rendered <= known
    assert known - rendered == SECRET_KEYS


@pytest.mark.parametrize("values", [ALL_ON, EXISTING_SECRET])
def test_check_config_accepts_the_rendered_config(values: Path, tmp_path: Path) -> None:
    """The real CLI accepts config.toml with the files the Deployment mounts."""
    release = Release(values)
    result = check_config(DEV_CLI, release.lay_out_pod_files(tmp_path))
    assert result.returncode == 0, result.stderr
    effective = json.loads(result.stdout)
    assert effective["http"]["port"] == release.probe_port("readinessProbe")
    assert effective["toloka"]["api_key"] == "<redacted>"
    assert effective["kafka"]["sasl_password"] == "<redacted>"


def test_default_values_without_a_key_fail_at_start_with_a_clear_error(
    tmp_path: Path,
) -> None:
    """No key given: the bridge exits 2 naming toloka.api_key_file (NOTES warns too)."""
    result = check_config(DEV_CLI, Release().lay_out_pod_files(tmp_path))
    assert result.returncode == 2
    assert "toloka.api_key_file" in result.stderr
    assert "the file is empty" in result.stderr


def test_chart_defaults_equal_the_bridge_defaults_but_for_kubernetes_needs(
    tmp_path: Path,
) -> None:
    """Only the listen address, log format, brokers and transactional id differ."""
    release = Release(**{"auth.tolokaApiKey": "some-key"})
    config = load_config(release.lay_out_pod_files(tmp_path), environ={})
    chart = msgspec.to_builtins(config, enc_hook=repr)
    bridge = msgspec.to_builtins(Config(), enc_hook=repr)
    differences = {
        (section, key)
        for section, table in chart.items()
        for key, value in table.items()
        if bridge[section][key] != value
    }
    assert differences == {
        ("toloka", "api_key"),
        ("toloka", "api_key_file"),
        ("kafka", "bootstrap_servers"),
        ("kafka", "transactional_id"),
        ("http", "host"),
        ("log", "format"),
    }
    assert chart["kafka"]["transactional_id"] == "data.toloka-toloka-bridge"


# --- the schema and the README ----------------------------------------------------


@pytest.mark.parametrize(
    ("values", "complaint"),
    [
        ({"config": {"poll": {"intervalSecond": 5}}}, "'intervalSecond' not allowed"),
        ({"replicaCont": 1}, "'replicaCont' not allowed"),
        ({"serviceMonitor": {"lables": {}}}, "'lables' not allowed"),
        ({"networkPolicy": {"metricsFrom": [{"podSelectr": {}}]}}, "'podSelectr'"),
        ({"config": {"http": {"port": "9464"}}}, "got string, want integer"),
        ({"config": {"kafka": {"bootstrapServers": "kafka:9092"}}}, "want array"),
        ({"config": {"poll": {"progressEvents": "yes"}}}, "want boolean"),
        ({"image": {"tag": "latest"}}, "/image/tag"),
        ({"config": {"kafka": {"securityProtocol": "SASL_SSL"}}}, "saslMechanism"),
    ],
)
def test_the_schema_rejects_typos_and_wrong_types(
    values: dict[str, Any], complaint: str, tmp_path: Path
) -> None:
    """A misspelt key or a value of the wrong type stops helm before rendering."""
    values_file = tmp_path / "values.yaml"
    values_file.write_text(yaml.safe_dump(values))
    with pytest.raises(RenderError, match="don't meet the specifications") as error:
        Release(values_file)
    assert complaint in str(error.value)


@pytest.mark.parametrize(
    "path", sorted((CHART / "ci" / "invalid").glob("*-values.yaml")), ids=str
)
def test_the_invalid_ci_values_files_are_rejected(path: Path) -> None:
    """The files `dev/helm.sh lint` expects to fail do fail, on the schema."""
    with pytest.raises(RenderError, match="don't meet the specifications"):
        Release(path)


def value_paths(values: dict[str, Any], prefix: str = "") -> set[str]:
    """Dotted paths in values.yaml: leaves, maps empty by default, resource maps."""
    paths = set()
    for key, value in values.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and value and key not in ("requests", "limits"):
            paths |= value_paths(value, f"{path}.")
        else:
            paths.add(path)
    return paths


def test_every_value_is_in_the_schema_and_in_the_readme_table() -> None:
    """values.yaml, values.schema.json and the README table name the same values."""
    paths = value_paths(chart_file("values.yaml"))
    schema = json.loads((CHART / "values.schema.json").read_text())
    definitions = schema["definitions"]

    def resolve(node: dict[str, Any]) -> dict[str, Any]:
        if "allOf" in node:
            return resolve(node["allOf"][0])
        if "$ref" in node:
            return resolve(definitions[node["$ref"].rsplit("/", 1)[1]])
        return node

    for path in paths:
        node = schema
        for part in path.split("."):
            node = resolve(node)
            assert part in node["properties"], f"{path} is not in the schema"
            node = node["properties"][part]
    readme = (CHART / "README.md").read_text()
    documented = set(re.findall(r"^\| `([^`]+)` \|", readme, re.MULTILINE))
    assert documented == paths


# --- optional objects -------------------------------------------------------------


def test_service_monitor_only_when_enabled_with_its_labels() -> None:
    """The ServiceMonitor scrapes the metrics port and carries the extra labels."""
    assert "ServiceMonitor" not in Release().kinds
    release = Release(
        **{"serviceMonitor.enabled": "true", "serviceMonitor.labels.release": "kps"}
    )
    monitor = release.one("ServiceMonitor")
    assert monitor["metadata"]["labels"]["release"] == "kps"
    assert monitor["spec"]["endpoints"][0]["port"] == "metrics"
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": ["data"]}
    assert "PrometheusRule" not in release.kinds


def test_prometheus_rule_only_when_enabled_carrying_the_alerts_file() -> None:
    """The groups are files/alerts.yaml's, Prometheus templates intact, labels added."""
    assert "PrometheusRule" not in Release().kinds
    rule = Release(ALL_ON).one("PrometheusRule")
    assert rule["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    groups = yaml.safe_load((CHART / "files" / "alerts.yaml").read_text())["groups"]
    for alert in (alert for group in groups for alert in group["rules"]):
        alert["labels"] = {"team": "data-platform"} | alert.get("labels", {})
        if alert["alert"] == "TolokaBridgeDown":
            own = 'job="toloka-bridge-all-on", namespace="data"'
            alert["expr"] = f"absent(toloka_bridge_build_info{{{own}}})"
    assert rule["spec"]["groups"] == groups
    assert "{{ $labels.instance }}" in json.dumps(rule)


def test_bridge_down_alert_watches_only_this_release() -> None:
    """absent() over every bridge stays silent while any one lives; the chart narrows
    it to the release's own series, or to the matchers given."""
    service = Release(ALL_ON).one("Service")["metadata"]["name"]
    default = _alert(Release(ALL_ON), "TolokaBridgeDown")
    custom = _alert(
        Release(ALL_ON, **{"prometheusRule.downSelector": 'app="bridge-eu"'}),
        "TolokaBridgeDown",
    )

    assert default["expr"] == (
        f'absent(toloka_bridge_build_info{{job="{service}", namespace="data"}})'
    )
    assert custom["expr"] == 'absent(toloka_bridge_build_info{app="bridge-eu"})'


def _alert(release: Release, name: str) -> dict[str, Any]:
    rules = release.one("PrometheusRule")["spec"]["groups"][0]["rules"]
    found: dict[str, Any] = next(rule for rule in rules if rule["alert"] == name)
    return found


def test_dashboard_config_map_only_when_enabled_with_the_sidecar_label() -> None:
    """Label grafana_dashboard=1 by default, the JSON as shipped, folder optional."""
    assert Release().kinds.count("ConfigMap") == 1
    dashboard = Release(**{"grafanaDashboard.enabled": "true"}).one(
        "ConfigMap", "toloka-bridge.json"
    )
    assert dashboard["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert "annotations" not in dashboard["metadata"]
    shipped = json.loads((CHART / "files" / "dashboard.json").read_text())
    assert json.loads(dashboard["data"]["toloka-bridge.json"]) == shipped
    settings = {"label": "dashboards", "labelValue": "toloka", "folder": "Data"}
    custom = Release(
        **{"grafanaDashboard.enabled": "true"},
        **{f"grafanaDashboard.{key}": value for key, value in settings.items()},
    ).one("ConfigMap", "toloka-bridge.json")
    assert custom["metadata"]["labels"]["dashboards"] == "toloka"
    assert custom["metadata"]["annotations"] == {"grafana_folder": "Data"}


def test_network_policy_opens_the_metrics_kafka_toloka_and_dns_ports() -> None:
    """Egress to Kafka, Toloka and DNS ports; ingress to metrics, test pod included."""
    assert "NetworkPolicy" not in Release().kinds
    spec = Release(ALL_ON).one("NetworkPolicy")["spec"]
    ports = [sorted(p["port"] for p in rule["ports"]) for rule in spec["egress"]]
    assert ports == [[53, 53], [9093, 9094, 9095], [443], [3128]]
    assert spec["ingress"][0]["ports"] == [{"port": "metrics", "protocol": "TCP"}]
    test_pod_labels = Release(ALL_ON).one("Pod")["metadata"]["labels"]
    assert any(
        peer.keys() == {"podSelector"}
        and peer["podSelector"]["matchLabels"].items() <= test_pod_labels.items()
        for peer in spec["ingress"][0]["from"]
    )


def test_pod_disruption_budget_only_when_enabled() -> None:
    """Off by default (one replica); when on it never blocks a drain."""
    assert "PodDisruptionBudget" not in Release().kinds
    budget = Release(ALL_ON).one("PodDisruptionBudget")
    assert budget["spec"]["maxUnavailable"] == 1
