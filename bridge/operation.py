"""The operation as Toloka sends it, and its checked form, the `Observation`.

Toloka's operations arrive as JSON objects whose fields the bridge reads only in part:
`id`, `type`, `status`, the three timestamps and `progress`. The rest (`parameters`,
`details`, fields added later) is kept byte for byte in `Observation.raw` and
republished as it came. Unknown types and statuses are data, not errors.

An item is rejected (a `PayloadError` with a bounded `reason`) when it has no usable id
or type, a timestamp that does not parse, or values no real operation can have.
"""

import itertools
import re
from datetime import UTC, datetime, timedelta

import msgspec

from bridge.errors import PayloadError, ResponseError

PENDING = "PENDING"
RUNNING = "RUNNING"
SUCCESS = "SUCCESS"
FAIL = "FAIL"
TERMINAL_STATUSES = frozenset({SUCCESS, FAIL})
KNOWN_STATUSES = (PENDING, RUNNING, SUCCESS, FAIL)
REJECTION_REASONS = (
    "missing_id",
    "missing_type",
    "malformed",
    "bad_datetime",
    "absurd_progress",
    "future_timestamp",
    "timestamps_out_of_order",
)

_WIRE_DATETIME = re.compile(
    r"(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})(?:\.(\d{1,9}))?(Z|[+-]\d{2}:\d{2})?"
)


class WireOperation(msgspec.Struct, kw_only=True):
    """The fields the bridge reads; unknown fields are ignored here and kept in raw."""

    id: str
    type: str
    status: str
    submitted: str
    started: str | None = None
    finished: str | None = None
    progress: int | None = None


class WireTail(msgspec.Struct):
    """Just enough of any item, valid or not, to name it in a log line and to find
    where it stands in the server's order; read leniently."""

    id: str | int | None = None
    submitted: object = None
    finished: object = None


class WirePage(msgspec.Struct):
    """One answer of the search endpoint; items are decoded one by one."""

    items: list[msgspec.Raw]
    has_more: bool


class Observation(msgspec.Struct, frozen=True, kw_only=True):
    """One operation as seen at one moment, checked and with parsed timestamps."""

    operation_id: str
    operation_type: str
    status: str
    progress: int | None
    submitted: datetime
    started: datetime | None
    finished: datetime | None
    raw: msgspec.Raw

    @property
    def is_terminal(self) -> bool:
        return self.status in TERMINAL_STATUSES


class ItemRules(msgspec.Struct, frozen=True, kw_only=True):
    """Limits that tell an absurd item from a real one."""

    max_clock_skew_seconds: float = 300.0
    timestamp_tolerance_seconds: float = 1.0


class PageTail(msgspec.Struct, frozen=True, kw_only=True):
    """The last item of a page as the server ordered it, valid or not: its id and the
    timestamps a scan sorts by, each None when unreadable. A scan pages past a run
    of rejected items by it."""

    operation_id: str
    submitted: datetime | None
    finished: datetime | None


class DecodedPage(msgspec.Struct, frozen=True):
    """A search answer split into usable observations and rejected items."""

    observations: list[Observation]
    rejected: list[PayloadError]
    has_more: bool
    item_count: int
    tail: PageTail | None = None


_page_decoder = msgspec.json.Decoder(WirePage)
_operation_decoder = msgspec.json.Decoder(WireOperation)
_tail_decoder = msgspec.json.Decoder(WireTail)


def parse_wire_datetime(text: str) -> datetime:
    """Parse Toloka's UTC datetimes (0 to 9 fraction digits, offset optional)."""
    match = _WIRE_DATETIME.fullmatch(text)
    if match is None:
        raise ValueError(f"not a Toloka datetime: {text!r}")

    seconds, fraction, offset = match.groups()
    micros = (fraction or "").ljust(6, "0")[:6]
    parsed = datetime.fromisoformat(f"{seconds}.{micros}{offset or ''}")
    if parsed.tzinfo is None:
        return parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def format_wire_datetime(moment: datetime) -> str:
    """Format a moment the way Toloka's filters accept it: UTC, no offset."""
    return (
        moment.astimezone(UTC).replace(tzinfo=None).isoformat(timespec="microseconds")
    )


def decode_page(body: bytes, now: datetime, rules: ItemRules) -> DecodedPage:
    """Decode a search answer; a bad body raises, a bad item is only rejected."""
    try:
        page = _page_decoder.decode(body)
    except msgspec.DecodeError as error:
        raise ResponseError(
            f"search answer is not a page of operations: {error}"
        ) from error

    observations: list[Observation] = []
    rejected: list[PayloadError] = []
    for item in page.items:
        try:
            observations.append(decode_item(item, now, rules))
        except PayloadError as error:
            rejected.append(error)

    tail = read_tail(page.items[-1]) if page.items else None
    return DecodedPage(observations, rejected, page.has_more, len(page.items), tail)


