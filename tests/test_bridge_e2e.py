"""The bridge end to end: simulator, bridge, real Kafka, read_committed consumer."""

import asyncio
import json
import logging
import random
from collections.abc import Callable
from pathlib import Path

import jsonschema
import pytest

from bridge.contract import EVENT_SCHEMA_FILE
from bridge.events import OperationEvent, encode_event
from bridge.simulator.runner import run_simulator
from bridge.simulator.settings import FaultSettings, LoadSettings, SimulatorSettings
from bridge.simulator.truth import replay
from tests.bridge_harness import (
    BridgeProcess,
    bridge_config,
    bridge_environment,
    judge,
    read_events,
    running_bridge,
    unique_name,
    wait_for,
)

pytestmark = pytest.mark.kafka

SCHEMA = json.loads(
    (Path(__file__).parent.parent / "schemas" / EVENT_SCHEMA_FILE).read_text()
)
TERMINAL = {"SUCCESS", "FAIL"}


def busy_load(**overrides: object) -> LoadSettings:
    """Many short-lived operations of every type, bursts sharing one timestamp."""
    settings = {
        "rate_per_second": 60.0,
        "mean_queue_seconds": 0.4,
        "mean_run_seconds": 1.5,
        "instant_ratio": 0.2,
        "burst_probability": 0.02,
        "burst_size": 40,
        "odd_precision_ratio": 0.3,
        **overrides,
    }
    return LoadSettings(**settings)  # type: ignore[arg-type]


def all_finished(statuses: dict[str, str]) -> bool:
    return all(status in TERMINAL for status in statuses.values())


async def test_mixed_load_reaches_kafka_exactly_as_it_happened(
    kafka_bootstrap: str,
) -> None:
    """500+ operations of mixed types: every transition once, in order, on time."""
    name = unique_name("e2e")
    settings = SimulatorSettings(seed=11, load=busy_load())
    async with run_simulator(settings) as sim:
        environment = bridge_environment(sim.base_url, kafka_bootstrap, name)
        config = bridge_config(environment)
        async with running_bridge(config):
            assert await wait_for(lambda: _created_at_least(sim, 550), 60)
            sim.engine.set_load(paused=True)
            assert await wait_for(lambda: _settled(sim), 60)
            assert await wait_for(
                lambda: _published_all(kafka_bootstrap, name, sim), 60
            )

        published = await read_events(kafka_bootstrap, f"{name}.events", 3)
        verdict = judge(sim.truth.records, published)

    assert verdict.operations >= 550
    assert verdict.exact, verdict.problems
    assert verdict.published_transitions == verdict.transitions
    kinds = {event.kind for _, event in published}
    assert {"created", "started", "succeeded", "failed"} <= kinds
    for _, event in published:
        jsonschema.validate(json.loads(encode_event(event)), SCHEMA)


async def _created_at_least(sim: object, count: int) -> bool:
    return len(replay(sim.truth.records)) >= count  # type: ignore[attr-defined]


async def _settled(sim: object) -> bool:
    return all_finished(replay(sim.truth.records))  # type: ignore[attr-defined]


async def _published_all(bootstrap: str, name: str, sim: object) -> bool:
    """Distinct transitions: at-least-once repeats must not end the wait early."""
    published = await read_events(bootstrap, f"{name}.events", 3)
    transitions = {e.event_id for _, e in published if e.kind != "progressed"}
    return len(transitions) >= len(sim.truth.records)  # type: ignore[attr-defined]


