"""Wire datetimes of the Toloka simulator."""

import pytest

from bridge.simulator.wiretime import format_wire_time, parse_wire_time, truncate_us

MOMENT_US = parse_wire_time("2021-11-24T07:47:50.123456")


@pytest.mark.parametrize(
    ("digits", "expected"),
    [
        (0, "2021-11-24T07:47:50"),
        (3, "2021-11-24T07:47:50.123"),
        (5, "2021-11-24T07:47:50.12345"),
        (6, "2021-11-24T07:47:50.123456"),
    ],
)
def test_format_truncates_to_the_requested_fraction_digits(
    digits: int, expected: str
) -> None:
    """Formatting keeps exactly `digits` fraction digits, truncating the rest."""
    assert format_wire_time(MOMENT_US, digits) == expected
    assert parse_wire_time(expected) == truncate_us(MOMENT_US, digits)


@pytest.mark.parametrize(
    "text",
    [
        "2021-11-24T07:47:50",
        "2021-11-24T07:47:50.1",
        "2021-11-24T07:47:50.12",
        "2021-11-24T07:47:50.120",
        "2021-11-24T07:47:50.1200",
        "2021-11-24T07:47:50.12000",
        "2021-11-24T07:47:50.120000",
    ],
)
def test_parse_accepts_zero_to_six_fraction_digits(text: str) -> None:
    """Any fraction length 0-6 parses to the value it names."""
    whole = parse_wire_time("2021-11-24T07:47:50")
    fraction = text.partition(".")[2].ljust(6, "0")
    assert parse_wire_time(text) == whole + int(fraction or "0")


def test_parse_converts_an_offset_to_utc_only_when_allowed() -> None:
    """`Z` and `+HH:MM` are accepted for query bounds and converted to UTC."""
    utc = parse_wire_time("2021-11-24T07:47:50")
    assert parse_wire_time("2021-11-24T07:47:50Z", allow_offset=True) == utc
    assert parse_wire_time("2021-11-24T09:47:50+02:00", allow_offset=True) == utc
    with pytest.raises(ValueError, match="expected a UTC datetime"):
        parse_wire_time("2021-11-24T07:47:50Z")


@pytest.mark.parametrize(
    "text",
    ["yesterday", "2021-11-24 07:47:50", "2021-11-24T07:47:50.1234567", "2021-11-24"],
)
def test_parse_rejects_other_shapes(text: str) -> None:
    """Anything but the wire shape is an error that shows the bad value."""
    with pytest.raises(ValueError, match="expected a UTC datetime"):
        parse_wire_time(text)


def test_parse_rejects_impossible_dates() -> None:
    """A well-shaped but impossible date is an error, not a wrap-around."""
    with pytest.raises(ValueError, match="not a valid date"):
        parse_wire_time("2021-02-30T25:61:00.000")
