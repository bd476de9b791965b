"""What a benchmark run found: one Struct per scenario, all of it written to JSON."""

import msgspec


class Distribution(msgspec.Struct, kw_only=True):
    """Summary of a sample of durations, in seconds."""

    count: int
    p50: float
    p95: float
    p99: float
    max: float
    mean: float


class BridgeWindow(msgspec.Struct, kw_only=True):
    """The bridge over one steady-state measurement window."""

    cycles: int
    window_seconds: float
    requests: int
    requests_by_endpoint: dict[str, int]
    requests_from_bridge_metrics: int
    requests_per_cycle: float
    requests_per_second: float
    interval_seconds: float
    mean_cycle_seconds: float
    cpu_seconds_per_cycle: float
    cpu_share: float


class BaselineWindow(msgspec.Struct, kw_only=True):
    """The per-operation poller over its measurement window."""

    operations: int
    interval_seconds: float
    window_seconds: float
    requests: int
    errors: int
    requests_per_second: float
    target_requests_per_second: float
    requests_per_operation_per_second: float
    mean_request_seconds: float
    cpu_share: float
    rss_bytes: int


class ScrapeWindow(msgspec.Struct, kw_only=True):
    """/metrics hammered back to back, next to a quiet window of the same length."""

    progress_series: int
    series_overflow: float
    samples: int
    body_bytes: int
    scrape: Distribution
    quiet_cycles: int
    scraped_cycles: int
    quiet_mean_cycle_seconds: float
    scraped_mean_cycle_seconds: float
    quiet_healthz: Distribution
    scraped_healthz: Distribution


class SteadyRun(msgspec.Struct, kw_only=True):
    """One steady-state run with `running` operations in the simulator."""

    running_target: int
    running_measured: int
    tracked: int
    initial_load_seconds: float
    rss_bytes: int
    bridge: BridgeWindow
    baseline: BaselineWindow | None = None
    scrape: ScrapeWindow | None = None


class PublisherRun(msgspec.Struct, kw_only=True):
    """One publisher of the catch-up, as a consumer saw its output."""

    name: str
    events: int
    stream_seconds: float
    events_per_second: float
    total_seconds: float
    cpu_seconds: float
    events_per_cpu_second: float
    peak_rss_bytes: int


class CatchUpRound(msgspec.Struct, kw_only=True):
    """One round of the catch-up: a fresh simulator, a cold bridge, the references."""

    expected_events: int
    api_requests: int
    bridge: PublisherRun
    ceiling: PublisherRun
    ceiling_batch: PublisherRun
    naive: PublisherRun


class CatchUp(msgspec.Struct, kw_only=True):
    """A cold start with `poll.start=all` over finished history."""

    operations: int
    expected_events: int
    seen_events: int
    api_requests: int
    bridge: PublisherRun
    ceiling: PublisherRun
    naive: PublisherRun
    per_transaction: int
    ceiling_batch: PublisherRun | None = None
    rounds: list[CatchUpRound] = msgspec.field(default_factory=list)


class LatencyRun(msgspec.Struct, kw_only=True):
    """Occurred-at (simulator truth) to visible to a read_committed consumer."""

    interval_seconds: float
    lag_seconds: float
    window_seconds: float
    requests_per_second: float
    truth_transitions: int
    seen_transitions: int
    inferred: int
    misdated: int
    latency: Distribution
    samples: list[float]


class ProfileSummary(msgspec.Struct, kw_only=True):
    """Where the bridge's CPU went during a profiled catch-up."""

    operations: int
    seconds: float
    text_path: str
    self_time: list[tuple[str, float]]
    inclusive_time: list[tuple[str, float]]
    self_time_by_package: list[tuple[str, float]]


class Machine(msgspec.Struct, kw_only=True):
    cpus: int
    memory_bytes: int
    python: str
    platform: str
    load_average_at_start: list[float]


class Row(msgspec.Struct, kw_only=True):
    """One line of the results table."""

    metric: str
    bridge: str
    reference: str
    ratio: str
    values: dict[str, float] = msgspec.field(default_factory=dict)


class ApiModel(msgspec.Struct, kw_only=True):
    """Requests per cycle = fixed + per_operation * N, fitted to the runs."""

    fixed: float
    per_operation: float
    interval_seconds: float
    max_operations_under_limit: float
    baseline_requests_per_operation_second: float
    baseline_max_operations_under_limit: float


class BenchResults(msgspec.Struct, kw_only=True):
    """Everything one run measured."""

    profile: str
    started_at: str
    duration_seconds: float
    machine: Machine
    bootstrap: str
    steady: list[SteadyRun] = msgspec.field(default_factory=list)
    catchup: CatchUp | None = None
    latency: list[LatencyRun] = msgspec.field(default_factory=list)
    profiling: ProfileSummary | None = None
    summary: list[Row] = msgspec.field(default_factory=list)
    api_model: ApiModel | None = None
    errors: list[str] = msgspec.field(default_factory=list)
