"""Paging scans over the operations search: by time (keyset) and by status.

The API pages by keyset only: a filter such as `submitted_gte` or `id_gt`, a sort and
`limit`, answered with `has_more`. Ids are opaque and not in time order, so a scan by
time sorts by `(field, id)` and moves a lower bound on `field` forward:

1. Ask for `field >= bound`, sorted by `field,id`.
2. From the page take the value `L` of the last valid item. The next page starts at
   `field >= L`, skipping the ids at `L` already yielded (they come back as the head
   of that page).
3. If every valid item of the page has the value `L`, bounding by time cannot move on:
   a full page of one timestamp would come back again. The scan then reads the ids at
   `L` alone, `field >= L & field <= L`, sorted by `id`, with `id_gt` set to the last
   id read, until `has_more` is false, and goes on with `field > L`.

Ids are compared only by the server (`id_gt`) and by set membership here, never by
Python string order, because the server's collation is not ours. Rejected (invalid)
items are passed through so the caller can count them, at most once per scan when
they still carry an id. They move the cursor only when a page with `has_more` has no
valid item: then the scan goes on after the page's last item as the server ordered
it (its id, and for a time scan its timestamp if that parses; see `PageTail`), so a
page full of bad items is skipped, not read again every cycle. If even that is
unreadable, the scan raises `ResponseError` rather than asking the same thing forever.

Cost: a time scan of `n` matching operations makes about `n / (limit - 1)` requests:
each page after the first re-reads the boundary ids, usually one. A timestamp shared by
more than a page of operations costs one extra request to leave it (`field > L`). So
1,000 operations with distinct timestamps and `limit` 300 take 4 requests; 1,000 that
share one timestamp take 5. A status scan (`sort=id`, `id_gt`) makes `ceil(n / limit)`
requests, plus one when `n` is a multiple of `limit` and the server says `has_more`.

The next query is decided by pure functions (`time_query`, `advance_time`,
`status_query`, `advance_status`) so the paging logic can be property-tested without
I/O; the async generators only run them against a client.
"""

import logging
from collections.abc import AsyncIterator, Callable, Sequence
from datetime import UTC, datetime
from typing import Literal, Protocol, TypeVar

import msgspec

from bridge.errors import OversizedError, PayloadError, ResponseError
from bridge.operation import DecodedPage, Observation
from bridge.toloka import SearchQuery

logger = logging.getLogger(__name__)

TimeField = Literal["submitted", "finished"]

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
"""The lower bound of a scan from the beginning: it also keeps unfinished operations
out of a scan by `finished`."""


class SearchClient(Protocol):
    """The part of `TolokaClient` a scan needs."""

    async def search(self, query: SearchQuery) -> DecodedPage: ...


class TimeCursor(msgspec.Struct, frozen=True, kw_only=True):
    """Where a scan by time stands.

    `subscan_after` unset: the next page is `field >= bound` (or `field > bound` when
    `inclusive` is false), sorted by `field,id`. Set: the next page is the ids at
    `bound` after `subscan_after`, sorted by `id`. `seen_at_bound` are ids at `bound`
    already yielded.
    """

    field: TimeField
    limit: int
    bound: datetime
    inclusive: bool = True
    seen_at_bound: frozenset[str] = frozenset()
    subscan_after: str | None = None


class StatusCursor(msgspec.Struct, frozen=True, kw_only=True):
    """Where a scan by status stands: the next page is the ids after `after`."""

    status: str
    limit: int
    after: str | None = None


AnyCursor = TypeVar("AnyCursor", TimeCursor, StatusCursor)


def first_time_cursor(
    field: TimeField, since: datetime | None, limit: int
) -> TimeCursor:
    if since is not None and since.tzinfo is None:
        raise ValueError(f"since must carry a time zone, got {since.isoformat()}")
    return TimeCursor(field=field, limit=limit, bound=EPOCH if since is None else since)


