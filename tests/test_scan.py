"""Tests of the paging scans against an in-memory fake of the operations search."""

import asyncio
import functools
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import msgspec
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from bridge.config import Secret, TolokaSettings
from bridge.errors import ResponseError
from bridge.operation import (
    DecodedPage,
    ItemRules,
    decode_page,
    format_wire_datetime,
    parse_wire_datetime,
)
from bridge.scan import (
    EPOCH,
    TimeCursor,
    TimeField,
    advance_time,
    first_time_cursor,
    fresh_observations,
    scan_by_status,
    scan_by_time,
    time_query,
)
from bridge.toloka import SearchQuery, TolokaClient

NOW = datetime(2030, 1, 1, tzinfo=UTC)
BASE = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
TERMINAL = ("SUCCESS", "FAIL")
JUNK_KINDS = ("missing_type", "bad_progress", "bad_time", "no_id", "not_object")
JUNK_WITHOUT_ID = ("no_id", "not_object")


@dataclass(frozen=True)
class FakeOperation:
    """One row of the fake's table; `junk` names how its JSON is broken."""

    id: str
    submitted: datetime
    status: str = "RUNNING"
    finished: datetime | None = None
    junk: str | None = None

    def value(self, name: str) -> Any:
        return getattr(self, name)


@dataclass
class FakeApi:
    """The search endpoint as documented: filters, multi-key sort, limit, has_more."""

    operations: list[FakeOperation]
    queries: list[dict[str, str]] = field(default_factory=list)
    stuck_pages: int = 0
    junk_pages: int = 0
    after_request: Callable[["FakeApi"], None] | None = None

    def handle(self, request: httpx.Request) -> httpx.Response:
        params = dict(request.url.params)
        self.queries.append(params)
        if len(self.queries) > 3 * len(self.operations) + 5:
            raise AssertionError(f"the scan does not end: {params}")
        matching = [op for op in self.operations if _matches(op, params)]
        for key in reversed(params["sort"].split(",")):
            _sort(matching, key)

        limit = int(params["limit"])
        page, has_more = matching[:limit], len(matching) > limit
        if has_more and all(op.junk for op in page):
            if _pageable(page[-1], params):
                self.junk_pages += 1
            else:
                self.stuck_pages += 1
        if self.after_request is not None:
            self.after_request(self)
        body = {"items": [_render(op) for op in page], "has_more": has_more}
        return httpx.Response(200, content=msgspec.json.encode(body))


def _pageable(op: FakeOperation, params: dict[str, str]) -> bool:
    """Whether a scan can page past `op` though it is junk: it needs the id, and in a
    scan sorted by time first, a readable timestamp."""
    if op.junk in JUNK_WITHOUT_ID:
        return False
    return not (params["sort"].startswith("submitted") and op.junk == "bad_time")


def _matches(op: FakeOperation, params: dict[str, str]) -> bool:
    """Every filter holds; `sort` and `limit` are not filters."""
    for name, wanted in params.items():
        key, _, relation = name.rpartition("_")
        if name in ("status", "type"):
            holds = op.value(name) == wanted
        elif key in ("id", "submitted", "finished"):
            holds = _compare(op.value(key), relation, wanted)
        else:
            holds = name in ("sort", "limit")
        if not holds:
            return False
    return True


def _compare(value: Any, relation: str, wanted: str) -> bool:
    if value is None:
        return False
    bound = parse_wire_datetime(wanted) if isinstance(value, datetime) else wanted
    outcomes: dict[str, bool] = {
        "gt": value > bound,
        "gte": value >= bound,
        "lt": value < bound,
        "lte": value <= bound,
    }
    return outcomes[relation]


def _sort(rows: list[FakeOperation], key: str) -> None:
    name = key.lstrip("-")
    present = [row for row in rows if row.value(name) is not None]
    absent = [row for row in rows if row.value(name) is None]
    present.sort(key=lambda row: row.value(name), reverse=key.startswith("-"))
    rows[:] = present + absent


