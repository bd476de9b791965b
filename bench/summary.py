"""The headline rows: each metric next to its reference(s) from the same run, and the
ratio. Shared by the Markdown table and the JSON (`summary`)."""

import math

from bench.results import (
    ApiModel,
    BenchResults,
    CatchUp,
    LatencyRun,
    Row,
    ScrapeWindow,
    SteadyRun,
)

TOLOKA_LIMIT_PER_SECOND = 300.0
LIMIT_TEXT = f"{TOLOKA_LIMIT_PER_SECOND:.0f} req/s"
KIT_INTERVAL_SECONDS = 1.0


def headline(results: BenchResults) -> list[Row]:
    rows: list[Row] = []
    rows += api_rows(results.steady)
    if results.catchup is not None:
        rows += catchup_rows(results.catchup)
    rows += [latency_row(run) for run in results.latency]
    rows += memory_rows(results.steady)
    rows += scrape_rows(results.steady)
    return rows


def baseline_rate(steady: list[SteadyRun]) -> float:
    """Measured GETs per operation per second of the baseline (1.0 if not run)."""
    rates = [r.baseline.requests_per_operation_per_second for r in steady if r.baseline]
    return max(rates) if rates else 1.0 / KIT_INTERVAL_SECONDS


def api_model(steady: list[SteadyRun]) -> ApiModel | None:
    """Least-squares line through requests per cycle against running operations."""
    points = [(r.running_measured, r.bridge.requests_per_cycle) for r in steady]
    if len(points) < 2:
        return None
    n = len(points)
    mean_x = sum(x for x, _ in points) / n
    mean_y = sum(y for _, y in points) / n
    spread = sum((x - mean_x) ** 2 for x, _ in points)
    slope = sum((x - mean_x) * (y - mean_y) for x, y in points) / spread
    fixed = mean_y - slope * mean_x
    interval = steady[0].bridge.interval_seconds
    per_op_rate = baseline_rate(steady)
    budget_per_cycle = TOLOKA_LIMIT_PER_SECOND * interval
    return ApiModel(
        fixed=fixed,
        per_operation=slope,
        interval_seconds=interval,
        max_operations_under_limit=(budget_per_cycle - fixed) / slope,
        baseline_requests_per_operation_second=per_op_rate,
        baseline_max_operations_under_limit=TOLOKA_LIMIT_PER_SECOND / per_op_rate,
    )


def api_rows(steady: list[SteadyRun]) -> list[Row]:
    per_op_rate = baseline_rate(steady)
    rows = [_api_row(run, per_op_rate) for run in steady if run.running_target > 0]
    model = api_model(steady)
    if model is not None:
        rows.append(_capacity_row(model, steady))
    return rows


def _api_row(run: SteadyRun, per_op_rate: float) -> Row:
    """Requests per cycle and per second against one GET per operation per second."""
    n = run.running_measured
    window = run.bridge
    if run.baseline is not None:
        per_second = run.baseline.requests_per_second * n / run.baseline.operations
        source = (
            f"measured: {run.baseline.requests_per_second:,.0f}/s for "
            f"{run.baseline.operations:,} ops"
        )
    else:
        per_second = n * per_op_rate
        source = "computed: N x the measured per-op rate"
    per_round = per_second * KIT_INTERVAL_SECONDS
    slow = ""
    if window.mean_cycle_seconds > window.interval_seconds:
        slow = f" (cycle {window.mean_cycle_seconds:.1f} s > interval)"
    return Row(
        metric=f"API requests with {_count(n)} running operations",
        bridge=(
            f"{window.requests_per_cycle:.1f} per {window.interval_seconds:g} s "
            f"cycle = {window.requests_per_second:,.1f}/s{slow}"
        ),
        reference=(
            f"one GET per op per 1 s (toloka-kit wait_operation): "
            f"{per_round:,.0f} per round = {per_second:,.0f}/s ({source})"
        ),
        ratio=(
            f"{per_round / window.requests_per_cycle:,.0f}x fewer per cycle, "
            f"{per_second / window.requests_per_second:,.0f}x fewer per second"
        ),
        values={
            "bridge_per_cycle": window.requests_per_cycle,
            "bridge_per_second": window.requests_per_second,
            "baseline_per_round": per_round,
            "baseline_per_second": per_second,
        },
    )


