"""The simulator's Toloka endpoints over real HTTP: search, get, log, auth, errors."""

from collections.abc import AsyncIterator
from functools import partial
from typing import Any

import httpx
import pytest

from bridge.simulator import (
    LoadSettings,
    ManualClock,
    ServerSettings,
    Simulator,
    SimulatorSettings,
    run_simulator,
)
from bridge.simulator.model import FAIL, RUNNING, SUCCESS
from bridge.simulator.wiretime import parse_wire_time

T0 = parse_wire_time("2024-05-01T12:00:00")
TOKEN = "sim-token"
WIRE_FIELDS = {
    "id",
    "type",
    "status",
    "submitted",
    "started",
    "finished",
    "progress",
    "parameters",
    "details",
}


def quiet_settings(**server: Any) -> SimulatorSettings:
    """Settings with no random load, so tests script every operation."""
    return SimulatorSettings(
        seed=3, load=LoadSettings(rate_per_second=0.0), server=ServerSettings(**server)
    )


@pytest.fixture
async def sim() -> AsyncIterator[Simulator]:
    clock = ManualClock(T0)
    async with run_simulator(
        quiet_settings(), clock=clock, run_engine=False
    ) as running:
        yield running


@pytest.fixture
async def client(sim: Simulator) -> AsyncIterator[httpx.AsyncClient]:
    headers = {"Authorization": f"ApiKey {TOKEN}"}
    async with httpx.AsyncClient(base_url=sim.base_url, headers=headers) as http:
        yield http


def populate(sim: Simulator) -> None:
    """A dozen operations of several types in every status, a second apart."""
    engine = sim.engine
    plans = [
        ("POOL.OPEN", [RUNNING, SUCCESS]),
        ("POOL.CLOSE", [FAIL]),
        ("ANALYTICS", [RUNNING]),
        ("TASK.BATCH_CREATE", [RUNNING, SUCCESS]),
        ("POOL.OPEN", []),
        ("USER_BONUS.BATCH_CREATE", [RUNNING, FAIL]),
        ("POOL.CLONE", [RUNNING, SUCCESS]),
        ("ANALYTICS", [RUNNING, SUCCESS]),
        ("NEW.TYPE", []),
        ("TRAINING.CLONE", [RUNNING]),
    ]
    for op_type, steps in plans:
        (op,) = engine.create(op_type)
        sim.advance(1.0)
        for status in steps:
            engine.control_transition(op.id, status, None)
            sim.advance(0.5)
    engine.create("POOL.ARCHIVE", 2)


async def search(client: httpx.AsyncClient, **params: str) -> dict[str, Any]:
    response = await client.get("/v1/operations", params=params)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def everything(client: httpx.AsyncClient) -> list[dict[str, Any]]:
    return list((await search(client, limit="300"))["items"])


def reference(items: list[dict[str, Any]], params: dict[str, str]) -> list[str]:
    """Filter and sort served items by hand, as the real API is documented to."""

    def value(item: dict[str, Any], field: str) -> Any:
        raw = item.get(field)
        return raw if field == "id" or raw is None else parse_wire_time(raw)

    found = []
    for item in items:
        keep = all(
            _bound_holds(value(item, name.rsplit("_", 1)[0]), name, text)
            for name, text in params.items()
            if name.rsplit("_", 1)[-1] in ("lt", "lte", "gt", "gte")
        )
        keep = keep and params.get("type", item["type"]) == item["type"]
        keep = keep and params.get("status", item["status"]) == item["status"]
        if keep:
            found.append(item)

    keys = [
        (k.lstrip("-"), k.startswith("-")) for k in params.get("sort", "id").split(",")
    ]
    if "id" not in [field for field, _ in keys]:
        keys.append(("id", False))
    for field, descending in reversed(keys):
        present = [i for i in found if i.get(field) is not None]
        present.sort(key=partial(value, field=field), reverse=descending)
        found = present + [i for i in found if i.get(field) is None]
    return [item["id"] for item in found]


def _bound_holds(actual: Any, name: str, text: str) -> bool:
    if actual is None:
        return False
    bound = text if name.startswith("id_") else parse_wire_time(text, allow_offset=True)
    suffix = name.rsplit("_", 1)[1]
    holds: dict[str, bool] = {
        "lt": actual < bound,
        "lte": actual <= bound,
        "gt": actual > bound,
        "gte": actual >= bound,
    }
    return holds[suffix]


