"""The README's consumer example, run as a user would against real published events."""

import asyncio
import os
import sys
from pathlib import Path

import pytest

from bridge.simulator.runner import run_simulator
from bridge.simulator.settings import LoadSettings, SimulatorSettings
from tests.bridge_harness import (
    bridge_config,
    bridge_environment,
    read_events,
    running_bridge,
    unique_name,
    wait_for,
)

pytestmark = pytest.mark.kafka

EXAMPLE = Path(__file__).resolve().parent.parent / "dev" / "consumer_example.py"


async def test_consumer_example_handles_each_finished_operation_once(
    kafka_bootstrap: str,
) -> None:
    """Every SUCCESS/FAIL event is handled exactly once, named by operation id."""
    name = unique_name("example")
    load = LoadSettings(
        rate_per_second=20.0, mean_queue_seconds=0.3, mean_run_seconds=1.0
    )
    async with run_simulator(SimulatorSettings(seed=4, load=load)) as sim:
        config = bridge_config(bridge_environment(sim.base_url, kafka_bootstrap, name))
        async with running_bridge(config):
            assert await wait_for(
                lambda: _finished_published(kafka_bootstrap, name), 60
            )

    events = await read_events(kafka_bootstrap, f"{name}.events", 3)
    finished = {e.operation_id for _, e in events if e.status in ("SUCCESS", "FAIL")}
    lines = await _run_example(kafka_bootstrap, f"{name}.events", len(finished))

    handled = [line.split()[1] for line in lines]
    assert sorted(handled) == sorted(finished)


async def _finished_published(bootstrap: str, name: str) -> bool:
    events = await read_events(bootstrap, f"{name}.events", 3)
    return sum(1 for _, e in events if e.status in ("SUCCESS", "FAIL")) >= 30


async def _run_example(bootstrap: str, topic: str, limit: int) -> list[str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        str(EXAMPLE),
        "--topic",
        topic,
        "--group",
        unique_name("group"),
        "--limit",
        str(limit),
        env={**os.environ, "KAFKA_BOOTSTRAP": bootstrap},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode == 0, stderr.decode()
    return stdout.decode().splitlines()
