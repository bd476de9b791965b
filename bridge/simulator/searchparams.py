"""The search query string: parse and check `GET /v1/operations` parameters.

Pure. Bad input raises `QueryError`, which the server turns into a 400
VALIDATION_ERROR whose payload names the parameter, as Toloka does.
"""

import re
from collections.abc import Iterable
from typing import Generic, Literal, TypeVar

import msgspec

from bridge.simulator.model import KNOWN_STATUSES
from bridge.simulator.wiretime import parse_wire_time

SortField = Literal["id", "submitted", "finished"]
_SORT_FIELDS: tuple[SortField, ...] = ("id", "submitted", "finished")
_BOUND_SUFFIXES = ("lt", "lte", "gt", "gte")
_KNOWN_PARAMS = frozenset(
    ["type", "status", "sort", "limit"]
    + [f"{field}_{suffix}" for field in _SORT_FIELDS for suffix in _BOUND_SUFFIXES]
)
_INTEGER = re.compile(r"[+-]?\d{1,12}")
_Value = TypeVar("_Value", str, int)


class QueryError(ValueError):
    """A search parameter is invalid; `field` and `code` go into the 400 payload."""

    def __init__(self, field: str, code: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.code = code
        self.message = message


class Bounds(msgspec.Struct, Generic[_Value]):
    """The `_lt`, `_lte`, `_gt`, `_gte` bounds given for one field."""

    lt: _Value | None = None
    lte: _Value | None = None
    gt: _Value | None = None
    gte: _Value | None = None

    @property
    def given(self) -> bool:
        """Whether any bound is set."""
        bounds = (self.lt, self.lte, self.gt, self.gte)
        return any(bound is not None for bound in bounds)

    def admits(self, value: _Value) -> bool:
        """Whether `value` lies within every bound."""
        return not (
            (self.lt is not None and value >= self.lt)
            or (self.lte is not None and value > self.lte)
            or (self.gt is not None and value <= self.gt)
            or (self.gte is not None and value < self.gte)
        )


class SortKey(msgspec.Struct, frozen=True):
    """One `sort` item: a field and a direction."""

    field: SortField
    descending: bool = False


class SearchQuery(msgspec.Struct, kw_only=True):
    """A checked search request."""

    type: str | None = None
    status: str | None = None
    id: Bounds[str] = msgspec.field(default_factory=Bounds)
    submitted: Bounds[int] = msgspec.field(default_factory=Bounds)
    finished: Bounds[int] = msgspec.field(default_factory=Bounds)
    sort: list[SortKey] = msgspec.field(default_factory=lambda: [SortKey("id")])
    limit: int = 50


def parse_search_params(
    pairs: Iterable[tuple[str, str]],
    *,
    default_limit: int,
    max_limit: int,
    reject_unknown: bool = False,
) -> SearchQuery:
    """Check the query-string pairs of a search; raise `QueryError` on bad input."""
    values: dict[str, str] = {}
    for name, value in pairs:
        if name not in _KNOWN_PARAMS:
            if reject_unknown:
                raise QueryError(
                    name, "VALUE_NOT_ALLOWED", f"unknown parameter {name!r}"
                )
            continue
        if name in values:
            raise QueryError(name, "VALUE_NOT_ALLOWED", f"{name!r} takes one value")
        if value == "":
            raise QueryError(name, "BLANK_STRING_NOT_ALLOWED", f"{name!r} is blank")
        values[name] = value

    query = SearchQuery(limit=_parse_limit(values, default_limit, max_limit))
    query.type = values.get("type")
    query.status = _parse_status(values.get("status"))
    query.id = Bounds(
        lt=values.get("id_lt"),
        lte=values.get("id_lte"),
        gt=values.get("id_gt"),
        gte=values.get("id_gte"),
    )
    query.submitted = _parse_time_bounds(values, "submitted")
    query.finished = _parse_time_bounds(values, "finished")
    if "sort" in values:
        query.sort = _parse_sort(values["sort"])
    return query


def _parse_limit(values: dict[str, str], default_limit: int, max_limit: int) -> int:
    text = values.get("limit")
    if text is None:
        return default_limit
    if not _INTEGER.fullmatch(text):
        raise QueryError(
            "limit", "INTEGER_EXPECTED", f"limit must be an integer: {text!r}"
        )

    limit = int(text)
    if limit < 1:
        raise QueryError("limit", "VALUE_LESS_THAN_MIN", f"limit must be >= 1: {limit}")
    if limit > max_limit:
        message = f"limit must be <= {max_limit}: {limit}"
        raise QueryError("limit", "VALUE_GREATER_THAN_MAX", message)
    return limit


def _parse_status(text: str | None) -> str | None:
    if text is None or text in KNOWN_STATUSES:
        return text
    expected = ", ".join(KNOWN_STATUSES)
    message = f"status must be one of {expected} (one value), got {text!r}"
    raise QueryError("status", "UNKNOWN_ENUM_VALUE", message)


def _parse_time_bounds(values: dict[str, str], field: str) -> Bounds[int]:
    bounds: Bounds[int] = Bounds()
    for suffix in _BOUND_SUFFIXES:
        name = f"{field}_{suffix}"
        if name in values:
            try:
                parsed = parse_wire_time(values[name], allow_offset=True)
            except ValueError as error:
                raise QueryError(name, "INVALID_DATE_TIME_SYNTAX", str(error)) from None
            setattr(bounds, suffix, parsed)
    return bounds


def _parse_sort(text: str) -> list[SortKey]:
    keys: list[SortKey] = []
    for item in text.split(","):
        descending = item.startswith("-")
        field = item[1:] if descending else item
        if field not in _SORT_FIELDS:
            message = (
                f"sort keys are id, submitted, finished (- for descending): {item!r}"
            )
            raise QueryError("sort", "INVALID_VALUE", message)
        if any(key.field == field for key in keys):
            raise QueryError(
                "sort", "DUPLICATE_VALUE_IN_ARRAY", f"{field!r} sorted twice"
            )
        keys.append(SortKey(field, descending))
    return keys