async def test_search_answers_items_and_has_more_in_the_wire_shape(
    sim: Simulator, client: httpx.AsyncClient
) -> None:
    """Items carry only wire fields, never null; PENDING ops lack started/finished."""
    populate(sim)

    body = await search(client, limit="5")

    assert set(body) == {"items", "has_more"}
    assert body["has_more"] is True
    assert len(body["items"]) == 5
    for item in await everything(client):
        assert set(item) <= WIRE_FIELDS
        assert None not in item.values()
        if item["status"] == "PENDING":
            assert "started" not in item
            assert "finished" not in item


async def test_wire_operation_shapes_follow_the_type(
    sim: Simulator, client: httpx.AsyncClient
) -> None:
    """Parameters and details have the shape toloka-kit expects for each type."""
    populate(sim)
    items = {item["type"]: item for item in await everything(client)}

    assert set(items["POOL.OPEN"]["parameters"]) == {"pool_id"}
    assert set(items["POOL.CLONE"]["details"]) == {"pool_id"}
    assert items["POOL.CLONE"]["progress"] == 100
    assert set(items["TASK.BATCH_CREATE"]["parameters"]) == {
        "skip_invalid_items",
        "allow_defaults",
        "open_pool",
    }
    assert items["TASK.BATCH_CREATE"]["details"]["total_count"] >= 1
    failed_bonus = items["USER_BONUS.BATCH_CREATE"]
    assert failed_bonus["details"]["success_count"] == 0
    assert failed_bonus["parameters"] == {
        "skip_invalid_items": failed_bonus["parameters"]["skip_invalid_items"]
    }
    analytics = [i for i in await everything(client) if i["type"] == "ANALYTICS"]
    done = next(i for i in analytics if i["status"] == "SUCCESS")
    assert [r["request"] for r in done["details"]["value"]] == done["parameters"][
        "value"
    ]
    assert {r["finished"] for r in done["details"]["value"]} == {done["finished"]}
    assert "parameters" not in items["NEW.TYPE"]


FILTER_CASES = [
    {"type": "POOL.OPEN"},
    {"type": "ANALYTICS", "status": "RUNNING"},
    {"status": "PENDING"},
    {"status": "FAIL", "sort": "-finished"},
    {"id_lt": "8"},
    {"id_lte": "8"},
    {"id_gt": "8", "sort": "-id"},
    {"id_gte": "8"},
    {"submitted_lt": "2024-05-01T12:00:05"},
    {"submitted_lte": "2024-05-01T12:00:05.000"},
    {"submitted_gt": "2024-05-01T12:00:05.00000"},
    {"submitted_gte": "2024-05-01T12:00:05.500000", "sort": "submitted"},
    {"finished_lt": "2024-05-01T12:00:10"},
    {"finished_lte": "2024-05-01T12:00:10.5"},
    {"finished_gt": "2024-05-01T12:00:04Z"},
    {"finished_gte": "2024-05-01T14:00:04+02:00"},
    {"sort": "submitted"},
    {"sort": "-submitted"},
    {"sort": "finished"},
    {"sort": "-finished"},
    {"sort": "submitted,id"},
    {"sort": "-submitted,-id"},
    {"sort": "finished,-submitted"},
    {"sort": "-finished,submitted,id"},
]


@pytest.mark.parametrize("params", FILTER_CASES)
async def test_every_filter_and_sort_over_http(
    sim: Simulator, client: httpx.AsyncClient, params: dict[str, str]
) -> None:
    """Each filter and sort returns the served operations a by-hand filter picks."""
    populate(sim)
    items = await everything(client)

    body = await search(client, **params, limit="300")

    assert [item["id"] for item in body["items"]] == reference(items, params)
    assert len(items) > 0


async def test_operations_without_finished_never_match_finished_bounds(
    sim: Simulator, client: httpx.AsyncClient
) -> None:
    """finished_* filters skip unfinished ops; sorting by finished puts them last."""
    populate(sim)

    bounded = await search(client, finished_gte="2000-01-01T00:00:00", limit="300")
    ascending = await search(client, sort="finished", limit="300")
    descending = await search(client, sort="-finished", limit="300")

    assert all("finished" in item for item in bounded["items"])
    for page in (ascending, descending):
        flags = ["finished" in item for item in page["items"]]
        assert flags == sorted(flags, reverse=True)
        assert False in flags


