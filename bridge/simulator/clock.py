"""Clocks for the simulator: the wall clock, and a manual one that tests move by hand.

Simulated time is kept as integer microseconds since the Unix epoch (UTC), the
resolution of Toloka's wire datetimes, so comparisons and sorting are exact.
"""

import time
from typing import Protocol

MICROS_PER_SECOND = 1_000_000


class Clock(Protocol):
    """Tells the simulator what time it is."""

    def now_us(self) -> int:
        """Return the current time in microseconds since the epoch."""
        ...


class SystemClock:
    """The wall clock."""

    def now_us(self) -> int:
        """Return the current wall-clock time in microseconds since the epoch."""
        return time.time_ns() // 1000


class ManualClock:
    """A clock that only moves when told to; for tests and replays."""

    def __init__(self, start_us: int) -> None:
        self._now_us = start_us

    def now_us(self) -> int:
        """Return the time the clock was last set to."""
        return self._now_us

    def advance(self, seconds: float) -> None:
        """Move the clock forward by `seconds` (never backward)."""
        if seconds < 0:
            raise ValueError(f"a clock cannot go back: advance({seconds!r})")
        self._now_us += round(seconds * MICROS_PER_SECOND)


def seconds_to_us(seconds: float) -> int:
    """Convert float seconds to whole microseconds."""
    return round(seconds * MICROS_PER_SECOND)
