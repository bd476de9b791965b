"""Search parameters and the indexed search of the Toloka simulator (pure)."""

import itertools
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bridge.simulator import query
from bridge.simulator.model import FAIL, PENDING, RUNNING, SUCCESS, SimOperation
from bridge.simulator.query import run_search
from bridge.simulator.searchparams import QueryError, SearchQuery, parse_search_params
from bridge.simulator.truth import TruthLog
from bridge.simulator.wiretime import format_wire_time, parse_wire_time
from bridge.simulator.world import World

T0 = parse_wire_time("2024-05-01T12:00:00")
SECOND = 1_000_000


def parse(**params: str) -> SearchQuery:
    return parse_search_params(params.items(), default_limit=50, max_limit=300)


def build_world(
    specs: list[tuple[str, str, str, int, int | None, int | None]],
) -> World:
    """A world from (id, type, status, submitted, started, finished) offsets."""
    world = World(TruthLog(), seed=1, odd_precision_ratio=0.0)
    ops = []
    for op_id, op_type, status, submitted, started, finished in specs:
        stamp = world.stamp(op_id, "submitted", T0 + submitted * SECOND)
        op = world.new_operation(op_id, op_type, 1, stamp)
        started_us = None if started is None else T0 + started * SECOND
        finished_us = None if finished is None else T0 + finished * SECOND
        world.settle(op, status, started_us, finished_us, None)
        ops.append(op)
    world.add(ops)
    return world


def reference_search(ops: list[SimOperation], q: SearchQuery) -> list[str]:
    """What the search must return, computed by brute force over every operation."""
    found = [op for op in ops if _reference_match(op, q)]
    keys = [(k.field, k.descending) for k in q.sort]
    if "id" not in [field for field, _ in keys]:
        keys.append(("id", False))
    for field, descending in reversed(keys):
        if field == "finished":
            present = [op for op in found if op.finished_us is not None]
            present.sort(key=lambda op: op.finished_us or 0, reverse=descending)
            found = present + [op for op in found if op.finished_us is None]
        elif field == "submitted":
            found.sort(key=lambda op: op.submitted_us, reverse=descending)
        else:
            found.sort(key=lambda op: op.id, reverse=descending)
    return [op.id for op in found]


def _reference_match(op: SimOperation, q: SearchQuery) -> bool:
    checks = [
        q.type is None or op.type == q.type,
        q.status is None or op.status == q.status,
        _within(op.id, q.id.lt, q.id.lte, q.id.gt, q.id.gte),
        _within(
            op.submitted_us,
            q.submitted.lt,
            q.submitted.lte,
            q.submitted.gt,
            q.submitted.gte,
        ),
    ]
    finished = q.finished
    if any(
        b is not None for b in (finished.lt, finished.lte, finished.gt, finished.gte)
    ):
        checks.append(
            op.finished_us is not None
            and _within(
                op.finished_us, finished.lt, finished.lte, finished.gt, finished.gte
            )
        )
    return all(checks)


def _within(value: object, lt: object, lte: object, gt: object, gte: object) -> bool:
    return (
        (lt is None or value < lt)  # type: ignore[operator]
        and (lte is None or value <= lte)  # type: ignore[operator]
        and (gt is None or value > gt)  # type: ignore[operator]
        and (gte is None or value >= gte)  # type: ignore[operator]
    )


WORLD_SPECS = [
    ("57068577e4b0bf7b07a0256f", "POOL.OPEN", SUCCESS, 0, 1, 3),
    ("0a1b2c3d4e5f60718293a4b5", "POOL.CLOSE", FAIL, 0, None, 2),
    ("b3f1c0de-5a6b-4c7d-8e9f-0a1b2c3d4e5f", "ANALYTICS", RUNNING, 1, 2, None),
    ("ffe0d1c2b3a4958677685940", "POOL.OPEN", PENDING, 2, None, None),
    ("1f2e3d4c-5b6a-4978-8695-a4b3c2d1e0f9", "ANALYTICS", SUCCESS, 2, 2, 2),
    ("8899aabbccddeeff00112233", "NEW.TYPE", SUCCESS, 3, 4, 9),
]