def _capacity_row(model: ApiModel, steady: list[SteadyRun]) -> Row:
    largest = max(steady, key=lambda r: r.running_measured)
    bridge_max = model.max_operations_under_limit
    baseline_max = model.baseline_max_operations_under_limit
    ops_per_request = 1 / model.per_operation
    return Row(
        metric=f"Operations watchable under Toloka's {LIMIT_TEXT}",
        bridge=(
            f"~{_count(bridge_max)} at {model.interval_seconds:g} s (fit: "
            f"{model.fixed:.1f} + N/{ops_per_request:,.0f} requests per cycle); "
            f"measured {_count(largest.running_measured)} at "
            f"{largest.bridge.requests_per_second:,.0f} req/s"
        ),
        reference=f"per-op polling at 1 s: {_count(baseline_max)}",
        ratio=f"{bridge_max / baseline_max:,.0f}x more",
        values={"bridge": bridge_max, "baseline": baseline_max},
    )


def catchup_rows(catchup: CatchUp) -> list[Row]:
    return [_throughput_row(catchup), _efficiency_row(catchup), _total_row(catchup)]


def _throughput_row(catchup: CatchUp) -> Row:
    bridge = catchup.bridge.events_per_second
    ceiling = catchup.ceiling.events_per_second
    naive = catchup.naive.events_per_second
    operations, events = _count(catchup.operations), _count(catchup.seen_events)
    return Row(
        metric=f"Catch-up throughput ({operations} finished ops, {events} events)",
        bridge=f"{bridge:,.0f} events/s",
        reference=(
            f"ceiling (same events, plain aiokafka): {ceiling:,.0f}/s; naive (dict + "
            f"json + await each send, {_count(catchup.naive.events)} events): "
            f"{naive:,.0f}/s"
        ),
        ratio=f"{bridge / ceiling:.0%} of ceiling; {bridge / naive:.1f}x naive",
        values={"bridge": bridge, "ceiling": ceiling, "naive": naive},
    )


def _efficiency_row(catchup: CatchUp) -> Row:
    bridge = catchup.bridge.events_per_cpu_second
    ceiling = catchup.ceiling.events_per_cpu_second
    naive = catchup.naive.events_per_cpu_second
    return Row(
        metric="Catch-up CPU efficiency (events per CPU-second of the publisher)",
        bridge=f"{bridge:,.0f}",
        reference=f"ceiling {ceiling:,.0f}; naive {naive:,.0f}",
        ratio=f"{bridge / ceiling:.0%} of ceiling; {bridge / naive:.1f}x naive",
        values={"bridge": bridge, "ceiling": ceiling, "naive": naive},
    )


def _total_row(catchup: CatchUp) -> Row:
    bridge = catchup.bridge.total_seconds
    ceiling = catchup.ceiling.total_seconds
    return Row(
        metric="Catch-up wall time, launch to last event visible",
        bridge=f"{bridge:.1f} s ({catchup.api_requests:,} API requests)",
        reference=f"ceiling {ceiling:.1f} s (Kafka only, no API)",
        ratio=f"{bridge / ceiling:.1f}x the ceiling",
        values={"bridge": bridge, "ceiling": ceiling},
    )