async def test_kill_9_at_random_moments_loses_and_repeats_nothing(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    """SIGKILL the bridge process repeatedly mid-run; the stream is still exact."""
    rng = random.Random(5)
    name = unique_name("crash")
    settings = SimulatorSettings(seed=23, load=busy_load(rate_per_second=30.0))
    async with run_simulator(settings) as sim:
        environment = bridge_environment(sim.base_url, kafka_bootstrap, name)
        bridge = BridgeProcess(environment, tmp_path / "bridge.log")
        for _ in range(6):
            bridge.start()
            await asyncio.sleep(rng.uniform(1.0, 4.0))
            bridge.kill()

        bridge.start()
        sim.engine.set_load(paused=True)
        assert await wait_for(lambda: _settled(sim), 60)
        assert await wait_for(lambda: _published_all(kafka_bootstrap, name, sim), 90)
        assert bridge.terminate() == 0

        published = await read_events(kafka_bootstrap, f"{name}.events", 3)
        verdict = judge(sim.truth.records, published)

    assert verdict.operations >= 150
    assert verdict.exact, verdict.problems


async def test_api_faults_lose_nothing_and_bad_items_are_skipped(
    kafka_bootstrap: str, caplog: pytest.LogCaptureFixture
) -> None:
    """5xx, 429, slow and malformed answers, junk items, late rows: still exact."""
    faults = FaultSettings(
        server_error_probability=0.08,
        rate_limit_probability=0.04,
        retry_after_seconds=1.0,
        rate_limit_no_header_probability=0.03,
        slow_probability=0.05,
        slow_delay_seconds=0.3,
        malformed_probability=0.05,
        junk_probability=0.3,
        late_visibility_probability=0.1,
        late_visibility_delay_seconds=2.0,
    )
    name = unique_name("faults")
    settings = SimulatorSettings(
        seed=31, load=busy_load(rate_per_second=25.0), faults=faults
    )
    caplog.set_level(logging.WARNING, logger="bridge")
    async with run_simulator(settings) as sim:
        config = bridge_config(bridge_environment(sim.base_url, kafka_bootstrap, name))
        async with running_bridge(config):
            assert await wait_for(lambda: _created_at_least(sim, 200), 60)
            sim.engine.set_load(paused=True)
            assert await wait_for(lambda: _settled(sim), 60)
            assert await wait_for(
                lambda: _published_all(kafka_bootstrap, name, sim), 90
            )

        published = await read_events(kafka_bootstrap, f"{name}.events", 3)
        verdict = judge(sim.truth.records, published)

    assert verdict.exact, verdict.problems
    assert verdict.phantom == 0
    skipped = [r for r in caplog.records if "skipped an invalid operation" in r.msg]
    retried = [r for r in caplog.records if r.name == "bridge.toloka"]
    assert skipped, "junk items were served but none was reported"
    assert retried, "faults were served but no retry was logged"


async def test_api_key_never_reaches_a_log_line_even_at_debug(
    kafka_bootstrap: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Every logger at DEBUG, faults on: the key appears in no record, no event."""
    key = "tb-key-" + "7f3a9c" * 4
    name = unique_name("secret")
    faults = FaultSettings(
        server_error_probability=0.2, malformed_probability=0.1, junk_probability=0.3
    )
    settings = SimulatorSettings(
        seed=3, load=busy_load(rate_per_second=20.0), faults=faults
    )
    caplog.set_level(logging.DEBUG)
    async with run_simulator(settings, token=key) as sim:
        environment = bridge_environment(sim.base_url, kafka_bootstrap, name)
        environment["TOLOKA_BRIDGE_TOLOKA__API_KEY"] = key
        async with running_bridge(bridge_config(environment)):
            assert await wait_for(lambda: _created_at_least(sim, 60), 30)
            assert await wait_for(lambda: _published_some(kafka_bootstrap, name), 30)
        published = await read_events(kafka_bootstrap, f"{name}.events", 3)

    assert len(caplog.records) > 100
    for record in caplog.records:
        assert key not in record.getMessage()
        assert key not in repr(record.args)
        assert key not in (record.exc_text or "")
    for _, event in published:
        assert key.encode() not in encode_event(event)


async def _published_some(bootstrap: str, name: str) -> bool:
    return len(await read_events(bootstrap, f"{name}.events", 3)) > 20


async def test_without_transactions_every_transition_arrives_with_stable_ids(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    """At-least-once mode, killed five times: nothing lost; a repeated id is always
    the same change (a restart must not number a new change after stale state)."""
    rng = random.Random(43)
    name = unique_name("alo")
    settings = SimulatorSettings(seed=41, load=busy_load(rate_per_second=20.0))
    async with run_simulator(settings) as sim:
        environment = bridge_environment(
            sim.base_url,
            kafka_bootstrap,
            name,
            TOLOKA_BRIDGE_KAFKA__TRANSACTIONS="false",
        )
        bridge = BridgeProcess(environment, tmp_path / "bridge.log")
        for _ in range(5):
            bridge.start()
            await asyncio.sleep(rng.uniform(1.5, 3.0))
            bridge.kill()
        bridge.start()
        sim.engine.set_load(paused=True)
        assert await wait_for(lambda: _settled(sim), 60)
        assert await wait_for(lambda: _published_all(kafka_bootstrap, name, sim), 90)
        assert bridge.terminate() == 0

        published = await read_events(kafka_bootstrap, f"{name}.events", 3)
        first_copies = list(
            {e.event_id: (p, e) for p, e in reversed(published)}.values()
        )
        verdict = judge(
            sim.truth.records, sorted(first_copies, key=_position(published))
        )

    assert verdict.exact, verdict.problems
    assert "delivery is at least once" in (tmp_path / "bridge.log").read_text()
    by_id: dict[str, bytes] = {}
    for _, event in published:
        status = (event.previous_status, event.status, event.sequence)
        by_id.setdefault(event.event_id, repr(status).encode())
        assert by_id[event.event_id] == repr(status).encode()


def _position(
    published: list[tuple[int, OperationEvent]],
) -> Callable[[tuple[int, OperationEvent]], int]:
    order = {id(event): index for index, (_, event) in enumerate(published)}
    return lambda item: order[id(item[1])]
