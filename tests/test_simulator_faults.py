"""Injected faults of the simulator, each switched on alone, over real HTTP."""

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import msgspec
import pytest

from bridge.simulator import (
    FaultSettings,
    LoadSettings,
    ManualClock,
    Simulator,
    SimulatorSettings,
    replay,
    run_simulator,
)
from bridge.simulator.model import FAIL, RUNNING, SUCCESS
from bridge.simulator.wiretime import parse_wire_time

T0 = parse_wire_time("2024-05-01T12:00:00")


class SleepRecorder:
    """Stands in for asyncio.sleep: records the delays instead of waiting."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)


@pytest.fixture
def sleeps() -> SleepRecorder:
    return SleepRecorder()


@pytest.fixture
async def sim(sleeps: SleepRecorder) -> AsyncIterator[Simulator]:
    settings = SimulatorSettings(seed=9, load=LoadSettings(rate_per_second=0.0))
    async with run_simulator(
        settings, clock=ManualClock(T0), run_engine=False, sleep=sleeps
    ) as running:
        for op_type in ("POOL.OPEN", "TASK.BATCH_CREATE", "ANALYTICS"):
            for op in running.engine.create(op_type, 4):
                running.engine.control_transition(op.id, RUNNING, 10)
                running.engine.control_transition(op.id, SUCCESS, None)
        running.engine.create("POOL.CLOSE", 3)
        yield running


@pytest.fixture
async def client(sim: Simulator) -> AsyncIterator[httpx.AsyncClient]:
    headers = {"Authorization": "ApiKey sim-token"}
    async with httpx.AsyncClient(base_url=sim.base_url, headers=headers) as http:
        yield http


def set_faults(sim: Simulator, **faults: Any) -> None:
    sim.faults.settings = FaultSettings(**faults)


PATHS = ["/v1/operations", "/v1/operations/x", "/v1/operations/x/log"]


@pytest.mark.parametrize("path", PATHS)
async def test_server_errors_use_5xx_codes_and_the_envelope(
    sim: Simulator, client: httpx.AsyncClient, path: str
) -> None:
    """5xx answers are 500/502/503/504 with INTERNAL_ERROR or REMOTE_SERVICE_..."""
    set_faults(sim, server_error_probability=1.0)
    seen = set()
    for _ in range(40):
        response = await client.get(path)
        body = response.json()
        seen.add((response.status_code, body["code"]))
        assert set(body) == {"request_id", "code", "message", "payload"}

    assert {status for status, _ in seen} == {500, 502, 503, 504}
    assert (500, "INTERNAL_ERROR") in seen
    assert (503, "REMOTE_SERVICE_UNAVAILABLE") in seen


async def test_rate_limit_with_retry_after_header(
    sim: Simulator, client: httpx.AsyncClient
) -> None:
    """429 TOO_MANY_REQUESTS carries Retry-After in whole seconds, rounded up."""
    set_faults(sim, rate_limit_probability=1.0, retry_after_seconds=1.5)

    response = await client.get("/v1/operations")

    assert response.status_code == 429
    assert response.headers["Retry-After"] == "2"
    assert response.json()["code"] == "TOO_MANY_REQUESTS"


async def test_rate_limit_without_header(
    sim: Simulator, client: httpx.AsyncClient
) -> None:
    """Another kind of 429 has no Retry-After header and no payload."""
    set_faults(sim, rate_limit_no_header_probability=1.0)

    response = await client.get("/v1/operations")

    assert response.status_code == 429
    assert "Retry-After" not in response.headers
    assert response.json()["payload"] is None


@pytest.mark.parametrize("interval", ["MIN", "HOUR", "DAY"])
async def test_quota_429_names_its_window(
    sim: Simulator, client: httpx.AsyncClient, interval: str
) -> None:
    """A quota 429 says which window is exhausted in payload.interval."""
    set_faults(sim, quota_probability=1.0, quota_interval=interval)

    response = await client.get("/v1/operations/x")

    assert response.status_code == 429
    assert response.json()["payload"] == {"interval": interval}


async def test_slow_answers_wait_before_answering(
    sim: Simulator, client: httpx.AsyncClient, sleeps: SleepRecorder
) -> None:
    """A slow answer awaits the configured delay, then answers normally."""
    set_faults(sim, slow_probability=1.0, slow_delay_seconds=7.5)

    response = await client.get("/v1/operations")

    assert response.status_code == 200
    assert sleeps.delays == [7.5]


async def test_slow_answers_really_stall_a_client_with_a_short_timeout() -> None:
    """With the real sleep, a delay longer than the client's timeout times it out."""
    faults = FaultSettings(slow_probability=1.0, slow_delay_seconds=0.5)
    settings = SimulatorSettings(load=LoadSettings(rate_per_second=0.0), faults=faults)
    headers = {"Authorization": "ApiKey sim-token"}
    async with (
        run_simulator(settings, run_engine=False) as running,
        httpx.AsyncClient(base_url=running.base_url, headers=headers) as http,
    ):
        with pytest.raises(httpx.ReadTimeout):
            await http.get("/v1/operations", timeout=0.05)