def latency_row(run: LatencyRun) -> Row:
    latency = run.latency
    return Row(
        metric=(
            f"Detection latency, interval {run.interval_seconds:g} s "
            f"({latency.count:,} transitions)"
        ),
        bridge=(
            f"p50 {latency.p50:.2f} s, p95 {latency.p95:.2f} s, "
            f"p99 {latency.p99:.2f} s, max {latency.max:.2f} s"
        ),
        reference=(
            f"configured interval {run.interval_seconds:g} s, lag "
            f"{run.lag_seconds:g} s (bridge made {run.requests_per_second:.1f} API "
            f"requests/s); {run.seen_transitions}/{run.truth_transitions} truth "
            f"transitions seen, {run.misdated} misdated"
        ),
        ratio=(
            f"p99 = {latency.p99 / run.interval_seconds:.2f}x interval, "
            f"{latency.p99 / run.lag_seconds:.3f}x lag"
        ),
        values={
            "p50": latency.p50,
            "p95": latency.p95,
            "p99": latency.p99,
            "max": latency.max,
        },
    )


def memory_rows(steady: list[SteadyRun]) -> list[Row]:
    idle = next((r for r in steady if r.running_target == 0), None)
    if idle is None:
        return []
    per_op_baseline = baseline_bytes_per_operation(steady)
    rows = []
    for run in steady:
        if run.running_target == 0 or run.tracked < 5_000:
            continue
        per_op = (run.rss_bytes - idle.rss_bytes) / run.tracked
        reference = f"idle bridge (0 tracked): {_mib(idle.rss_bytes)}"
        ratio = f"{_count(per_op)} B per tracked op"
        if per_op_baseline is not None:
            reference += f"; per-op poller: {_count(per_op_baseline)} B per watched op"
            ratio += f" ({per_op_baseline / per_op:.1f}x less than the poller)"
        rows.append(
            Row(
                metric=f"Bridge RSS with {_count(run.tracked)} tracked ops",
                bridge=_mib(run.rss_bytes),
                reference=reference,
                ratio=ratio,
                values={"rss_bytes": run.rss_bytes, "bytes_per_op": per_op},
            )
        )
    return rows


def baseline_bytes_per_operation(steady: list[SteadyRun]) -> float | None:
    runs = sorted(
        (r.baseline for r in steady if r.baseline), key=lambda b: b.operations
    )
    if len(runs) < 2 or runs[-1].operations == runs[0].operations:
        return None
    grown = runs[-1].rss_bytes - runs[0].rss_bytes
    return grown / (runs[-1].operations - runs[0].operations)


def scrape_rows(steady: list[SteadyRun]) -> list[Row]:
    return [_scrape_row(run, run.scrape) for run in steady if run.scrape is not None]


def _scrape_row(run: SteadyRun, scrape: ScrapeWindow) -> Row:
    quiet = scrape.quiet_mean_cycle_seconds
    scraped = scrape.scraped_mean_cycle_seconds
    running = _count(run.running_measured)
    kib = scrape.body_bytes / 1024
    return Row(
        metric=(
            f"GET /metrics, {scrape.progress_series:,} per-op series "
            f"({running} running, {kib:,.0f} KiB)"
        ),
        bridge=(
            f"median {_ms(scrape.scrape.p50)}, p95 {_ms(scrape.scrape.p95)} "
            f"({scrape.scrape.count} back-to-back)"
        ),
        reference=(
            f"poll cycle {_ms(quiet)} quiet vs {_ms(scraped)} while scraped; "
            f"/healthz p99 {_ms(scrape.quiet_healthz.p99)} -> "
            f"{_ms(scrape.scraped_healthz.p99)}"
        ),
        ratio=f"cycle {_ratio(scraped, quiet)} while scraped nonstop",
        values={
            "scrape_p50": scrape.scrape.p50,
            "scrape_p95": scrape.scrape.p95,
            "cycle_quiet": quiet,
            "cycle_scraped": scraped,
        },
    )


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms"


def _ratio(value: float, reference: float) -> str:
    if not reference or math.isnan(reference) or math.isnan(value):
        return "n/a"
    return f"{value / reference:.1f}x"


def _count(value: float) -> str:
    if value >= 10_000:
        return f"{value / 1000:,.0f}k"
    return f"{value:,.0f}"


def _mib(value: float) -> str:
    return f"{value / 2**20:,.1f} MiB"