def _render(op: FakeOperation) -> object:
    if op.junk == "not_object":
        return "garbage"

    item: dict[str, object] = {
        "id": op.id,
        "type": "POOL.OPEN",
        "status": op.status,
        "submitted": _wire(op.submitted),
        "parameters": {"pool_id": "7"},
    }
    if op.finished is not None:
        item["finished"] = _wire(op.finished)
    if op.junk == "missing_type":
        del item["type"]
    elif op.junk == "bad_progress":
        item["progress"] = 150
    elif op.junk == "bad_time":
        item["submitted"] = "yesterday"
    elif op.junk == "no_id":
        del item["id"]
    return item


def _wire(moment: datetime) -> str:
    """Toloka's format, with 0, 3 or 6 fraction digits as the value needs."""
    text = moment.astimezone(UTC).replace(tzinfo=None).isoformat()
    if moment.microsecond and moment.microsecond % 1000 == 0:
        text = text[:-3]
    return text


def _client(api: FakeApi) -> TolokaClient:
    settings = TolokaSettings(base_url="https://toloka.test/api", api_key=Secret("k"))
    return TolokaClient(
        settings, transport=httpx.MockTransport(api.handle), clock=lambda: NOW
    )


@dataclass
class ScanResult:
    """What a scan yielded before it ended, and the error that ended it, if any."""

    pages: list[DecodedPage] = field(default_factory=list)
    failure: ResponseError | None = None

    def yielded_ids(self) -> list[str]:
        return [item.operation_id for page in self.pages for item in page.observations]

    def rejected_ids(self) -> list[str | None]:
        return [error.operation_id for page in self.pages for error in page.rejected]


async def _collect(api: FakeApi, scan: Callable[[TolokaClient], Any]) -> ScanResult:
    result = ScanResult()
    async with _client(api) as client:
        try:
            async for page in scan(client):
                result.pages.append(page)
        except ResponseError as error:
            result.failure = error
    return result


def _scan_time(
    api: FakeApi, field_name: TimeField, since: datetime | None, limit: int
) -> ScanResult:
    scan = functools.partial(scan_by_time, field=field_name, since=since, limit=limit)
    return asyncio.run(_collect(api, scan))


def _scan_status(api: FakeApi, status: str, limit: int) -> ScanResult:
    scan = functools.partial(scan_by_status, status=status, limit=limit)
    return asyncio.run(_collect(api, scan))


@st.composite
def operation_tables(draw: st.DrawFn) -> list[FakeOperation]:
    """Operations whose timestamps come from a few values, so many are equal."""
    offsets = st.integers(min_value=0, max_value=5_000_000)
    submitted_pool = draw(st.lists(offsets, min_size=1, max_size=4, unique=True))
    finished_pool = draw(st.lists(offsets, min_size=1, max_size=4, unique=True))
    ids = draw(
        st.lists(
            st.text("0123456789abcdef", min_size=1, max_size=6),
            max_size=45,
            unique=True,
        )
    )

    with_junk = draw(st.booleans())
    valid_weight = draw(st.sampled_from((12, 1)))
    table = []
    for operation_id in ids:
        status = draw(st.sampled_from(("PENDING", "RUNNING", *TERMINAL)))
        finished = None
        if status in TERMINAL:
            finished = BASE + timedelta(
                days=1, microseconds=draw(st.sampled_from(finished_pool))
            )
        submitted = BASE + timedelta(microseconds=draw(st.sampled_from(submitted_pool)))
        kinds = (None,) * valid_weight + JUNK_KINDS
        junk = draw(st.sampled_from(kinds)) if with_junk else None
        table.append(FakeOperation(operation_id, submitted, status, finished, junk))
    return table


def _expected_by_time(
    table: list[FakeOperation], field_name: str, since: datetime | None
) -> list[FakeOperation]:
    floor = EPOCH if since is None else since
    rows = [op for op in table if _compare(op.value(field_name), "gte", _wire(floor))]
    return sorted(rows, key=lambda op: (op.value(field_name), op.id))


def _assert_each_valid_once_in_order(
    result: ScanResult, expected: list[FakeOperation], api: FakeApi
) -> None:
    valid = [op.id for op in expected if op.junk is None]
    yielded = result.yielded_ids()
    if result.failure is None:
        assert yielded == valid
    else:
        assert api.stuck_pages > 0, result.failure
        assert "none usable" in str(result.failure)
        assert yielded == valid[: len(yielded)]