async def test_keyset_paging_by_id_reads_every_operation_once(
    sim: Simulator, client: httpx.AsyncClient
) -> None:
    """The toloka-kit loop (sort=id, id_gt=last while has_more) reads all ops."""
    populate(sim)
    ids: list[str] = []
    params = {"sort": "id", "limit": "3"}
    while True:
        page = await search(client, **params)
        ids.extend(item["id"] for item in page["items"])
        if not page["has_more"]:
            break
        params["id_gt"] = ids[-1]

    assert ids == sorted(op.id for op in sim.world.index.operations.values())


async def test_id_sub_scan_pages_through_more_ops_than_a_page_on_one_timestamp(
    sim: Simulator, client: httpx.AsyncClient
) -> None:
    """350 ops on one `submitted` stall sort=submitted; the id sub-scan pages on."""
    moment = "2024-05-01T11:59:00.000"
    burst = {
        op.id for op in sim.engine.create("TASK.BATCH_CREATE", 350, submitted=moment)
    }
    sim.engine.create("POOL.OPEN", 5)

    stuck = await search(client, sort="submitted,id", submitted_gte=moment, limit="300")
    assert {item["submitted"] for item in stuck["items"]} == {moment}
    assert stuck["has_more"] is True

    seen: list[str] = []
    params = {"submitted_gte": moment, "submitted_lte": moment, "sort": "id"}
    while True:
        cursor = {"id_gt": seen[-1]} if seen else {}
        page = await search(client, **params, **cursor, limit="300")
        seen.extend(item["id"] for item in page["items"])
        if not page["has_more"]:
            break

    assert seen == sorted(burst)


async def test_limit_above_the_maximum_is_a_validation_error(
    client: httpx.AsyncClient,
) -> None:
    """limit=300 is fine; limit=301 gets 400 VALIDATION_ERROR naming `limit`."""
    assert (
        await client.get("/v1/operations", params={"limit": "300"})
    ).status_code == 200

    response = await client.get("/v1/operations", params={"limit": "301"})

    assert response.status_code == 400
    body = response.json()
    assert set(body) == {"request_id", "code", "message", "payload"}
    assert body["code"] == "VALIDATION_ERROR"
    assert body["payload"]["limit"]["code"] == "VALUE_GREATER_THAN_MAX"


async def test_maximum_and_default_limit_are_configurable() -> None:
    """A simulator set to max_limit=500 accepts 500 and defaults to its own limit."""
    settings = quiet_settings(max_limit=500, default_limit=7)
    headers = {"Authorization": f"OAuth {TOKEN}"}
    async with (
        run_simulator(settings, clock=ManualClock(T0), run_engine=False) as running,
        httpx.AsyncClient(base_url=running.base_url, headers=headers) as http,
    ):
        running.engine.create("POOL.OPEN", 20)
        big = await http.get("/v1/operations", params={"limit": "500"})
        default = await http.get("/v1/operations")

    assert big.status_code == 200
    assert len(default.json()["items"]) == 7


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"status": "DONE"}, "status"),
        ({"sort": "started"}, "sort"),
        ({"submitted_gte": "yesterday"}, "submitted_gte"),
        ({"limit": "-1"}, "limit"),
    ],
)
async def test_bad_parameters_get_the_error_envelope(
    client: httpx.AsyncClient, params: dict[str, str], field: str
) -> None:
    """Bad values get 400 VALIDATION_ERROR with the field named in the payload."""
    response = await client.get("/v1/operations", params=params)

    assert response.status_code == 400
    body = response.json()
    assert body["code"] == "VALIDATION_ERROR"
    assert list(body["payload"]) == [field]
    assert body["request_id"]


