"""Decoding Toloka's operations: lenient where the API is, strict about nonsense."""

from datetime import UTC, datetime

import msgspec
import pytest

from bridge.errors import PayloadError, ResponseError
from bridge.operation import (
    ItemRules,
    decode_item,
    decode_page,
    format_wire_datetime,
    parse_wire_datetime,
    read_tail,
)

NOW = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)
RULES = ItemRules()


def item(**fields: object) -> bytes:
    base: dict[str, object] = {
        "id": "57068577e4b0bf7b07a0256f",
        "type": "POOL.OPEN",
        "status": "RUNNING",
        "submitted": "2026-12-03T11:00:00.120",
        "started": "2026-12-03T11:00:01",
        "progress": 40,
        "parameters": {"pool_id": "21"},
    }
    base.update(fields)
    return msgspec.json.encode({k: v for k, v in base.items() if v is not None})


@pytest.mark.parametrize(
    ("text", "micros"),
    [
        ("2021-11-24T07:47:50", 0),
        ("2021-11-24T07:47:50.1", 100000),
        ("2021-11-24T07:47:50.120", 120000),
        ("2021-11-24T07:47:50.12012", 120120),
        ("2021-11-24T07:47:50.120123", 120123),
        ("2021-11-24T07:47:50.1201239", 120123),
    ],
)
def test_datetimes_with_any_fraction_length_parse_as_utc(
    text: str, micros: int
) -> None:
    """0 to 9 fraction digits, no offset: UTC, as the API sends them."""
    parsed = parse_wire_datetime(text)

    assert parsed.tzinfo is UTC
    assert parsed.microsecond == micros


@pytest.mark.parametrize("text", ["2021-11-24", "yesterday", "2021-11-24 07:47:50"])
def test_non_datetimes_are_refused(text: str) -> None:
    """Only full date-times in the wire shape are accepted."""
    with pytest.raises(ValueError, match="not a Toloka datetime"):
        parse_wire_datetime(text)


def test_format_round_trips() -> None:
    """Filters are sent in the wire format, no offset, microseconds kept."""
    moment = parse_wire_datetime("2021-11-24T07:47:50.120")
    assert format_wire_datetime(moment) == "2021-11-24T07:47:50.120000"


def test_unknown_fields_types_and_statuses_are_kept() -> None:
    """Newer API fields and values are data: kept byte for byte in raw."""
    raw = item(type="BRAND.NEW", status="CANCELLING", extra={"a": 1})
    seen = decode_item(raw, NOW, RULES)

    assert seen.operation_type == "BRAND.NEW"
    assert seen.status == "CANCELLING"
    assert bytes(seen.raw) == raw


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"id": None}, "missing_id"),
        ({"id": ""}, "missing_id"),
        ({"type": None}, "missing_type"),
        ({"submitted": "not a date"}, "bad_datetime"),
        ({"progress": 250}, "absurd_progress"),
        ({"progress": -1}, "absurd_progress"),
        (
            {"finished": "2026-12-03T10:00:00", "status": "SUCCESS"},
            "timestamps_out_of_order",
        ),
        ({"submitted": "2027-01-01T00:00:00"}, "future_timestamp"),
        ({"id": 17}, "malformed"),
    ],
)
def test_bad_items_are_rejected_with_a_reason(
    fields: dict[str, object], reason: str
) -> None:
    """Each kind of nonsense has its own bounded reason label."""
    with pytest.raises(PayloadError) as caught:
        decode_item(item(**fields), NOW, RULES)

    assert caught.value.reason == reason


def test_rejection_names_the_id_when_there_is_one() -> None:
    """Logs can point at the bad operation."""
    with pytest.raises(PayloadError) as caught:
        decode_item(item(progress=250), NOW, RULES)

    assert caught.value.operation_id == "57068577e4b0bf7b07a0256f"


def test_one_bad_item_does_not_spoil_the_page() -> None:
    """The rest of the page is used; the bad item is reported."""
    body = b'{"items": [' + item() + b"," + item(id=None) + b'], "has_more": true}'
    page = decode_page(body, NOW, RULES)

    assert [o.operation_id for o in page.observations] == ["57068577e4b0bf7b07a0256f"]
    assert [e.reason for e in page.rejected] == ["missing_id"]
    assert page.has_more
    assert page.item_count == 2


def test_page_tail_is_the_last_item_even_when_it_is_rejected() -> None:
    """A scan pages past bad items by the last one's id and readable timestamps."""
    bad = item(
        id="zz", type=None, submitted="yesterday", finished="2026-12-03T11:05:00"
    )
    page = decode_page(
        b'{"items": [' + item() + b"," + bad + b'], "has_more": true}', NOW, RULES
    )

    assert page.tail is not None
    assert page.tail.operation_id == "zz"
    assert page.tail.submitted is None
    assert page.tail.finished == datetime(2026, 12, 3, 11, 5, tzinfo=UTC)


@pytest.mark.parametrize(
    ("raw", "expected_id"),
    [
        (b'"garbage"', None),
        (b'{"id": ""}', None),
        (b'{"type": "POOL.OPEN"}', None),
        (b'{"id": 42, "submitted": 7}', "42"),
        (b'{"id": "a", "submitted": "2026-13-40T00:00:00"}', "a"),
    ],
)
def test_page_tail_reads_what_it_can(raw: bytes, expected_id: str | None) -> None:
    tail = read_tail(msgspec.Raw(raw))

    assert (None if tail is None else tail.operation_id) == expected_id
    assert tail is None or tail.submitted is None


def test_an_empty_page_has_no_tail() -> None:
    assert decode_page(b'{"items": [], "has_more": false}', NOW, RULES).tail is None


def test_a_body_that_is_not_a_page_is_a_response_error() -> None:
    """Truncated JSON is the request's failure (retried), not an item's."""
    with pytest.raises(ResponseError, match="not a page of operations"):
        decode_page(b'{"items": [', NOW, RULES)