@pytest.mark.parametrize("path", ["/v1/operations", "/v1/operations/{id}"])
async def test_malformed_bodies_are_truncated_json(
    sim: Simulator, client: httpx.AsyncClient, path: str
) -> None:
    """A malformed answer is a 200 whose JSON body is cut short."""
    op_id = next(iter(sim.world.index.operations))
    set_faults(sim, malformed_probability=1.0)

    response = await client.get(path.format(id=op_id))

    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("application/json")
    with pytest.raises(json.JSONDecodeError):
        json.loads(response.content)


async def test_junk_items_are_mixed_in_but_are_not_operations(
    sim: Simulator, client: httpx.AsyncClient
) -> None:
    """Junk items appear in pages, are not in the world or truth, and 404 by id."""
    set_faults(sim, junk_probability=1.0, junk_items_per_page=3)
    real_ids = set(sim.world.index.operations)
    truth_ids = {record.operation_id for record in sim.truth.records}
    kinds: set[str] = set()
    for _ in range(20):
        items = (await client.get("/v1/operations", params={"limit": "300"})).json()[
            "items"
        ]
        real = [item for item in items if item.get("id") in real_ids]
        junk = [item for item in items if item.get("id") not in real_ids]
        assert {item["id"] for item in real} == real_ids
        assert items[-1] in real
        assert len(junk) == 3
        kinds.update(junk_kind(item) for item in junk)
        for item in junk:
            assert item.get("id") not in truth_ids
            if "id" in item:
                missing = await client.get(f"/v1/operations/{item['id']}")
                assert missing.status_code == 404

    assert kinds == {"no id", "no type", "bad date", "progress 250", "finished early"}


def junk_kind(item: dict[str, Any]) -> str:
    if "id" not in item:
        return "no id"
    if "type" not in item:
        return "no type"
    if item.get("progress", 0) > 100:
        return "progress 250"
    try:
        submitted = parse_wire_time(item["submitted"])
    except ValueError:
        return "bad date"
    if parse_wire_time(item["finished"]) < submitted:
        return "finished early"
    return "looks real"


async def test_huge_details_on_finished_operations(
    sim: Simulator, client: httpx.AsyncClient
) -> None:
    """Chosen finished ops serve `details` of about the configured size."""
    set_faults(sim, huge_details_probability=1.0, huge_details_bytes=5_000_000)
    finished = next(op for op in sim.world.index.operations.values() if op.finished)
    pending = next(op for op in sim.world.index.operations.values() if not op.finished)

    big = await client.get(f"/v1/operations/{finished.id}")
    small = await client.get(f"/v1/operations/{pending.id}")
    page = await client.get(
        "/v1/operations", params={"limit": "1", "status": "SUCCESS"}
    )

    assert len(big.content) > 5_000_000
    assert len(big.json()["details"]["errors"]) > 1000
    assert len(small.content) < 1000
    assert len(page.content) > 5_000_000
    assert finished.details is None or len(finished.details) < 10_000