async def test_get_by_id_and_unknown_ids(
    sim: Simulator, client: httpx.AsyncClient
) -> None:
    """GET by id serves the same object as search; an unknown id is DOES_NOT_EXIST."""
    populate(sim)
    listed = (await everything(client))[0]

    found = await client.get(f"/v1/operations/{listed['id']}")
    missing = await client.get("/v1/operations/000000000000000000000000")

    assert found.json() == listed
    assert missing.status_code == 404
    assert missing.json()["code"] == "DOES_NOT_EXIST"


async def test_log_lists_batch_items_and_is_empty_for_other_types(
    sim: Simulator, client: httpx.AsyncClient
) -> None:
    """A batch create logs one entry per item; others log []; unknown ids 404."""
    populate(sim)
    items = await everything(client)
    batch = next(i for i in items if i["type"] == "TASK.BATCH_CREATE")
    pool_open = next(i for i in items if i["type"] == "POOL.OPEN")

    log = (await client.get(f"/v1/operations/{batch['id']}/log")).json()
    other = await client.get(f"/v1/operations/{pool_open['id']}/log")
    unknown = await client.get("/v1/operations/nope/log")

    details = batch["details"]
    assert len(log) == details["success_count"] + details["not_valid_count"]
    assert {entry["type"] for entry in log} <= {"TASK_CREATE", "TASK_VALIDATE"}
    assert all(set(entry) == {"type", "success", "input", "output"} for entry in log)
    assert other.json() == []
    assert unknown.status_code == 404
    assert unknown.json()["code"] == "DOES_NOT_EXIST"


@pytest.mark.parametrize("scheme", ["ApiKey", "OAuth"])
async def test_both_auth_schemes_are_accepted_by_default(
    sim: Simulator, scheme: str
) -> None:
    """`ApiKey <token>` and `OAuth <token>` both work out of the box."""
    headers = {"Authorization": f"{scheme} {TOKEN}"}
    async with httpx.AsyncClient(base_url=sim.base_url, headers=headers) as http:
        assert (await http.get("/v1/operations")).status_code == 200


@pytest.mark.parametrize(
    "header",
    [None, "Bearer hunter2", "ApiKey hunter2", "OAuth hunter2 x", "hunter2", "OAuth"],
)
async def test_bad_credentials_get_401_without_echoing_them(
    sim: Simulator, header: str | None
) -> None:
    """Missing, wrong-scheme or wrong-token requests get AUTHENTICATION_ERROR."""
    headers = {} if header is None else {"Authorization": header}
    async with httpx.AsyncClient(base_url=sim.base_url, headers=headers) as http:
        for path in ("/v1/operations", "/v1/operations/x", "/v1/operations/x/log"):
            response = await http.get(path)
            assert response.status_code == 401
            assert response.json()["code"] == "AUTHENTICATION_ERROR"
            assert "hunter2" not in response.text


async def test_accepted_schemes_are_configurable() -> None:
    """With only ApiKey configured, an OAuth header is refused."""
    settings = quiet_settings(auth_schemes=["ApiKey"])
    async with run_simulator(settings, token="s3cret", run_engine=False) as running:
        for scheme, status in (("ApiKey", 200), ("OAuth", 401)):
            headers = {"Authorization": f"{scheme} s3cret"}
            async with httpx.AsyncClient(
                base_url=running.base_url, headers=headers
            ) as h:
                assert (await h.get("/v1/operations")).status_code == status


async def test_unknown_api_paths_get_the_envelope(client: httpx.AsyncClient) -> None:
    """Paths the API does not have answer 404 DOES_NOT_EXIST in the envelope."""
    response = await client.get("/v1/pools")

    assert response.status_code == 404
    assert response.json()["code"] == "DOES_NOT_EXIST"


async def test_ids_compare_as_strings_across_hex_and_uuid_ids(
    sim: Simulator, client: httpx.AsyncClient
) -> None:
    """A 24-hex id and a UUID are ordered by plain string comparison."""
    for op_id in ("aaaaaaaaaaaaaaaaaaaaaaaa", "0f1e2d3c-0000-4000-8000-000000000000"):
        sim.engine.create("POOL.OPEN", op_id=op_id)
    sim.engine.create("POOL.OPEN", op_id="5")

    page = await search(client, id_gt="0f1e2d3c-0000-4000-8000-000000000000", sort="id")

    assert [item["id"] for item in page["items"]] == ["5", "aaaaaaaaaaaaaaaaaaaaaaaa"]
