"""Search: filter, sort and page the operations for a checked `SearchQuery`.

Pure: no I/O and no clock; visibility (a fault) comes in as a predicate. The query
string itself is parsed in `searchparams.py`.

Order: the `sort` keys in turn, then `id` ascending as the last tie-break unless
`id` is already a key. Operations without `finished` never match a `finished_*`
bound and sort after all finished ones, whichever the direction.

Plans and cost (n = operations in the narrowest bucket, see `index.py`; L = limit):

* Ordered scan: walk the list of the first sort key from the bound given for that
  key, in sort order, testing each operation, and stop after L + 1 matches:
  O(log n + k), where k is the number of entries walked. For the usual keyset
  queries (`sort=id&id_gt=X`, `sort=submitted,id&submitted_gte=T`,
  `status=RUNNING&sort=submitted`) k is about L.
* Collect: when another field's bound selects far fewer operations than the scan
  is expected to walk (the id sub-scan `submitted_gte=T&submitted_lte=T&sort=id&
  id_gt=X`), take that key range, filter it and sort it: O(log n + m log m) for
  m operations in the range.

The plan is chosen from range sizes found by bisection, so a request never touches
every operation unless its filters really span them all.
"""

from bisect import bisect_left, bisect_right
from collections.abc import Callable, Iterable, Iterator
from typing import Any, NamedTuple

import msgspec

from bridge.simulator.index import Bucket, OperationIndex
from bridge.simulator.model import SimOperation
from bridge.simulator.searchparams import Bounds, SearchQuery, SortKey

_COLLECT_COST_FACTOR = 3

Visible = Callable[[SimOperation], bool]


class SearchResult(msgspec.Struct):
    """One page of operations and whether more match."""

    operations: list[SimOperation]
    has_more: bool


def run_search(
    index: OperationIndex, query: SearchQuery, visible: Visible | None = None
) -> SearchResult:
    """Find one page of operations matching `query`, in its order."""
    bucket = _narrowest_bucket(index, query)
    if bucket is None:
        return SearchResult([], False)

    def accept(op: SimOperation) -> bool:
        return _matches(op, query) and (visible is None or visible(op))

    want = query.limit + 1
    keys = _effective_keys(query.sort)
    collect_range = _best_collect_range(bucket, query)
    scan_size = _scan_size(bucket, query, keys[0])
    if collect_range is not None and _collect_is_cheaper(
        collect_range.size, scan_size, want
    ):
        candidates = (index.operations[op_id] for op_id in collect_range.ids())
        found = _sorted([op for op in candidates if accept(op)], keys)[:want]
    else:
        found = _take(_ordered(index, bucket, query, keys), accept, want)
    return SearchResult(found[: query.limit], len(found) > query.limit)


def _effective_keys(sort: list[SortKey]) -> list[SortKey]:
    if any(key.field == "id" for key in sort):
        return list(sort)
    return [*sort, SortKey("id")]


def _narrowest_bucket(index: OperationIndex, query: SearchQuery) -> Bucket | None:
    candidates = [index.everything]
    for wanted, bucket in (
        (query.status, index.status_bucket(query.status or "")),
        (query.type, index.type_bucket(query.type or "")),
    ):
        if wanted is not None:
            if bucket is None:
                return None
            candidates.append(bucket)
    return min(candidates, key=len)


def _matches(op: SimOperation, query: SearchQuery) -> bool:
    if query.type is not None and op.type != query.type:
        return False
    if query.status is not None and op.status != query.status:
        return False
    if not query.id.admits(op.id) or not query.submitted.admits(op.submitted_us):
        return False
    if query.finished.given:
        return op.finished_us is not None and query.finished.admits(op.finished_us)
    return True


def _id_range(ids: list[str], bounds: Bounds[str]) -> tuple[int, int]:
    low, high = 0, len(ids)
    if bounds.gte is not None:
        low = max(low, bisect_left(ids, bounds.gte))
    if bounds.gt is not None:
        low = max(low, bisect_right(ids, bounds.gt))
    if bounds.lte is not None:
        high = min(high, bisect_right(ids, bounds.lte))
    if bounds.lt is not None:
        high = min(high, bisect_left(ids, bounds.lt))
    return low, max(low, high)


def _time_range(entries: list[tuple[int, str]], bounds: Bounds[int]) -> tuple[int, int]:
    low, high = 0, len(entries)
    if bounds.gte is not None:
        low = max(low, bisect_left(entries, (bounds.gte,)))
    if bounds.gt is not None:
        low = max(low, bisect_left(entries, (bounds.gt + 1,)))
    if bounds.lte is not None:
        high = min(high, bisect_left(entries, (bounds.lte + 1,)))
    if bounds.lt is not None:
        high = min(high, bisect_left(entries, (bounds.lt,)))
    return low, max(low, high)


class _KeyRange(NamedTuple):
    """A range of one sorted list: its size now, and its ids when needed."""

    size: int
    ids: Callable[[], Iterable[str]]


def _id_key_range(ids: list[str], span: tuple[int, int]) -> _KeyRange:
    return _KeyRange(span[1] - span[0], lambda: ids[span[0] : span[1]])