def read_tail(item: msgspec.Raw) -> PageTail | None:
    """The position of an item in the server's order; None if it has no id."""
    try:
        wire = _tail_decoder.decode(item)
    except msgspec.DecodeError:
        return None
    if wire.id is None or wire.id == "":
        return None
    return PageTail(
        operation_id=str(wire.id),
        submitted=_lenient_timestamp(wire.submitted),
        finished=_lenient_timestamp(wire.finished),
    )


def _lenient_timestamp(value: object) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return parse_wire_datetime(value)
    except ValueError:
        return None


def decode_item(
    item: bytes | msgspec.Raw, now: datetime, rules: ItemRules
) -> Observation:
    """Check one operation object; raise `PayloadError` naming what is wrong."""
    observation = read_operation(item)
    _check_plausible(observation, now, rules)
    return observation


def read_operation(item: bytes | msgspec.Raw) -> Observation:
    """Decode one operation object without judging its values (see `decode_item`)."""
    raw = item if isinstance(item, msgspec.Raw) else msgspec.Raw(item)
    try:
        wire = _operation_decoder.decode(raw)
    except msgspec.DecodeError as error:
        raise _rejection(raw, error) from error

    if not wire.id:
        raise PayloadError("operation has an empty id", "missing_id", None)
    if not wire.type:
        raise PayloadError(
            f"operation {wire.id!r} has an empty type", "missing_type", wire.id
        )
    if not wire.status:
        raise PayloadError(
            f"operation {wire.id!r} has an empty status", "malformed", wire.id
        )

    return Observation(
        operation_id=wire.id,
        operation_type=wire.type,
        status=wire.status,
        progress=wire.progress,
        submitted=_timestamp(wire, "submitted", wire.submitted),
        started=_optional_timestamp(wire, "started", wire.started),
        finished=_optional_timestamp(wire, "finished", wire.finished),
        raw=raw,
    )


def _rejection(raw: msgspec.Raw, error: msgspec.DecodeError) -> PayloadError:
    """Name a structurally bad item as precisely as its remains allow."""
    message = str(error)
    operation_id = _salvage_id(raw)
    if "missing required field `id`" in message:
        reason = "missing_id"
    elif "missing required field `type`" in message:
        reason = "missing_type"
    else:
        reason = "malformed"
    return PayloadError(
        f"operation {operation_id!r} rejected: {message}", reason, operation_id
    )


def _salvage_id(raw: msgspec.Raw) -> str | None:
    try:
        found = _tail_decoder.decode(raw).id
    except msgspec.DecodeError:
        return None
    return None if found is None else str(found)


def _timestamp(wire: WireOperation, field: str, text: str) -> datetime:
    try:
        return parse_wire_datetime(text)
    except ValueError as error:
        message = f"operation {wire.id!r} has a bad `{field}`: {text!r}"
        raise PayloadError(message, "bad_datetime", wire.id) from error


def _optional_timestamp(
    wire: WireOperation, field: str, text: str | None
) -> datetime | None:
    return None if text is None else _timestamp(wire, field, text)


def _check_plausible(observation: Observation, now: datetime, rules: ItemRules) -> None:
    """Reject values that no real operation has, before they poison watermarks."""
    operation_id = observation.operation_id
    if observation.progress is not None and not 0 <= observation.progress <= 100:
        message = f"operation {operation_id!r} has progress {observation.progress!r}"
        raise PayloadError(
            message + ", expected 0 to 100", "absurd_progress", operation_id
        )

    latest = now + timedelta(seconds=rules.max_clock_skew_seconds)
    tolerance = timedelta(seconds=rules.timestamp_tolerance_seconds)
    stamps = [observation.submitted, observation.started, observation.finished]
    known = [stamp for stamp in stamps if stamp is not None]
    if max(known) > latest:
        message = (
            f"operation {operation_id!r} has a timestamp after {latest.isoformat()}"
        )
        raise PayloadError(message, "future_timestamp", operation_id)

    if any(later + tolerance < earlier for earlier, later in _ordered_pairs(stamps)):
        message = f"operation {operation_id!r} has timestamps out of order: {stamps!r}"
        raise PayloadError(message, "timestamps_out_of_order", operation_id)


def _ordered_pairs(
    stamps: list[datetime | None],
) -> list[tuple[datetime, datetime]]:
    """Pairs (earlier, later) that must keep their order: submitted, started, ended."""
    present = [stamp for stamp in stamps if stamp is not None]
    return list(itertools.pairwise(present))