@pytest.mark.parametrize(
    "params",
    [
        {"type": "POOL.OPEN"},
        {"type": "NO.SUCH.TYPE"},
        {"status": "SUCCESS"},
        {"status": "PENDING"},
        {"id_lt": "57068577e4b0bf7b07a0256f"},
        {"id_lte": "57068577e4b0bf7b07a0256f"},
        {"id_gt": "57068577e4b0bf7b07a0256f"},
        {"id_gte": "57068577e4b0bf7b07a0256f"},
        {"submitted_lt": "2024-05-01T12:00:02"},
        {"submitted_lte": "2024-05-01T12:00:02.000"},
        {"submitted_gt": "2024-05-01T12:00:02.00000"},
        {"submitted_gte": "2024-05-01T12:00:02.000000"},
        {"finished_lt": "2024-05-01T12:00:03"},
        {"finished_lte": "2024-05-01T12:00:03"},
        {"finished_gt": "2024-05-01T12:00:02"},
        {"finished_gte": "2024-05-01T12:00:02"},
        {"sort": "-id"},
        {"sort": "submitted"},
        {"sort": "-submitted"},
        {"sort": "finished"},
        {"sort": "-finished"},
        {"sort": "submitted,id"},
        {"sort": "submitted,-id"},
        {"sort": "-finished,submitted"},
        {"sort": "finished,-submitted,id"},
        {"sort": "submitted,-finished"},
        {"sort": "-submitted,finished,-id"},
        {"sort": "-finished", "submitted_gte": "2024-05-01T12:00:01"},
        {"type": "ANALYTICS", "status": "SUCCESS", "sort": "-submitted"},
        {"status": "SUCCESS", "finished_gte": "2024-05-01T12:00:02", "sort": "id"},
    ],
)
def test_each_filter_and_sort_matches_the_brute_force_answer(
    params: dict[str, str],
) -> None:
    """Every filter and sort gives what a scan of all operations gives."""
    world = build_world(WORLD_SPECS)
    q = parse(**params)
    ops = list(world.index.operations.values())

    result = run_search(world.index, q)

    assert [op.id for op in result.operations] == reference_search(ops, q)
    assert result.has_more is False


def test_unfinished_operations_sort_last_by_finished_in_both_directions() -> None:
    """Operations without `finished` come after all finished ones, asc or desc."""
    world = build_world(WORLD_SPECS)
    for sort in ("finished", "-finished"):
        result = run_search(world.index, parse(sort=sort))
        finished_flags = [op.finished is not None for op in result.operations]
        assert finished_flags == [True, True, True, True, False, False]


def test_limit_cuts_the_page_and_sets_has_more() -> None:
    """A page holds `limit` operations; `has_more` says whether more match."""
    world = build_world(WORLD_SPECS)

    first = run_search(world.index, parse(limit="4", sort="id"))
    last = run_search(
        world.index, parse(limit="2", sort="id", id_gt=first.operations[-1].id)
    )

    assert len(first.operations) == 4
    assert first.has_more
    assert len(last.operations) == 2
    assert not last.has_more


def test_visibility_predicate_hides_operations_without_breaking_paging() -> None:
    """Rows the predicate hides are skipped and do not count toward the limit."""
    world = build_world(WORLD_SPECS)
    hidden = {"0a1b2c3d4e5f60718293a4b5", "8899aabbccddeeff00112233"}

    result = run_search(world.index, parse(limit="4"), lambda op: op.id not in hidden)

    assert len(result.operations) == 4
    assert not result.has_more
    assert hidden.isdisjoint(op.id for op in result.operations)


@pytest.mark.parametrize(
    ("params", "field", "code"),
    [
        ({"limit": "301"}, "limit", "VALUE_GREATER_THAN_MAX"),
        ({"limit": "0"}, "limit", "VALUE_LESS_THAN_MIN"),
        ({"limit": "ten"}, "limit", "INTEGER_EXPECTED"),
        ({"status": "DONE"}, "status", "UNKNOWN_ENUM_VALUE"),
        ({"status": "RUNNING,PENDING"}, "status", "UNKNOWN_ENUM_VALUE"),
        ({"sort": "started"}, "sort", "INVALID_VALUE"),
        ({"sort": "id,-id"}, "sort", "DUPLICATE_VALUE_IN_ARRAY"),
        ({"sort": "submitted,"}, "sort", "INVALID_VALUE"),
        ({"submitted_gte": "yesterday"}, "submitted_gte", "INVALID_DATE_TIME_SYNTAX"),
        (
            {"finished_lt": "2024-13-01T00:00:00"},
            "finished_lt",
            "INVALID_DATE_TIME_SYNTAX",
        ),
        ({"type": ""}, "type", "BLANK_STRING_NOT_ALLOWED"),
    ],
)
def test_bad_parameters_are_rejected_with_field_and_code(
    params: dict[str, str], field: str, code: str
) -> None:
    """Each bad value raises a QueryError naming the parameter and a Toloka code."""
    with pytest.raises(QueryError) as raised:
        parse(**params)
    assert (raised.value.field, raised.value.code) == (field, code)


def test_a_parameter_given_twice_is_rejected() -> None:
    """`status=A&status=B` is an error, not a silent pick of one value."""
    pairs = [("status", "RUNNING"), ("status", "PENDING")]
    with pytest.raises(QueryError, match="'status' takes one value"):
        parse_search_params(pairs, default_limit=50, max_limit=300)


def test_unknown_parameters_are_ignored_unless_strict() -> None:
    """Unknown names are ignored like a lenient server, or refused when strict."""
    pairs = [("started_gte", "2024-05-01T12:00:00")]
    assert parse_search_params(pairs, default_limit=50, max_limit=300).limit == 50
    with pytest.raises(QueryError, match="unknown parameter 'started_gte'"):
        parse_search_params(pairs, default_limit=50, max_limit=300, reject_unknown=True)


