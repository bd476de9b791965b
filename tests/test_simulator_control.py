"""The simulator's control API under /_sim/: create, transition, truth, load, stats."""

from collections.abc import AsyncIterator

import httpx
import pytest

from bridge.simulator import (
    LoadSettings,
    ManualClock,
    Simulator,
    SimulatorSettings,
    run_simulator,
)
from bridge.simulator.wiretime import parse_wire_time

T0 = parse_wire_time("2024-05-01T12:00:00")


@pytest.fixture
async def sim() -> AsyncIterator[Simulator]:
    settings = SimulatorSettings(seed=2, load=LoadSettings(rate_per_second=0.0))
    clock = ManualClock(T0)
    async with run_simulator(settings, clock=clock, run_engine=False) as running:
        yield running


@pytest.fixture
async def control(sim: Simulator) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=sim.control_url) as http:
        yield http


@pytest.fixture
async def api(sim: Simulator) -> AsyncIterator[httpx.AsyncClient]:
    headers = {"Authorization": "OAuth sim-token"}
    async with httpx.AsyncClient(base_url=sim.base_url, headers=headers) as http:
        yield http


async def test_create_operations_with_id_and_shared_timestamp(
    control: httpx.AsyncClient, api: httpx.AsyncClient
) -> None:
    """POST /_sim/operations makes PENDING ops, with a chosen id or shared time."""
    one = await control.post("/operations", json={"type": "POOL.OPEN", "id": "my-op"})
    many = await control.post(
        "/operations",
        json={
            "type": "ANALYTICS",
            "count": 3,
            "submitted": "2024-05-01T11:00:00.12345",
        },
    )

    assert one.status_code == 201
    assert one.json()["operations"][0]["id"] == "my-op"
    assert one.json()["operations"][0]["status"] == "PENDING"
    served = (await api.get("/v1/operations/my-op")).json()
    assert served == one.json()["operations"][0]
    stamps = {op["submitted"] for op in many.json()["operations"]}
    assert stamps == {"2024-05-01T11:00:00.12345"}


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"type": "POOL.OPEN", "id": "dup"}, 409),
        ({"type": "POOL.OPEN", "id": "x", "count": 2}, 400),
        ({"type": "POOL.OPEN", "submitted": "2030-01-01T00:00:00"}, 400),
        ({"type": "POOL.OPEN", "submitted": "soon"}, 400),
        ({"type": "POOL.OPEN", "colour": "red"}, 400),
        ({"count": 2}, 400),
    ],
)
async def test_bad_create_requests_are_refused(
    control: httpx.AsyncClient, body: dict[str, object], status: int
) -> None:
    """Duplicate ids conflict; bad or unknown fields and future times are 400."""
    await control.post("/operations", json={"type": "POOL.OPEN", "id": "dup"})

    response = await control.post("/operations", json=body)

    assert response.status_code == status
    assert response.json()["code"] in {"VALIDATION_ERROR", "CONFLICT_STATE"}


async def test_step_by_step_transitions_are_served_and_recorded(
    sim: Simulator, control: httpx.AsyncClient, api: httpx.AsyncClient
) -> None:
    """PENDING, RUNNING 10, progress 60, SUCCESS: each step is served; truth has 3."""
    await control.post("/operations", json={"type": "TASK.BATCH_CREATE", "id": "t1"})
    sim.advance(1.0)
    running = await control.post(
        "/operations/t1/transition", json={"status": "RUNNING", "progress": 10}
    )
    sim.advance(1.0)
    progressed = await control.post("/operations/t1/transition", json={"progress": 60})
    middle = (await api.get("/v1/operations/t1")).json()
    sim.advance(1.0)
    done = await control.post("/operations/t1/transition", json={"status": "SUCCESS"})
    truth = (await control.get("/truth", params={"operation_id": "t1"})).json()

    assert running.json()["progress"] == 10
    assert progressed.json()["progress"] == 60
    assert middle["status"] == "RUNNING"
    assert middle["progress"] == 60
    final = done.json()
    assert final["progress"] == 100
    assert final["details"]["total_count"] >= 1
    assert [(r["from_status"], r["to_status"]) for r in truth["records"]] == [
        (None, "PENDING"),
        ("PENDING", "RUNNING"),
        ("RUNNING", "SUCCESS"),
    ]
    assert [r["at"] for r in truth["records"]] == [
        final["submitted"],
        final["started"],
        final["finished"],
    ]


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"status": "SUCCESS"}, 409),
        ({"progress": 150}, 400),
        ({}, 400),
        ({"status": 5}, 400),
    ],
)
async def test_impossible_transitions_are_refused(
    control: httpx.AsyncClient, body: dict[str, object], status: int
) -> None:
    """PENDING cannot jump to SUCCESS; progress is 0-100; an empty body is refused."""
    await control.post("/operations", json={"type": "POOL.OPEN", "id": "p"})

    response = await control.post("/operations/p/transition", json=body)

    assert response.status_code == status


