"""Starting the simulator and bridges as child processes, and talking to them.

`start_simulator` writes a settings TOML for `python -m bridge.simulator`, waits for
the base URL it prints and returns a `SimulatorHandle` whose control client reads the
request counts (`/_sim/stats`) and the ground truth (`/_sim/truth`).
`start_bridge` runs `python -m bridge run` configured only by `TOLOKA_BRIDGE_*`
variables, on its own topics, with its metrics on a port of its own;
`BridgeHandle.metrics()` scrapes and parses them.
"""

import asyncio
import sys
import time
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import httpx
import msgspec
from prometheus_client.parser import text_string_to_metric_families

from bench.procs import API_KEY, HOST, Child, Children, free_port, python_module
from bridge.config import PollSettings
from bridge.simulator.truth import TruthRecord

SIMULATOR_START_SECONDS = 300.0
BRIDGE_START_SECONDS = 120.0


class SimulatorLoad(msgspec.Struct, kw_only=True):
    """The `[load]` settings a scenario varies; the rest keep their defaults."""

    rate_per_second: float = 0.0
    history: int = 0
    running: int = 0
    mean_queue_seconds: float = 2.0
    mean_run_seconds: float = 10.0
    instant_ratio: float = 0.1
    fail_unstarted_ratio: float = 0.02
    history_window_seconds: float = 3600.0


class TruthPage(msgspec.Struct):
    records: list[TruthRecord]
    total: int
    offset: int


class RequestCount(msgspec.Struct):
    endpoint: str
    status: int
    count: int


class SimulatorStats(msgspec.Struct):
    requests: list[RequestCount]
    total_requests: int
    operations: int
    operations_by_status: dict[str, int]
    truth_records: int


class SimulatorHandle:
    """A running simulator process and a client for its control API."""

    def __init__(self, child: Child, base_url: str) -> None:
        self.child = child
        self.base_url = base_url
        self.root_url = base_url.removesuffix("/api")
        self.http = httpx.AsyncClient(base_url=self.root_url, timeout=120.0)

    async def stats(self, reset: bool = False) -> SimulatorStats:
        method = "DELETE" if reset else "GET"
        response = await self.http.request(method, "/_sim/stats")
        response.raise_for_status()
        return msgspec.json.decode(response.content, type=SimulatorStats)

    async def truth(self, offset: int = 0) -> list[TruthRecord]:
        """Every truth record from `offset` on, read in pages."""
        records: list[TruthRecord] = []
        while True:
            params = {"offset": str(offset + len(records)), "limit": "50000"}
            response = await self.http.get("/_sim/truth", params=params)
            response.raise_for_status()
            page = msgspec.json.decode(response.content, type=TruthPage)
            records.extend(page.records)
            if not page.records or offset + len(records) >= page.total:
                return records

    async def set_load(self, **change: Any) -> None:
        response = await self.http.post("/_sim/load", json=change)
        response.raise_for_status()

    async def close(self) -> None:
        await self.http.aclose()


async def start_simulator(
    children: Children, name: str, load: SimulatorLoad, seed: int = 1
) -> SimulatorHandle:
    """Write the settings, start the simulator and wait for its base URL."""
    settings_path = children.log_dir / f"{name}.toml"
    settings_path.write_text(_simulator_toml(load, seed), encoding="utf-8")
    argv = python_module(
        "bridge.simulator", "--config", str(settings_path), "--port", "0"
    )
    environment = {"TOLOKA_BRIDGE_SIMULATOR_TOKEN": API_KEY}
    child = children.start(name, argv, environment, capture_stdout=True)
    line = await asyncio.to_thread(child.read_line, SIMULATOR_START_SECONDS)
    if not line.startswith("http://"):
        raise RuntimeError(f"simulator printed {line!r} instead of its URL")
    return SimulatorHandle(child, line.strip())


def _simulator_toml(load: SimulatorLoad, seed: int) -> str:
    lines = [f"seed = {seed}", "[server]", f'host = "{HOST}"', "[load]"]
    for field in msgspec.structs.fields(SimulatorLoad):
        lines.append(f"{field.name} = {getattr(load, field.name)!r}")
    return "\n".join(lines) + "\n"


class MetricSample(msgspec.Struct, frozen=True):
    name: str
    labels: dict[str, str]
    value: float