def test_limit_defaults_and_maximum_are_configurable() -> None:
    """The default and maximum limit come from the server settings."""
    assert parse_search_params([], default_limit=7, max_limit=500).limit == 7
    pairs = [("limit", "500")]
    assert parse_search_params(pairs, default_limit=50, max_limit=500).limit == 500


_IDS = st.sampled_from(
    [f"{i:024x}" for i in (0x1, 0xA0, 0xFF00, 0xC0FFEE)]
    + ["0b5e-uuid", "7f3c-uuid", "a1d2-uuid", "e9f8-uuid"]
)
_OFFSETS = st.integers(min_value=0, max_value=5)
_STATUSES = st.sampled_from([PENDING, RUNNING, SUCCESS, FAIL])


@st.composite
def worlds(draw: st.DrawFn) -> list[tuple[str, str, str, int, int | None, int | None]]:
    count = draw(st.integers(min_value=0, max_value=40))
    specs = []
    for number in range(count):
        op_id = f"{draw(_IDS)}-{number:03d}"
        status = draw(_STATUSES)
        submitted = draw(_OFFSETS)
        started = None if status == PENDING else submitted + draw(_OFFSETS)
        finished = None
        if status in (SUCCESS, FAIL):
            finished = (started if started is not None else submitted) + draw(_OFFSETS)
        op_type = draw(st.sampled_from(["POOL.OPEN", "ANALYTICS", "X.NEW"]))
        specs.append((op_id, op_type, status, submitted, started, finished))
    return specs


def _time_text(offset: int) -> str:
    return format_wire_time(T0 + offset * SECOND, 3)


@st.composite
def queries(draw: st.DrawFn) -> dict[str, str]:
    params: dict[str, str] = {"limit": str(draw(st.integers(1, 8)))}
    if draw(st.booleans()):
        params["type"] = draw(st.sampled_from(["POOL.OPEN", "ANALYTICS", "X.NEW"]))
    if draw(st.booleans()):
        params["status"] = draw(_STATUSES)
    for field in ("id", "submitted", "finished"):
        for suffix in ("lt", "lte", "gt", "gte"):
            if draw(st.integers(0, 9)) == 0:
                value = draw(_IDS) if field == "id" else _time_text(draw(_OFFSETS) * 2)
                params[f"{field}_{suffix}"] = value
    fields = draw(st.permutations(["id", "submitted", "finished"]))
    count = draw(st.integers(0, 3))
    if count:
        signs = [draw(st.sampled_from(["", "-"])) for _ in range(count)]
        params["sort"] = ",".join(
            s + f for s, f in zip(signs, fields[:count], strict=True)
        )
    return params


@pytest.mark.parametrize("collect", [True, False])
@settings(max_examples=200, deadline=None)
@given(specs=worlds(), params=queries())
def test_search_agrees_with_brute_force_in_both_plans(
    collect: bool,
    specs: list[tuple[str, str, str, int, int | None, int | None]],
    params: dict[str, str],
) -> None:
    """Random worlds with many equal timestamps: both plans give the reference page."""
    world = build_world(specs)
    q = parse(**params)
    expected = reference_search(list(world.index.operations.values()), q)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(query, "_collect_is_cheaper", lambda *_: collect)
        result = run_search(world.index, q)

    assert [op.id for op in result.operations] == expected[: q.limit]
    assert result.has_more == (len(expected) > q.limit)


@settings(max_examples=60, deadline=None)
@given(specs=worlds(), limit=st.integers(1, 5), status=st.sampled_from([None, RUNNING]))
def test_keyset_paging_by_id_visits_every_match_once(
    specs: list[tuple[str, str, str, int, int | None, int | None]],
    limit: int,
    status: str | None,
) -> None:
    """Following `id_gt` of the last item while has_more yields each match once."""
    world = build_world(specs)
    base = {"limit": str(limit), "sort": "id"} | ({"status": status} if status else {})
    seen: list[str] = []
    for _ in itertools.count():
        page = run_search(
            world.index, parse(**base, **({"id_gt": seen[-1]} if seen else {}))
        )
        seen.extend(op.id for op in page.operations)
        if not page.has_more:
            break

    expected = sorted(
        op.id for op in world.index.operations.values() if status in (None, op.status)
    )
    assert seen == expected


def test_index_follows_transitions() -> None:
    """After random transitions the index still answers like a full scan."""
    world = build_world(WORLD_SPECS)
    rng = random.Random(5)
    for op in list(world.index.operations.values()):
        if op.status == PENDING:
            world.transition(op, RUNNING, T0 + 10 * SECOND)
        if op.status == RUNNING:
            world.transition(op, rng.choice([SUCCESS, FAIL]), T0 + 11 * SECOND)

    ops = list(world.index.operations.values())
    for params in ({"status": "RUNNING"}, {"status": "SUCCESS", "sort": "finished"}):
        q = parse(**params)
        assert [op.id for op in run_search(world.index, q).operations] == (
            reference_search(ops, q)
        )
    assert world.index.counts_by_status().get(RUNNING) is None