def _assert_junk_passed_through(
    result: ScanResult, expected: list[FakeOperation]
) -> None:
    passed = result.rejected_ids()
    with_id = [ident for ident in passed if ident is not None]
    assert len(with_id) == len(set(with_id))
    if result.failure is None:
        junk = [op for op in expected if op.junk is not None]
        assert set(with_id) == {op.id for op in junk if op.junk not in JUNK_WITHOUT_ID}
        nameless = sum(1 for op in junk if op.junk in JUNK_WITHOUT_ID)
        assert passed.count(None) >= nameless


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    table=operation_tables(),
    field_name=st.sampled_from(("submitted", "finished")),
    limit=st.integers(min_value=1, max_value=8),
    since_index=st.integers(min_value=-1, max_value=50),
    nudge=st.sampled_from((timedelta(0), timedelta(microseconds=-1))),
)
def test_scan_by_time_yields_every_matching_operation_once_in_order(
    table: list[FakeOperation],
    field_name: TimeField,
    limit: int,
    since_index: int,
    nudge: timedelta,
) -> None:
    """A time scan yields exactly the valid matching operations, each once, in order."""
    stamps = sorted({v for op in table if (v := op.value(field_name)) is not None})
    since = stamps[since_index] + nudge if 0 <= since_index < len(stamps) else None
    api = FakeApi(table)

    result = _scan_time(api, field_name, since, limit)

    expected = _expected_by_time(table, field_name, since)
    event("stuck on rejected items" if result.failure else "complete")
    event(f"paged past a page of only rejected items: {api.junk_pages > 0}")
    event(f"id subscan used: {any(q['sort'] == 'id' for q in api.queries)}")
    _assert_each_valid_once_in_order(result, expected, api)
    _assert_junk_passed_through(result, expected)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    table=operation_tables(),
    status=st.sampled_from(("PENDING", "RUNNING", "SUCCESS")),
    limit=st.integers(min_value=1, max_value=8),
)
def test_scan_by_status_yields_every_operation_with_status_once_in_id_order(
    table: list[FakeOperation], status: str, limit: int
) -> None:
    """A status scan yields exactly the valid operations with that status, by id."""
    api = FakeApi(table)

    result = _scan_status(api, status, limit)

    expected = sorted((op for op in table if op.status == status), key=lambda op: op.id)
    event("stuck on rejected items" if result.failure else "complete")
    event(f"paged past a page of only rejected items: {api.junk_pages > 0}")
    _assert_each_valid_once_in_order(result, expected, api)
    _assert_junk_passed_through(result, expected)


@settings(max_examples=100, deadline=None)
@given(
    count=st.integers(min_value=1, max_value=40),
    limit=st.integers(min_value=1, max_value=10),
)
def test_operations_sharing_one_timestamp_are_read_through_the_id_subscan(
    count: int, limit: int
) -> None:
    """More operations than a page at one timestamp are all read, once each."""
    table = [FakeOperation(f"{index:04x}", BASE) for index in range(count)]
    api = FakeApi(table)

    result = _scan_time(api, "submitted", None, limit)

    assert result.yielded_ids() == [op.id for op in table]
    subscan_pages = max(1, math.ceil((count - limit) / limit))
    assert len(api.queries) == (1 if count <= limit else 2 + subscan_pages)


def test_full_page_of_one_timestamp_switches_to_id_subscan_then_moves_past_it() -> None:
    """Seven operations at T with limit 3: one time page, id pages, then `> T`."""
    table = [FakeOperation(f"op{index}", BASE) for index in range(7)]
    later = FakeOperation("a-later", BASE + timedelta(seconds=1))
    api = FakeApi([*table, later])

    result = _scan_time(api, "submitted", None, 3)

    assert result.yielded_ids() == [*(op.id for op in table), "a-later"]
    stamp = format_wire_datetime(BASE)
    assert api.queries == [
        {
            "sort": "submitted,id",
            "limit": "3",
            "submitted_gte": format_wire_datetime(EPOCH),
        },
        {
            "sort": "id",
            "limit": "3",
            "id_gt": "op2",
            "submitted_gte": stamp,
            "submitted_lte": stamp,
        },
        {
            "sort": "id",
            "limit": "3",
            "id_gt": "op5",
            "submitted_gte": stamp,
            "submitted_lte": stamp,
        },
        {"sort": "submitted,id", "limit": "3", "submitted_gt": stamp},
    ]


