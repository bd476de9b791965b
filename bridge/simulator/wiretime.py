"""Toloka's wire datetimes: UTC without an offset, 0 to 6 fraction digits.

`2021-11-24T07:47:50.120` is the usual shape (3 digits); the real API also sends 0, 5
or 6 digits. A timestamp's value is what its string says: formatting truncates the
simulated time to the chosen number of digits, so sorting and filtering by the parsed
value always agree with what a client reads.
"""

import re
import time
from datetime import datetime, timedelta
from functools import lru_cache

from bridge.simulator.clock import MICROS_PER_SECOND

_WIRE = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,6}))?"
    r"(Z|[+-]\d{2}:\d{2})?"
)
_EPOCH = datetime(1970, 1, 1)
_ONE_MICROSECOND = timedelta(microseconds=1)
_TRUNCATION_STEPS = (1_000_000, 100_000, 10_000, 1_000, 100, 10, 1)


def truncate_us(epoch_us: int, digits: int) -> int:
    """Drop the sub-second digits that a string with `digits` digits cannot carry."""
    step = _TRUNCATION_STEPS[digits]
    return epoch_us - epoch_us % step


def format_wire_time(epoch_us: int, digits: int = 3) -> str:
    """Render `epoch_us` the way Toloka does, truncated to `digits` fraction digits."""
    if not 0 <= digits <= 6:
        raise ValueError(f"fraction digits must be 0-6, got {digits!r}")

    seconds, micros = divmod(epoch_us, MICROS_PER_SECOND)
    whole = _whole_seconds(seconds)
    if digits == 0:
        return whole
    return f"{whole}.{micros:06d}"[: len(whole) + 1 + digits]


@lru_cache(maxsize=8192)
def _whole_seconds(seconds: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))


def parse_wire_time(text: str, *, allow_offset: bool = False) -> int:
    """Parse a wire datetime into microseconds since the epoch.

    With `allow_offset`, a trailing `Z` or `+HH:MM` is accepted and converted to UTC
    (clients such as toloka-kit send `isoformat()` of aware datetimes).
    """
    match = _WIRE.fullmatch(text)
    if match is None or (match.group(8) and not allow_offset):
        raise ValueError(
            f"expected a UTC datetime like 2021-11-24T07:47:50.120, got {text!r}"
        )

    year, month, day, hour, minute, second = (int(match.group(i)) for i in range(1, 7))
    fraction = (match.group(7) or "").ljust(6, "0")
    try:
        moment = datetime(year, month, day, hour, minute, second, int(fraction))
    except ValueError as error:
        raise ValueError(f"not a valid date or time: {text!r} ({error})") from None

    moment -= _offset(match.group(8))
    return (moment - _EPOCH) // _ONE_MICROSECOND


def _offset(text: str | None) -> timedelta:
    """The UTC offset named by `Z` / `+HH:MM` / `-HH:MM` (zero when absent)."""
    if not text or text == "Z":
        return timedelta(0)

    sign = -1 if text[0] == "-" else 1
    hours, minutes = int(text[1:3]), int(text[4:6])
    return sign * timedelta(hours=hours, minutes=minutes)
