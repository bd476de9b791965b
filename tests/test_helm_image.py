"""The image recipe, replayed without a container engine.

The install steps of helm/image/Dockerfile run in a fresh virtual environment; the
installed command must report the chart's appVersion, hold exactly the pinned
dependencies, write nothing outside /tmp, answer the probes and stop on SIGTERM.
"""

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from bridge import __version__
from tests.helm_harness import (
    ALL_ON,
    CONSTRAINTS,
    DOCKERFILE,
    PROBES,
    REPO,
    Release,
    bridge_environment,
    chart_file,
    check_config,
)

pytestmark = pytest.mark.timeout(900)

# --- the image --------------------------------------------------------------------


def dockerfile_stages() -> list[list[str]]:
    """Instructions per stage, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    stages: list[list[str]] = []
    for line in (line.strip() for line in text.splitlines()):
        if line.startswith("FROM "):
            stages.append([])
        if stages and line and not line.startswith("#"):
            stages[-1].append(" ".join(line.split()))
    return stages


def test_dockerfile_builds_a_wheel_then_installs_it_for_the_chart_user() -> None:
    """Two stages on a pinned slim 3.11 base; the final one runs as the chart's ids."""
    base = re.search(r"^ARG PYTHON_IMAGE=(\S+)$", DOCKERFILE.read_text(), re.M)
    assert base is not None
    assert re.fullmatch(r"python:3\.11\.\d+-slim-\w+", base.group(1))
    build, final = dockerfile_stages()
    assert any("pip wheel" in line for line in build)
    ids = chart_file("values.yaml")["podSecurityContext"]
    assert f"USER {ids['runAsUser']}:{ids['runAsGroup']}" in final
    assert 'ENTRYPOINT ["toloka-bridge"]' in final
    assert f"CMD {json.dumps(Release().container['args'])}" in final
    assert not any(re.search(r"gcc|build-essential|apt-get", line) for line in final)
    assert any("PYTHONDONTWRITEBYTECODE=1" in line for line in final)


def test_dockerignore_lets_in_only_what_the_dockerfile_copies() -> None:
    """The build context is an allow-list: the package, its metadata, constraints."""
    lines = (REPO / ".dockerignore").read_text().splitlines()
    rules = [line for line in lines if line and not line.startswith("#")]
    assert rules[0] == "*"
    allowed = {rule[1:].rstrip("/") for rule in rules if rule.startswith("!")}
    expected = {"pyproject.toml", "README.md", "bridge", "helm/image/constraints.txt"}
    assert allowed == expected


def run_commands(stage: list[str], marker: str) -> list[str]:
    """The shell commands of a stage's RUN instructions that mention `marker`."""
    runs = [line.removeprefix("RUN ") for line in stage if line.startswith("RUN ")]
    commands = [re.sub(r"--mount=\S+ ", "", run) for run in runs]
    return [command for command in commands if marker in command]


@pytest.fixture(scope="session")
def image_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The Dockerfile's own pip commands, run on a copy of the context in a temp dir.

    The image's paths map to the temp dir: /wheels, /constraints.txt and
    VIRTUAL_ENV; its base interpreter is the one running the tests.
    """
    work = tmp_path_factory.mktemp("image")
    source, wheels, venv = work / "src", work / "wheels", work / "venv"
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copytree(REPO / "bridge", source / "bridge", ignore=ignore)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, source / name)

    build, final = dockerfile_stages()
    interpreter_bin = Path(sys.executable).parent
    environment = bridge_environment() | {
        "PIP_DISABLE_PIP_VERSION_CHECK": "1",
        "VIRTUAL_ENV": str(venv),
        "PATH": f"{venv / 'bin'}:{interpreter_bin}:{os.environ['PATH']}",
    }
    replacements = {
        "/usr/local/bin/python": sys.executable,
        "/wheels": str(wheels),
        "/constraints.txt": str(CONSTRAINTS),
    }
    commands = run_commands(build, "pip wheel") + run_commands(final, "pip")
    assert len(commands) == 2, commands
    for command in commands:
        for image_path, local_path in replacements.items():
            command = command.replace(image_path, local_path)
        result = subprocess.run(
            ["bash", "-c", command],
            cwd=source,
            env=environment,
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert result.returncode == 0, f"{command}\n{result.stderr[-3000:]}"
    return venv


def test_installed_image_reports_the_chart_app_version(image_venv: Path) -> None:
    """`toloka-bridge --version` of the install is the chart's appVersion and tag."""
    command = [str(image_venv / "bin" / "toloka-bridge"), "--version"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=60)
    app_version = chart_file("Chart.yaml")["appVersion"]
    assert result.stdout.strip() == __version__ == app_version
    assert chart_file("values.yaml")["image"]["tag"] == app_version


