"""Metrics of a running bridge, scraped over HTTP and through a real Prometheus."""

import contextlib
import socket
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from bridge.simulator.runner import Simulator, run_simulator
from bridge.simulator.settings import LoadSettings, SimulatorSettings
from tests.bridge_harness import (
    bridge_config,
    bridge_environment,
    running_bridge,
    unique_name,
    wait_for,
)

pytestmark = pytest.mark.kafka

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def scrape(port: int) -> Samples:
    async with httpx.AsyncClient() as client:
        response = await client.get(f"http://127.0.0.1:{port}/metrics")
    response.raise_for_status()
    samples: Samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


async def ready(port: int) -> bool:
    async with httpx.AsyncClient() as client:
        with contextlib.suppress(httpx.HTTPError):
            return (
                await client.get(f"http://127.0.0.1:{port}/readyz")
            ).status_code == 200
    return False


def play_scenario(sim: Simulator) -> list[str]:
    """7 POOL.OPEN succeed, 3 TASK.BATCH_CREATE fail, 2 POOL.CLOSE stay at 30%."""
    engine = sim.engine
    for op in engine.create("POOL.OPEN", count=7):
        engine.control_transition(op.id, "RUNNING", None)
        engine.control_transition(op.id, "SUCCESS", None)
    for op in engine.create("TASK.BATCH_CREATE", count=3):
        engine.control_transition(op.id, "RUNNING", 40)
        engine.control_transition(op.id, "FAIL", None)
    running = engine.create("POOL.CLOSE", count=2)
    for op in running:
        engine.control_transition(op.id, "RUNNING", 30)
    return [op.id for op in running]


@contextlib.asynccontextmanager
async def quiet_simulator() -> AsyncIterator[Simulator]:
    load = LoadSettings(rate_per_second=0.0, paused=True)
    async with run_simulator(SimulatorSettings(seed=1, load=load)) as sim:
        yield sim


async def test_scraped_numbers_equal_what_happened_also_after_a_restart(
    kafka_bootstrap: str,
) -> None:
    """Counters count the scenario; gauges come back right from the restored state."""
    port = free_port()
    name = unique_name("metrics")
    async with quiet_simulator() as sim:
        environment = bridge_environment(
            sim.base_url, kafka_bootstrap, name, TOLOKA_BRIDGE_HTTP__PORT=str(port)
        )
        config = bridge_config(environment)
        async with running_bridge(config):
            assert await wait_for(lambda: ready(port), 30)
            running = play_scenario(sim)
            assert await wait_for(lambda: _counted(port, "POOL.OPEN", "SUCCESS", 7), 30)
            first = await scrape(port)

        async with running_bridge(config):
            assert await wait_for(lambda: ready(port), 30)
            restarted = await scrape(port)
            for operation_id in running:
                sim.engine.control_transition(operation_id, "SUCCESS", None)
            assert await wait_for(
                lambda: _counted(port, "POOL.CLOSE", "SUCCESS", 2), 30
            )
            finished = await scrape(port)

    transitions = "toloka_operations_transitions_total"
    assert (
        value(first, transitions, operation_type="POOL.OPEN", to_status="SUCCESS") == 7
    )
    assert (
        value(first, transitions, operation_type="TASK.BATCH_CREATE", to_status="FAIL")
        == 3
    )
    assert (
        value(
            first,
            "toloka_operations_failures_total",
            operation_type="TASK.BATCH_CREATE",
        )
        == 3
    )
    assert (
        value(
            first,
            "toloka_operation_duration_seconds_count",
            operation_type="POOL.OPEN",
            outcome="SUCCESS",
        )
        == 7
    )

    unfinished = "toloka_operations_unfinished"
    for samples in (first, restarted):
        assert (
            value(samples, unfinished, operation_type="POOL.CLOSE", status="RUNNING")
            == 2
        )
        for operation_id in running:
            ratio = value(
                samples,
                "toloka_operation_progress_ratio",
                operation_type="POOL.CLOSE",
                operation_id=operation_id,
            )
            assert ratio == pytest.approx(0.3)

    assert (
        value(finished, unfinished, operation_type="POOL.CLOSE", status="RUNNING") == 0
    )
    progress_series = [
        key for key in finished if key[0] == "toloka_operation_progress_ratio"
    ]
    assert progress_series == []


async def _counted(port: int, operation_type: str, status: str, count: int) -> bool:
    samples = await scrape(port)
    name = "toloka_operations_transitions_total"
    return (
        value(samples, name, operation_type=operation_type, to_status=status) == count
    )


@contextlib.contextmanager
def prometheus_server(target_port: int, workdir: Path) -> Iterator[int]:
    """Debian's prometheus on loopback, scraping the bridge every second."""
    port = free_port()
    config = workdir / "prometheus.yml"
    config.write_text(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
        "scrape_configs:\n  - job_name: toloka-bridge\n"
        f"    static_configs:\n      - targets: ['127.0.0.1:{target_port}']\n"
    )
    with (workdir / "prometheus.log").open("wb") as log:
        process = subprocess.Popen(
            [
                "prometheus",
                f"--config.file={config}",
                f"--storage.tsdb.path={workdir / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
            ],
            stdout=subprocess.DEVNULL,
            stderr=log,
        )
    try:
        yield port
    finally:
        process.terminate()
        process.wait(timeout=30)


@pytest.mark.prometheus
async def test_a_real_prometheus_scrapes_the_bridge(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    """A query through Prometheus's HTTP API returns the scenario's series."""
    port = free_port()
    name = unique_name("prom")
    async with quiet_simulator() as sim:
        environment = bridge_environment(
            sim.base_url, kafka_bootstrap, name, TOLOKA_BRIDGE_HTTP__PORT=str(port)
        )
        async with running_bridge(bridge_config(environment)):
            assert await wait_for(lambda: ready(port), 30)
            play_scenario(sim)
            with prometheus_server(port, tmp_path) as prometheus_port:
                query = (
                    'toloka_operations_transitions_total{operation_type="POOL.OPEN",'
                    'to_status="SUCCESS"}'
                )
                found = await wait_for(
                    lambda: _prometheus_says(prometheus_port, query, 7.0), 60, 1.0
                )
                up = await _prometheus_query(prometheus_port, 'up{job="toloka-bridge"}')

    assert found, (tmp_path / "prometheus.log").read_text()[-2000:]
    assert [float(r["value"][1]) for r in up] == [1.0]


async def _prometheus_query(port: int, query: str) -> list[dict[str, Any]]:
    async with httpx.AsyncClient() as client:
        with contextlib.suppress(httpx.HTTPError):
            response = await client.get(
                f"http://127.0.0.1:{port}/api/v1/query", params={"query": query}
            )
            result: list[dict[str, Any]] = response.json()["data"]["result"]
            return result
    return []


async def _prometheus_says(port: int, query: str, expected: float) -> bool:
    result = await _prometheus_query(port, query)
    return [float(r["value"][1]) for r in result] == [expected]
