"""Rendering the Helm chart and running the CLI the way the chart's Deployment does.

helm and kubeconform come from dev/helm.sh (built once, then cached); a machine that
cannot get them fails the tests that need them, never skips them.
"""

import base64
import functools
import os
import re
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
CHART = REPO / "helm" / "toloka-bridge"
ALL_ON = CHART / "ci" / "all-on-values.yaml"
EXISTING_SECRET = CHART / "ci" / "existing-secret-values.yaml"
DOCKERFILE = REPO / "helm" / "image" / "Dockerfile"
CONSTRAINTS = REPO / "helm" / "image" / "constraints.txt"
DEV_CLI = REPO / ".venv" / "bin" / "toloka-bridge"
SECRET_KEYS = {("toloka", "api_key"), ("kafka", "sasl_password")}
SELECTOR = {"app.kubernetes.io/name", "app.kubernetes.io/instance"}
STANDARD_LABELS = SELECTOR | {
    "app.kubernetes.io/version",
    "app.kubernetes.io/component",
    "app.kubernetes.io/part-of",
    "app.kubernetes.io/managed-by",
    "helm.sh/chart",
}
PROBES = ("startupProbe", "livenessProbe", "readinessProbe")
Manifest = dict[str, Any]


class RenderError(Exception):
    """`helm template` refused the values; the message is helm's."""


@functools.cache
def tools() -> dict[str, str]:
    """Paths printed by dev/helm.sh: helm, kubeconform, kubernetes-schemas."""
    script = REPO / "dev" / "helm.sh"
    result = subprocess.run([script], capture_output=True, text=True, timeout=840)
    if result.returncode != 0:
        pytest.fail(f"dev/helm.sh could not provide helm:\n{result.stderr[-3000:]}")
    return dict(line.split("=", 1) for line in result.stdout.splitlines())


@functools.cache
def chart_file(name: str) -> Any:
    return yaml.safe_load((CHART / name).read_text())


class Release:
    """The parsed output of `helm template toloka CHART -n data`, with lookups."""

    def __init__(self, *values_files: Path, **settings: object) -> None:
        command = [tools()["helm"], "template", "toloka", str(CHART), "-n", "data"]
        for values in values_files:
            command += ["-f", str(values)]
        for key, value in settings.items():
            command += ["--set", f"{key}={value}"]
        result = subprocess.run(command, capture_output=True, text=True, timeout=60)
        if result.returncode != 0:
            raise RenderError(result.stderr)
        documents = yaml.safe_load_all(result.stdout)
        self.manifests: list[Manifest] = [doc for doc in documents if doc]

    @property
    def kinds(self) -> list[str]:
        return sorted(manifest["kind"] for manifest in self.manifests)

    def one(self, kind: str, data_key: str | None = None) -> Manifest:
        found = [
            m
            for m in self.manifests
            if m["kind"] == kind and (data_key is None or data_key in m["data"])
        ]
        assert len(found) == 1, f"expected one {kind} ({data_key}), got {len(found)}"
        return found[0]

    @property
    def pod(self) -> Manifest:
        pod: Manifest = self.one("Deployment")["spec"]["template"]["spec"]
        return pod

    @property
    def container(self) -> Manifest:
        container: Manifest = self.pod["containers"][0]
        return container

    @property
    def config_text(self) -> str:
        text: str = self.one("ConfigMap", "config.toml")["data"]["config.toml"]
        return text

    @property
    def toml(self) -> dict[str, Any]:
        return tomllib.loads(self.config_text)

    def probe_port(self, probe: str) -> int:
        ports = {p["name"]: p["containerPort"] for p in self.container["ports"]}
        port: int = ports[self.container[probe]["httpGet"]["port"]]
        return port

    def lay_out_pod_files(self, root: Path) -> Path:
        """Write what the Deployment mounts under `root`; return the config path.

        Secret items come from the chart's Secret, or are made up for an operator's
        Secret. Paths in the config are moved under `root` as the mounts are.
        """
        volumes = {volume["name"]: volume for volume in self.pod["volumes"]}
        own = {
            m["metadata"]["name"]: m for m in self.manifests if m["kind"] == "Secret"
        }
        mounts = self.container["volumeMounts"]
        for mount in mounts:
            target = root / mount["mountPath"].lstrip("/")
            secret = volumes[mount["name"]].get("secret")
            for item in secret["items"] if secret else []:
                value = f"operator-provided {item['key']}\n".encode()
                if secret["secretName"] in own:
                    data = own[secret["secretName"]]["data"]
                    value = base64.b64decode(data[item["key"]])
                (target / item["path"]).parent.mkdir(parents=True, exist_ok=True)
                (target / item["path"]).write_bytes(value)

        def relocate(match: re.Match[str]) -> str:
            path = match.group(1)
            mounted = any(path.startswith(m["mountPath"] + "/") for m in mounts)
            return f'"{root}{path}"' if mounted else match.group(0)

        text = re.sub(r'"(/[^"]*)"', relocate, self.config_text)
        config_path: Path = root / self.container["args"][2].lstrip("/")
        config_path.parent.mkdir(parents=True, exist_ok=True)
        config_path.write_text(text)
        return config_path


def bridge_environment() -> dict[str, str]:
    """The test's environment without TOLOKA_BRIDGE_* overrides."""
    kept = {k: v for k, v in os.environ.items() if not k.startswith("TOLOKA_BRIDGE_")}
    return kept | {"PYTHONDONTWRITEBYTECODE": "1"}


def check_config(
    cli: Path, config: Path, home: Path | None = None
) -> subprocess.CompletedProcess[str]:
    command = [str(cli), "check-config", "--config", str(config)]
    environment = bridge_environment() | ({"HOME": str(home)} if home else {})
    return subprocess.run(
        command, capture_output=True, text=True, env=environment, timeout=60
    )