def time_query(cursor: TimeCursor) -> SearchQuery:
    """The request that reads the page after `cursor`."""
    field, bound = cursor.field, cursor.bound
    if cursor.subscan_after is not None:
        query = SearchQuery(sort="id", limit=cursor.limit, id_gt=cursor.subscan_after)
        bounds = {f"{field}_gte": bound, f"{field}_lte": bound}
    else:
        query = SearchQuery(sort=f"{field},id", limit=cursor.limit)
        bounds = {f"{field}_{'gte' if cursor.inclusive else 'gt'}": bound}
    return msgspec.structs.replace(query, **bounds)


def fresh_observations(
    cursor: TimeCursor, observations: Sequence[Observation]
) -> list[Observation]:
    """The observations of a page that this scan has not yielded yet."""
    return [
        item
        for item in observations
        if _in_range(cursor, _value(cursor, item))
        and item.operation_id not in cursor.seen_at_bound
    ]


def advance_time(cursor: TimeCursor, page: DecodedPage) -> TimeCursor | None:
    """The cursor after `page`, or None when the scan is complete."""
    if cursor.subscan_after is not None:
        return _advance_subscan(cursor, page)
    if not page.has_more:
        return None

    usable = _usable(cursor, page)
    if not usable:
        return _past_tail(cursor, page)

    last_value, last_item = usable[-1]
    if all(value == last_value for value, _ in usable):
        read = frozenset(item.operation_id for _, item in usable)
        return _enter_subscan(cursor, last_value, read, last_item.operation_id)

    if last_value <= cursor.bound:
        raise ResponseError(
            f"search by {cursor.field} from {cursor.bound.isoformat()} returned "
            "a page out of order; the cursor cannot move"
        )
    at_last = frozenset(item.operation_id for v, item in usable if v == last_value)
    return msgspec.structs.replace(
        cursor, bound=last_value, inclusive=True, seen_at_bound=at_last
    )


def status_query(cursor: StatusCursor) -> SearchQuery:
    return SearchQuery(
        sort="id", limit=cursor.limit, status=cursor.status, id_gt=cursor.after
    )


def advance_status(cursor: StatusCursor, page: DecodedPage) -> StatusCursor | None:
    """The cursor after `page`, or None when the scan is complete."""
    if not page.has_more:
        return None

    last_id = _last_id(page.observations, page, f"status {cursor.status}")
    if last_id == cursor.after:
        raise ResponseError(
            f"search by status {cursor.status} returned id {last_id!r} again"
        )
    return msgspec.structs.replace(cursor, after=last_id)


async def scan_by_time(
    client: SearchClient, field: TimeField, since: datetime | None, limit: int
) -> AsyncIterator[DecodedPage]:
    """Every operation with `field >= since`, in `(field, id)` order, each once.

    One page is yielded per request; its observations are only those not yielded
    before, its rejected items only those not passed through before.
    """
    cursor: TimeCursor | None = first_time_cursor(field, since, limit)
    passed: set[str] = set()
    while cursor is not None:
        cursor, page = await _read_fitting(client, cursor, time_query)
        fresh = fresh_observations(cursor, page.observations)
        yield _page_of(fresh, _unpassed(page.rejected, passed), page)
        cursor = advance_time(cursor, page)


async def scan_by_status(
    client: SearchClient, status: str, limit: int
) -> AsyncIterator[DecodedPage]:
    """Every operation with `status`, in id order, as the server returned them.

    One page is yielded per request. The cursor is the last valid id, so the scan
    relies on the server for order and yields each id once unless the server repeats
    ids across pages.
    """
    cursor: StatusCursor | None = StatusCursor(status=status, limit=limit)
    passed: set[str] = set()
    while cursor is not None:
        cursor, page = await _read_fitting(client, cursor, status_query)
        rejected = _unpassed(page.rejected, passed)
        yield _page_of(page.observations, rejected, page)
        cursor = advance_status(cursor, page)