async def test_finished_operations_cannot_move_and_unknown_ones_404(
    control: httpx.AsyncClient,
) -> None:
    """A FAIL op is final (409); an unknown id is DOES_NOT_EXIST (404)."""
    await control.post("/operations", json={"type": "POOL.OPEN", "id": "f"})
    await control.post("/operations/f/transition", json={"status": "FAIL"})

    again = await control.post("/operations/f/transition", json={"status": "RUNNING"})
    unknown = await control.post(
        "/operations/zz/transition", json={"status": "RUNNING"}
    )

    assert again.status_code == 409
    assert again.json()["code"] == "CONFLICT_STATE"
    assert unknown.status_code == 404


async def test_unknown_statuses_can_be_set_and_are_served(
    control: httpx.AsyncClient, api: httpx.AsyncClient
) -> None:
    """A status Toloka may add later is served as is and kept non-terminal."""
    await control.post("/operations", json={"type": "POOL.OPEN", "id": "u"})

    await control.post("/operations/u/transition", json={"status": "PAUSED"})
    served = (await api.get("/v1/operations/u")).json()
    resumed = await control.post("/operations/u/transition", json={"status": "RUNNING"})

    assert served["status"] == "PAUSED"
    assert resumed.json()["status"] == "RUNNING"


async def test_scheduled_operations_are_moved_by_the_engine(
    sim: Simulator, control: httpx.AsyncClient
) -> None:
    """scheduled=true hands created ops to the engine's random lifecycle."""
    created = await control.post(
        "/operations", json={"type": "POOL.OPEN", "count": 20, "scheduled": True}
    )
    for _ in range(200):
        sim.advance(1.0)

    ids = [op["id"] for op in created.json()["operations"]]
    statuses = {op_id: sim.world.index.operations[op_id].status for op_id in ids}
    assert set(statuses.values()) <= {"SUCCESS", "FAIL"}


async def test_truth_can_be_paged_by_offset_and_limit(
    control: httpx.AsyncClient,
) -> None:
    """GET /_sim/truth returns records from an offset, up to a limit, with the total."""
    await control.post("/operations", json={"type": "POOL.OPEN", "count": 5})

    page = (await control.get("/truth", params={"offset": "2", "limit": "2"})).json()

    assert page["total"] == 5
    assert page["offset"] == 2
    assert len(page["records"]) == 2


async def test_load_can_be_paused_and_its_rate_changed(
    sim: Simulator, control: httpx.AsyncClient
) -> None:
    """POST /_sim/load changes the load; creation stops while paused."""
    started = await control.post("/load", json={"rate_per_second": 50.0})
    sim.advance(2.0)
    count = len(sim.world)
    paused = await control.post("/load", json={"paused": True})
    sim.advance(2.0)
    state = (await control.get("/load")).json()
    bad = await control.post("/load", json={"rate_per_second": -1})

    assert started.json()["rate_per_second"] == 50.0
    assert count > 20
    assert paused.json()["paused"] is True
    assert len(sim.world) == count
    assert state == {
        "paused": True,
        "transitions_paused": False,
        "rate_per_second": 50.0,
    }
    assert bad.status_code == 400


async def test_stats_count_api_requests_by_endpoint_and_status(
    sim: Simulator, control: httpx.AsyncClient, api: httpx.AsyncClient
) -> None:
    """Stats count each API request; DELETE returns the counts and resets them."""
    await control.post("/operations", json={"type": "POOL.OPEN", "id": "s"})
    await api.get("/v1/operations")
    await api.get("/v1/operations")
    await api.get("/v1/operations/s")
    await api.get("/v1/operations/missing")
    await api.get("/v1/operations/s/log")
    await api.get("/v1/operations", params={"limit": "999"})

    counted = (await control.delete("/stats")).json()
    after = (await control.get("/stats")).json()

    pairs = {(r["endpoint"], r["status"]): r["count"] for r in counted["requests"]}
    assert pairs == {
        ("search", 200): 2,
        ("search", 400): 1,
        ("get", 200): 1,
        ("get", 404): 1,
        ("log", 200): 1,
    }
    assert counted["total_requests"] == 6
    assert counted["operations"] == 1
    assert counted["operations_by_status"] == {"PENDING": 1}
    assert after["total_requests"] == 0
    assert after["requests"] == []