def test_boundary_ids_are_skipped_when_the_next_page_rereads_them() -> None:
    """The next page starts at the last timestamp and skips the ids already yielded."""
    table = [
        FakeOperation("b", BASE),
        FakeOperation("a", BASE + timedelta(seconds=1)),
        FakeOperation("c", BASE + timedelta(seconds=1)),
        FakeOperation("d", BASE + timedelta(seconds=2)),
    ]
    api = FakeApi(table)

    result = _scan_time(api, "submitted", BASE, 3)

    assert result.yielded_ids() == ["b", "a", "c", "d"]
    next_bound = format_wire_datetime(BASE + timedelta(seconds=1))
    assert api.queries[1]["submitted_gte"] == next_bound
    assert [item.operation_id for item in result.pages[1].observations] == ["d"]


def test_rows_appearing_late_at_the_boundary_are_not_yielded_twice() -> None:
    """Ids already read at T stay skipped when late rows push them into the subscan."""
    later = BASE + timedelta(seconds=1)
    table = [
        FakeOperation("a", BASE),
        FakeOperation("z", later),
        FakeOperation("zz", later),
    ]

    def reveal_late_rows(api: FakeApi) -> None:
        if len(api.queries) == 1:
            api.operations += [FakeOperation("b", later), FakeOperation("c", later)]

    api = FakeApi(table, after_request=reveal_late_rows)

    result = _scan_time(api, "submitted", None, 2)

    assert result.yielded_ids() == ["a", "z", "b", "c", "zz"]
    assert api.queries[2]["id_gt"] == "c"


def test_page_of_only_rejected_items_is_paged_past_by_its_last_item() -> None:
    """A full page of bad items is skipped: ids at its last timestamp, then later."""
    table = [
        FakeOperation("a", BASE, junk="missing_type"),
        FakeOperation("b", BASE, junk="bad_progress"),
        FakeOperation("c", BASE),
        FakeOperation("d", BASE + timedelta(seconds=1)),
    ]
    api = FakeApi(table)

    result = _scan_time(api, "submitted", None, 2)

    assert result.failure is None
    assert result.yielded_ids() == ["c", "d"]
    assert result.rejected_ids() == ["a", "b"]
    assert api.queries[1]["id_gt"] == "b"
    assert api.queries[1]["submitted_lte"] == format_wire_datetime(BASE)


def test_status_scan_pages_past_a_page_of_only_rejected_items() -> None:
    table = [
        FakeOperation("a", BASE, junk="missing_type"),
        FakeOperation("b", BASE, junk="bad_time"),
        FakeOperation("c", BASE),
    ]
    api = FakeApi(table)

    result = _scan_status(api, "RUNNING", 2)

    assert result.failure is None
    assert result.yielded_ids() == ["c"]
    assert api.queries[1]["id_gt"] == "b"


def test_page_of_rejected_items_ending_without_an_id_raises() -> None:
    """With no valid item and no id at its end, a page cannot move the cursor."""
    table = [
        FakeOperation("a", BASE, junk="missing_type"),
        FakeOperation("b", BASE, junk="no_id"),
        FakeOperation("c", BASE + timedelta(seconds=1)),
    ]
    api = FakeApi(table)

    async def scan() -> None:
        async with _client(api) as client:
            async for _ in scan_by_time(client, "submitted", None, 2):
                pass

    with pytest.raises(
        ResponseError,
        match=r"returned 2 items with has_more set and none usable \(2 rejected",
    ):
        asyncio.run(scan())
    assert len(api.queries) == 1


def test_unreadable_timestamp_at_the_end_stops_only_a_scan_by_that_field() -> None:
    """`bad_time` breaks `submitted`; a scan by `finished` still pages past it."""
    finished = BASE + timedelta(hours=1)
    table = [
        FakeOperation("a", BASE, "SUCCESS", finished, junk="bad_time"),
        FakeOperation("b", BASE, "SUCCESS", finished + timedelta(seconds=1)),
    ]

    by_finished = _scan_time(FakeApi(table), "finished", None, 1)
    by_submitted = _scan_time(FakeApi(table), "submitted", None, 1)

    assert by_finished.failure is None
    assert by_finished.yielded_ids() == ["b"]
    assert by_submitted.failure is not None
    assert by_submitted.yielded_ids() == []