class BridgeHandle:
    """A running bridge process, its topics and its metrics endpoint."""

    def __init__(self, child: Child, name: str, metrics_port: int, env: dict[str, str]):
        self.child = child
        self.name = name
        self.metrics_url = f"http://{HOST}:{metrics_port}/metrics"
        self.health_url = f"http://{HOST}:{metrics_port}/healthz"
        self.events_topic = env["TOLOKA_BRIDGE_KAFKA__EVENTS_TOPIC"]
        self.partitions = int(env["TOLOKA_BRIDGE_KAFKA__EVENTS_PARTITIONS"])
        self.environment = env
        default_interval = str(PollSettings().interval_seconds)
        interval = env.get("TOLOKA_BRIDGE_POLL__INTERVAL_SECONDS", default_interval)
        self.interval_seconds = float(interval)
        self.http = httpx.AsyncClient(timeout=60.0)

    async def metrics(self) -> list[MetricSample]:
        response = await self.http.get(self.metrics_url)
        response.raise_for_status()
        return parse_metrics(response.text)

    async def value(self, name: str, **labels: str) -> float:
        """The sum of the samples named `name` whose labels include `labels`."""
        return metric_sum(await self.metrics(), name, **labels)

    async def wait_ready(self, timeout_seconds: float = BRIDGE_START_SECONDS) -> None:
        """Wait until /metrics answers and a poll cycle succeeded."""
        deadline = time.monotonic() + timeout_seconds
        while time.monotonic() < deadline:
            if not self.child.alive():
                raise RuntimeError(
                    f"bridge {self.name} exited; see {self.child.log_path}"
                )
            try:
                if await self.value("toloka_bridge_polls_total", outcome="success"):
                    return
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.2)
        raise RuntimeError(f"bridge {self.name} did not complete a poll in time")

    async def close(self) -> None:
        await self.http.aclose()


def bridge_environment(
    base_url: str, bootstrap: str, name: str, metrics_port: int, **overrides: str
) -> dict[str, str]:
    """TOLOKA_BRIDGE_* for a bridge on fresh topics; the bridge's defaults otherwise."""
    settings = {
        "TOLOKA_BRIDGE_TOLOKA__BASE_URL": base_url,
        "TOLOKA_BRIDGE_TOLOKA__API_KEY": API_KEY,
        "TOLOKA_BRIDGE_TOLOKA__ENVIRONMENT": "bench",
        "TOLOKA_BRIDGE_TOLOKA__ACCOUNT": name,
        "TOLOKA_BRIDGE_KAFKA__BOOTSTRAP_SERVERS": bootstrap,
        "TOLOKA_BRIDGE_KAFKA__EVENTS_TOPIC": f"{name}.events",
        "TOLOKA_BRIDGE_KAFKA__STATE_TOPIC": f"{name}.state",
        "TOLOKA_BRIDGE_KAFKA__TRANSACTIONAL_ID": f"{name}.bridge",
        "TOLOKA_BRIDGE_KAFKA__EVENTS_PARTITIONS": "6",
        "TOLOKA_BRIDGE_KAFKA__REPLICATION_FACTOR": "1",
        "TOLOKA_BRIDGE_KAFKA__MIN_INSYNC_REPLICAS": "1",
        "TOLOKA_BRIDGE_HTTP__HOST": HOST,
        "TOLOKA_BRIDGE_HTTP__PORT": str(metrics_port),
        "TOLOKA_BRIDGE_LOG__FORMAT": "plain",
    }
    settings.update(overrides)
    return settings


class BridgeSpec(msgspec.Struct, frozen=True):
    """A bridge not started yet: its name (topics derive from it), port and env."""

    label: str
    name: str
    metrics_port: int
    environment: dict[str, str]

    @property
    def events_topic(self) -> str:
        return self.environment["TOLOKA_BRIDGE_KAFKA__EVENTS_TOPIC"]

    @property
    def partitions(self) -> int:
        return int(self.environment["TOLOKA_BRIDGE_KAFKA__EVENTS_PARTITIONS"])


def bridge_spec(
    label: str,
    base_url: str,
    bootstrap: str,
    overrides: Mapping[str, str] | None = None,
) -> BridgeSpec:
    name = f"bench-{label}-{uuid.uuid4().hex[:6]}"
    port = free_port()
    env = bridge_environment(base_url, bootstrap, name, port, **(overrides or {}))
    return BridgeSpec(label, name, port, env)


def start_bridge(
    children: Children, spec: BridgeSpec, wrapper: list[str] | None = None
) -> BridgeHandle:
    """Start `python -m bridge run` (optionally under `wrapper`, e.g. a profiler)."""
    argv = [*(wrapper or [sys.executable]), "-m", "bridge", "run"]
    child = children.start(f"bridge-{spec.label}", argv, spec.environment)
    return BridgeHandle(child, spec.name, spec.metrics_port, spec.environment)


def parse_metrics(text: str) -> list[MetricSample]:
    samples = []
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples.append(MetricSample(sample.name, dict(sample.labels), sample.value))
    return samples


def metric_sum(samples: list[MetricSample], name: str, **labels: str) -> float:
    return sum(
        sample.value
        for sample in samples
        if sample.name == name
        and all(sample.labels.get(key) == value for key, value in labels.items())
    )


def sim_request_count(stats: SimulatorStats) -> int:
    """API requests answered with any status (the simulator counts every attempt)."""
    return sum(item.count for item in stats.requests)


def metric_count(samples: list[MetricSample], name: str) -> int:
    return sum(1 for sample in samples if sample.name == name)


def write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