def _time_key_range(entries: list[tuple[int, str]], span: tuple[int, int]) -> _KeyRange:
    return _KeyRange(
        span[1] - span[0], lambda: (entry[1] for entry in entries[span[0] : span[1]])
    )


def _best_collect_range(bucket: Bucket, query: SearchQuery) -> _KeyRange | None:
    options: list[_KeyRange] = []
    if query.id.given:
        options.append(_id_key_range(bucket.ids, _id_range(bucket.ids, query.id)))
    if query.submitted.given:
        span = _time_range(bucket.by_submitted, query.submitted)
        options.append(_time_key_range(bucket.by_submitted, span))
    if query.finished.given:
        span = _time_range(bucket.by_finished, query.finished)
        options.append(_time_key_range(bucket.by_finished, span))
    return min(options, key=lambda option: option.size) if options else None


def _scan_size(bucket: Bucket, query: SearchQuery, first: SortKey) -> int:
    if first.field == "id":
        low, high = _id_range(bucket.ids, query.id)
    elif first.field == "submitted":
        low, high = _time_range(bucket.by_submitted, query.submitted)
    else:
        low, high = _time_range(bucket.by_finished, query.finished)
        if not query.finished.given:
            high += len(bucket.unfinished_ids)
    return high - low


def _collect_is_cheaper(collect_size: int, scan_size: int, want: int) -> bool:
    expected_scan = min(scan_size, want * scan_size / max(collect_size, 1))
    return collect_size * _COLLECT_COST_FACTOR < expected_scan


def _take(
    candidates: Iterator[SimOperation],
    accept: Callable[[SimOperation], bool],
    want: int,
) -> list[SimOperation]:
    found: list[SimOperation] = []
    for op in candidates:
        if accept(op):
            found.append(op)
            if len(found) == want:
                break
    return found


def _ordered(
    index: OperationIndex, bucket: Bucket, query: SearchQuery, keys: list[SortKey]
) -> Iterator[SimOperation]:
    first, rest = keys[0], keys[1:]
    operations = index.operations
    if first.field == "id":
        low, high = _id_range(bucket.ids, query.id)
        span = range(high - 1, low - 1, -1) if first.descending else range(low, high)
        return (operations[bucket.ids[i]] for i in span)

    if first.field == "submitted":
        entries, bounds = bucket.by_submitted, query.submitted
    else:
        entries, bounds = bucket.by_finished, query.finished
    head = _time_ordered(operations, entries, _time_range(entries, bounds), first, rest)
    if first.field == "submitted" or query.finished.given:
        return head
    return _chain(head, _unfinished_tail(index, bucket, query, rest))


def _time_ordered(
    operations: dict[str, SimOperation],
    entries: list[tuple[int, str]],
    span: tuple[int, int],
    first: SortKey,
    rest: list[SortKey],
) -> Iterator[SimOperation]:
    low, high = span
    if rest[0] == SortKey("id", first.descending):
        positions = (
            range(high - 1, low - 1, -1) if first.descending else range(low, high)
        )
        for position in positions:
            yield operations[entries[position][1]]
        return

    for group in _groups(entries, low, high, first.descending):
        if rest[0] == SortKey("id"):
            yield from (operations[op_id] for _, op_id in group)
        elif rest[0] == SortKey("id", descending=True):
            yield from (operations[op_id] for _, op_id in reversed(group))
        else:
            yield from _sorted([operations[op_id] for _, op_id in group], rest)


def _groups(
    entries: list[tuple[int, str]], low: int, high: int, descending: bool
) -> Iterator[list[tuple[int, str]]]:
    """Runs of entries sharing one time value, in the requested direction."""
    if descending:
        end = high
        while end > low:
            start = bisect_left(entries, (entries[end - 1][0],), low, end)
            yield entries[start:end]
            end = start
        return

    start = low
    while start < high:
        end = bisect_left(entries, (entries[start][0] + 1,), start, high)
        yield entries[start:end]
        start = end


def _unfinished_tail(
    index: OperationIndex, bucket: Bucket, query: SearchQuery, rest: list[SortKey]
) -> Iterator[SimOperation]:
    ids = bucket.unfinished_ids
    low, high = _id_range(ids, query.id)
    if rest[0].field == "id":
        span = range(high - 1, low - 1, -1) if rest[0].descending else range(low, high)
        return (index.operations[ids[i]] for i in span)
    return iter(_sorted([index.operations[ids[i]] for i in range(low, high)], rest))


def _chain(*parts: Iterator[SimOperation]) -> Iterator[SimOperation]:
    for part in parts:
        yield from part


def _sorted(ops: list[SimOperation], keys: list[SortKey]) -> list[SimOperation]:
    """Sort by several keys with mixed directions (stable sorts, last key first)."""
    for key in reversed(keys):
        ops.sort(key=_key_function(key), reverse=key.descending)
    return ops


def _key_function(key: SortKey) -> Callable[[SimOperation], Any]:
    if key.field == "id":
        return lambda op: op.id
    if key.field == "submitted":
        return lambda op: op.submitted_us
    missing = (0, 0) if key.descending else (1, 0)
    present = 1 if key.descending else 0
    return lambda op: missing if op.finished_us is None else (present, op.finished_us)