def test_installed_image_has_exactly_the_pinned_dependencies(image_venv: Path) -> None:
    """The venv holds the bridge and constraints.txt's pins, nothing more or less."""
    command = [sys.executable, "-m", "pip", "--python", str(image_venv / "bin/python")]
    command += ["freeze", "--exclude", "toloka-bridge"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=60)
    pins = [line for line in CONSTRAINTS.read_text().splitlines() if "==" in line]
    assert sorted(result.stdout.split()) == sorted(pins)


def test_installed_image_checks_the_rendered_config_without_writing(
    image_venv: Path, tmp_path: Path
) -> None:
    """check-config and every import write neither the install nor HOME."""

    def file_states() -> dict[Path, float]:
        return {path: path.stat().st_mtime for path in image_venv.rglob("*")}

    home = tmp_path / "home"
    home.mkdir()
    before = file_states()
    cli = image_venv / "bin" / "toloka-bridge"
    config_path = Release(ALL_ON).lay_out_pod_files(tmp_path / "pod")
    result = check_config(cli, config_path, home)
    assert result.returncode == 0, result.stderr
    modules = [path.stem for path in (REPO / "bridge").glob("[a-z]*.py")]
    imports = "; ".join(f"import bridge.{name}" for name in modules)
    python = str(image_venv / "bin" / "python")
    environment = bridge_environment() | {"HOME": str(home)}
    subprocess.run([python, "-c", imports], check=True, env=environment, timeout=60)
    assert file_states() == before
    assert list(home.iterdir()) == []


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def wait_for_answer(url: str, process: subprocess.Popen[bytes]) -> httpx.Response:
    for _ in range(300):
        assert process.poll() is None, "the bridge exited before it listened"
        try:
            return httpx.get(url, timeout=2.0)
        except httpx.TransportError:
            time.sleep(0.1)
    raise AssertionError(f"nothing answered on {url}")


def test_installed_bridge_answers_the_probes_and_stops_on_sigterm(
    image_venv: Path, tmp_path: Path
) -> None:
    """The install runs a rendered config: probes answer; SIGTERM ends it with 0."""
    release = Release(
        **{
            "auth.tolokaApiKey": "some-key",
            "config.http.host": "127.0.0.1",
            "config.http.port": free_port(),
            "config.kafka.bootstrapServers[0]": f"127.0.0.1:{free_port()}",
        }
    )
    command = [str(image_venv / "bin" / "toloka-bridge"), *release.container["args"]]
    command[-1] = str(release.lay_out_pod_files(tmp_path))
    log_path = tmp_path / "bridge.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(command, env=bridge_environment(), stderr=log)
    try:
        answers = {}
        for probe in PROBES:
            path = release.container[probe]["httpGet"]["path"]
            url = f"http://127.0.0.1:{release.probe_port(probe)}{path}"
            answers[probe] = wait_for_answer(url, process)
        process.send_signal(signal.SIGTERM)
        exit_code = process.wait(release.pod["terminationGracePeriodSeconds"])
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert answers["startupProbe"].status_code == 200
    assert answers["livenessProbe"].status_code == 200
    assert answers["readinessProbe"].status_code == 503
    assert "Kafka not reachable" in answers["readinessProbe"].json()["reasons"]
    assert exit_code == 0, log_path.read_text()
