"""The sizes and durations of a benchmark run: `short` for `make bench`, `long` for
`make bench-long` (the release check, full sizes and longer windows)."""

import msgspec


class Profile(msgspec.Struct, frozen=True, kw_only=True):
    """What one run measures, and for how long."""

    name: str
    steady_sizes: list[int]
    """Running operations of the steady-state runs (API, memory, scrape)."""
    baseline_sizes: list[int]
    """Sizes at which the per-operation baseline poller also runs."""
    scrape_sizes: list[int]
    """Sizes at which /metrics is hammered (need >= operation_series_limit)."""
    trickle_per_second: float
    settle_seconds: float
    api_window_seconds: float
    baseline_window_seconds: float
    scrape_window_seconds: float
    catchup_history: int
    catchup_rounds: int
    """Each publisher is reported by its median round (by events per second)."""
    naive_events: int
    latency_rate_per_second: float
    latency_window_seconds: float
    latency_intervals_seconds: list[float]
    profile_history: int


SHORT = Profile(
    name="short",
    steady_sizes=[0, 100, 1_000, 10_000, 50_000],
    baseline_sizes=[100, 1_000],
    scrape_sizes=[1_000, 10_000],
    trickle_per_second=1.0,
    settle_seconds=4.0,
    api_window_seconds=12.0,
    baseline_window_seconds=8.0,
    scrape_window_seconds=6.0,
    catchup_history=50_000,
    catchup_rounds=1,
    naive_events=10_000,
    latency_rate_per_second=5.0,
    latency_window_seconds=30.0,
    latency_intervals_seconds=[2.0, 0.5],
    profile_history=20_000,
)

LONG = Profile(
    name="long",
    steady_sizes=[0, 100, 1_000, 10_000, 100_000],
    baseline_sizes=[100, 1_000, 10_000],
    scrape_sizes=[1_000, 10_000],
    trickle_per_second=1.0,
    settle_seconds=20.0,
    api_window_seconds=60.0,
    baseline_window_seconds=30.0,
    scrape_window_seconds=30.0,
    catchup_history=100_000,
    catchup_rounds=2,
    naive_events=20_000,
    latency_rate_per_second=10.0,
    latency_window_seconds=300.0,
    latency_intervals_seconds=[2.0, 0.5],
    profile_history=100_000,
)

PROFILES = {profile.name: profile for profile in (SHORT, LONG)}