async def _read_fitting(
    client: SearchClient, cursor: AnyCursor, query: Callable[[AnyCursor], SearchQuery]
) -> tuple[AnyCursor, DecodedPage]:
    """The page at `cursor`, asked again with half the limit while it is too large.

    The smaller limit stays for the rest of the scan. An operation too large on its
    own still raises `OversizedError`, which stops the bridge with a message naming
    `toloka.max_response_bytes`.
    """
    # TODO: halve on a search that timed out too; a slow huge page times out before
    # its size is known, and is now retried at the same size (chaos storm 3.12 notes).
    while True:
        try:
            return cursor, await client.search(query(cursor))
        except OversizedError as error:
            if cursor.limit <= 1:
                raise
            cursor = msgspec.structs.replace(cursor, limit=cursor.limit // 2)
            logger.warning("%s; asking again for %d at a time", error, cursor.limit)


def _advance_subscan(cursor: TimeCursor, page: DecodedPage) -> TimeCursor | None:
    if not page.has_more:
        return msgspec.structs.replace(
            cursor, inclusive=False, seen_at_bound=frozenset(), subscan_after=None
        )

    usable = [item for _, item in _usable(cursor, page)]
    where = f"ids at {cursor.field} = {cursor.bound.isoformat()}"
    last_id = _last_id(usable, page, where)
    if last_id == cursor.subscan_after:
        raise ResponseError(
            f"search for ids at {cursor.field} = {cursor.bound.isoformat()} "
            f"returned id {last_id!r} again"
        )
    return msgspec.structs.replace(cursor, subscan_after=last_id)


def _enter_subscan(
    cursor: TimeCursor, value: datetime, read: frozenset[str], last_id: str
) -> TimeCursor:
    """Read the ids at `value` page by page; `read` are the ids at it read so far."""
    seen = read | cursor.seen_at_bound if value == cursor.bound else read
    return msgspec.structs.replace(
        cursor, bound=value, inclusive=True, seen_at_bound=seen, subscan_after=last_id
    )


def _last_id(valid: Sequence[Observation], page: DecodedPage, where: str) -> str:
    """The id to page on from: the last valid item's, else the page's last item's."""
    if valid:
        return valid[-1].operation_id
    if page.tail is not None:
        return page.tail.operation_id
    raise _stuck(where, page)


def _past_tail(cursor: TimeCursor, page: DecodedPage) -> TimeCursor:
    """No valid item to page by: read the ids at the last item's timestamp after its
    id, then go on past that timestamp."""
    tail = page.tail
    value = None
    if tail is not None:
        value = tail.submitted if cursor.field == "submitted" else tail.finished
    if tail is None or value is None or not _in_range(cursor, value):
        raise _stuck(f"{cursor.field} from {cursor.bound.isoformat()}", page)
    return _enter_subscan(cursor, value, frozenset(), tail.operation_id)


def _usable(
    cursor: TimeCursor, page: DecodedPage
) -> list[tuple[datetime, Observation]]:
    """The valid items in the cursor's range with their values."""
    usable = []
    for item in page.observations:
        value = _value(cursor, item)
        if value is not None and _in_range(cursor, value):
            usable.append((value, item))
    return usable


def _stuck(where: str, page: DecodedPage) -> ResponseError:
    return ResponseError(
        f"search by {where} returned {page.item_count} items with has_more set and "
        f"none usable ({len(page.rejected)} rejected, "
        f"{len(page.observations)} out of range); the cursor cannot move past them"
    )


def _in_range(cursor: TimeCursor, value: datetime | None) -> bool:
    if value is None:
        return False
    if cursor.subscan_after is not None:
        return value == cursor.bound
    return value >= cursor.bound if cursor.inclusive else value > cursor.bound


def _value(cursor: TimeCursor, item: Observation) -> datetime | None:
    return item.submitted if cursor.field == "submitted" else item.finished


def _unpassed(rejected: list[PayloadError], passed: set[str]) -> list[PayloadError]:
    """Rejected items not yet passed through; an item without an id always passes."""
    fresh = []
    for error in rejected:
        if error.operation_id is not None and error.operation_id in passed:
            continue
        if error.operation_id is not None:
            passed.add(error.operation_id)
        fresh.append(error)
    return fresh


def _page_of(
    observations: list[Observation], rejected: list[PayloadError], page: DecodedPage
) -> DecodedPage:
    return DecodedPage(
        observations, rejected, page.has_more, page.item_count, page.tail
    )