async def test_late_rows_show_up_in_search_after_later_rows(
    sim: Simulator, client: httpx.AsyncClient
) -> None:
    """A late op is missing from search while an op submitted after it is listed."""
    while True:
        (early,) = sim.engine.create("POOL.OPEN")
        sim.advance(1.0)
        (later,) = sim.engine.create("POOL.OPEN")
        if early.late_draw < later.late_draw:
            break
    probability = (early.late_draw + later.late_draw) / 2
    set_faults(
        sim, late_visibility_probability=probability, late_visibility_delay_seconds=30
    )

    def listed(page: httpx.Response) -> set[str]:
        return {item["id"] for item in page.json()["items"]}

    now_page = await client.get("/v1/operations", params={"limit": "300"})
    by_id = await client.get(f"/v1/operations/{early.id}")
    sim.advance(31.0)
    later_page = await client.get("/v1/operations", params={"limit": "300"})

    assert later.submitted_us > early.submitted_us
    assert later.id in listed(now_page)
    assert early.id not in listed(now_page)
    assert by_id.status_code == 200
    assert early.id in listed(later_page)


async def test_hidden_rows_vanish_from_search_but_not_from_get(
    sim: Simulator, client: httpx.AsyncClient
) -> None:
    """Hidden ops never appear in search; GET by id still answers."""
    set_faults(sim, hidden_probability=1.0)
    op_id = next(iter(sim.world.index.operations))

    page = (await client.get("/v1/operations")).json()
    single = await client.get(f"/v1/operations/{op_id}")
    set_faults(sim)
    back = (await client.get("/v1/operations", params={"limit": "300"})).json()

    assert page == {"items": [], "has_more": False}
    assert single.status_code == 200
    assert len(back["items"]) == len(sim.world)


async def test_faults_never_touch_the_truth() -> None:
    """Under every fault at once, the truth still replays to the stored statuses."""
    faults = FaultSettings(
        server_error_probability=0.2,
        rate_limit_probability=0.1,
        retry_after_seconds=0.0,
        quota_probability=0.05,
        malformed_probability=0.1,
        junk_probability=0.5,
        huge_details_probability=0.05,
        huge_details_bytes=10_000,
        late_visibility_probability=0.3,
        hidden_probability=0.1,
    )
    load = LoadSettings(
        rate_per_second=30.0, history=100, fail_ratio=0.2, mean_run_seconds=1.0
    )
    settings = SimulatorSettings(seed=4, load=load, faults=faults)
    headers = {"Authorization": "ApiKey sim-token"}
    async with (
        run_simulator(settings, clock=ManualClock(T0), run_engine=False) as running,
        httpx.AsyncClient(base_url=running.base_url, headers=headers) as http,
    ):
        statuses = set()
        for _ in range(60):
            running.advance(0.1)
            statuses.add((await http.get("/v1/operations")).status_code)
        stored = {op.id: op.status for op in running.world.index.operations.values()}
        truth = replay(running.truth.records)

    assert truth == stored
    assert statuses >= {200, 429}
    assert {SUCCESS, FAIL} <= set(stored.values())


async def test_faults_can_be_read_and_replaced_over_the_control_api(
    sim: Simulator,
) -> None:
    """GET/PUT /_sim/faults read and replace the settings; bad keys are refused."""
    async with httpx.AsyncClient(base_url=sim.control_url) as control:
        replaced = await control.put("/faults", json={"server_error_probability": 1.0})
        read = await control.get("/faults")
        refused = await control.put("/faults", json={"server_errors": 1.0})
        out_of_range = await control.put("/faults", json={"hidden_probability": 2})

    assert replaced.json()["server_error_probability"] == 1.0
    assert msgspec.convert(read.json(), FaultSettings) == sim.faults.settings
    assert refused.status_code == 400
    assert "server_errors" in refused.json()["message"]
    assert out_of_range.status_code == 400
    assert sim.faults.settings.server_error_probability == 1.0