def test_rejected_items_are_passed_through_but_never_move_the_cursor() -> None:
    """A bad item after the last valid one is re-read, passed through once, skipped."""
    table = [
        FakeOperation("a", BASE),
        FakeOperation("b", BASE + timedelta(seconds=5), junk="bad_time"),
        FakeOperation("c", BASE + timedelta(seconds=6)),
    ]
    api = FakeApi(table)

    result = _scan_time(api, "submitted", None, 2)

    assert result.yielded_ids() == ["a", "c"]
    assert result.rejected_ids() == ["b"]
    assert api.queries[1]["submitted_gte"] == format_wire_datetime(BASE)


def test_finished_scan_ignores_unfinished_operations() -> None:
    """A scan by `finished` starts at the epoch floor: unfinished ones never match."""
    table = [
        FakeOperation("running", BASE, "RUNNING"),
        FakeOperation("done", BASE, "SUCCESS", finished=BASE + timedelta(minutes=1)),
    ]
    api = FakeApi(table)

    result = _scan_time(api, "finished", None, 5)

    assert result.yielded_ids() == ["done"]
    assert api.queries[0]["finished_gte"] == format_wire_datetime(EPOCH)


def test_time_query_for_each_cursor_state() -> None:
    """The pure decision: inclusive bound, exclusive bound, and the id subscan."""
    cursor = first_time_cursor("finished", BASE, 300)
    exclusive = msgspec.structs.replace(cursor, inclusive=False)
    subscan = msgspec.structs.replace(cursor, subscan_after="x")

    assert time_query(cursor) == SearchQuery(
        sort="finished,id", limit=300, finished_gte=BASE
    )
    assert time_query(exclusive) == SearchQuery(
        sort="finished,id", limit=300, finished_gt=BASE
    )
    assert time_query(subscan) == SearchQuery(
        sort="id", limit=300, id_gt="x", finished_gte=BASE, finished_lte=BASE
    )


def test_advance_time_keeps_ids_at_the_new_bound_and_filters_them() -> None:
    """After a page the cursor moves to the last timestamp and remembers its ids."""
    page = _decoded(
        [
            FakeOperation("x", BASE),
            FakeOperation("y", BASE + timedelta(seconds=1)),
            FakeOperation("w", BASE + timedelta(seconds=1)),
        ],
        has_more=True,
    )
    cursor = first_time_cursor("submitted", None, 3)

    moved = advance_time(cursor, page)

    assert moved == TimeCursor(
        field="submitted",
        limit=3,
        bound=BASE + timedelta(seconds=1),
        seen_at_bound=frozenset({"y", "w"}),
    )
    assert [
        item.operation_id for item in fresh_observations(moved, page.observations)
    ] == []


def test_advance_time_ends_when_the_page_has_no_more() -> None:
    """has_more false ends a time scan outside a subscan."""
    page = _decoded([FakeOperation("x", BASE)], has_more=False)

    assert advance_time(first_time_cursor("submitted", None, 3), page) is None


def test_naive_since_is_refused() -> None:
    """A scan bound without a time zone would compare wrongly, so it is refused."""
    with pytest.raises(ValueError, match="must carry a time zone"):
        first_time_cursor("submitted", datetime(2024, 1, 1), 10)


@pytest.mark.parametrize(
    ("spacing", "expected_requests"),
    [(timedelta(0), 5), (timedelta(milliseconds=1), 4)],
)
def test_request_count_for_a_thousand_operations_with_limit_300(
    spacing: timedelta, expected_requests: int
) -> None:
    """One shared timestamp costs 5 requests, distinct timestamps 4 (see scan docs)."""
    table = [
        FakeOperation(f"{index:024x}", BASE + spacing * index) for index in range(1000)
    ]
    api = FakeApi(table)

    result = _scan_time(api, "submitted", None, 300)

    assert len(result.yielded_ids()) == 1000
    assert len(api.queries) == expected_requests


def _decoded(rows: list[FakeOperation], *, has_more: bool) -> DecodedPage:
    body = {"items": [_render(op) for op in rows], "has_more": has_more}
    return decode_page(msgspec.json.encode(body), NOW, ItemRules())
