"""The detail sections of `latest.md`, one per scenario, below the headline table."""

from collections.abc import Iterable, Sequence

from bench.profiles import PROFILES
from bench.results import BenchResults, CatchUp, ProfileSummary, SteadyRun

PROFILE_STAGES = (
    ("fetch + decode (Toloka client)", "search bridge/toloka.py"),
    ("change detection", "observe bridge/cycle.py"),
    ("publish: send events", "_send_events bridge/publisher.py"),
    ("publish: send state records", "_send_state bridge/publisher.py"),
    ("  of both: aiokafka send() per record", "send aiokafka/producer/producer.py"),
    ("  of that: murmur2 partitioner", "murmur2 aiokafka/partitioner.py"),
    ("CloudEvents headers", "event_headers bridge/events.py"),
    ("metrics after each batch", "batch_committed bridge/metrics.py"),
)


def steady_details(steady: Sequence[SteadyRun]) -> str:
    if not steady:
        return ""
    rows = [
        [
            f"{r.running_target:,}",
            f"{r.running_measured:,}",
            f"{r.tracked:,}",
            f"{r.initial_load_seconds:.1f}",
            f"{r.bridge.cycles}",
            f"{r.bridge.requests_per_cycle:.2f}",
            f"{r.bridge.requests_per_second:.2f}",
            f"{r.bridge.requests_from_bridge_metrics:,} / {r.bridge.requests:,}",
            f"{r.bridge.mean_cycle_seconds:.3f}",
            f"{r.bridge.cpu_share:.1%}",
            f"{r.rss_bytes / 2**20:.1f}",
        ]
        for r in steady
    ]
    table = markdown_table(
        [
            "running (target)",
            "running (sim)",
            "tracked",
            "initial load s",
            "cycles",
            "requests/cycle",
            "requests/s",
            "requests bridge/sim",
            "cycle s",
            "bridge CPU",
            "RSS MiB",
        ],
        rows,
    )
    baseline_rows = [
        [
            f"{r.baseline.operations:,}",
            f"{r.baseline.target_requests_per_second:,.0f}",
            f"{r.baseline.requests_per_second:,.1f}",
            f"{r.baseline.requests_per_operation_per_second:.3f}",
            f"{r.baseline.errors}",
            f"{r.baseline.mean_request_seconds * 1000:.1f}",
            f"{r.baseline.cpu_share:.1%}",
            f"{r.baseline.rss_bytes / 2**20:.1f}",
        ]
        for r in steady
        if r.baseline
    ]
    parts = [
        "## Steady state: API requests, memory\n\n"
        "Simulator: N long-running operations (mean run 30 min) plus a trickle of new "
        "ones; the bridge with default settings (2 s interval, 60 s lag, page 300). "
        "Requests are counted by the simulator over whole poll cycles (window from the "
        "end of one cycle to the end of another) and cross-checked with the bridge's "
        "own `toloka_bridge_api_requests_total`. RSS is the median over the window.",
        table,
    ]
    if baseline_rows:
        parts.append(
            "Baseline poller (`bench/baseline.py`, one GET per unfinished operation "
            "per second, aiohttp, 20 connections), same simulator, after the bridge "
            "stopped:"
        )
        parts.append(
            markdown_table(
                [
                    "operations",
                    "target req/s",
                    "measured req/s",
                    "req per op per s",
                    "errors",
                    "mean request ms",
                    "poller CPU",
                    "poller RSS MiB",
                ],
                baseline_rows,
            )
        )
    parts.append(_scrape_details(steady))
    return "\n\n".join(part for part in parts if part)


def _scrape_details(steady: Sequence[SteadyRun]) -> str:
    rows = []
    for run in steady:
        s = run.scrape
        if s is None:
            continue
        rows.append(
            [
                f"{run.running_measured:,}",
                f"{s.progress_series:,} (+{s.series_overflow:,.0f} over cap)",
                f"{s.samples:,}",
                f"{s.body_bytes / 1024:,.0f}",
                f"{_ms(s.scrape.p50)} / {_ms(s.scrape.p95)} / {_ms(s.scrape.max)}",
                f"{_ms(s.quiet_mean_cycle_seconds, 0)} -> "
                f"{_ms(s.scraped_mean_cycle_seconds, 0)}",
                f"{s.quiet_cycles} -> {s.scraped_cycles}",
                f"{_ms(s.quiet_healthz.p50)}/{_ms(s.quiet_healthz.p99)} -> "
                f"{_ms(s.scraped_healthz.p50)}/{_ms(s.scraped_healthz.p99)}",
            ]
        )
    if not rows:
        return ""
    return (
        "### /metrics scrape cost\n\n"
        "`http.operation_series_limit` = 1000 (default). A quiet window, then the same "
        "length with `GET /metrics` fetched back to back (the worst case; Prometheus "
        "scrapes every 15-60 s). `/healthz` is asked every 0.2 s in both windows: its "
        "answer time shows how long the event loop was held.\n\n"
        + markdown_table(
            [
                "running",
                "progress series",
                "samples",
                "body KiB",
                "scrape p50/p95/max ms",
                "cycle ms quiet -> scraped",
                "cycles",
                "/healthz p50/p99 ms quiet -> scraped",
            ],
            rows,
        )
    )


def catchup_details(catchup: CatchUp | None) -> str:
    if catchup is None:
        return ""
    runs = [catchup.bridge, catchup.ceiling]
    if catchup.ceiling_batch is not None:
        runs.append(catchup.ceiling_batch)
    runs.append(catchup.naive)
    rows = [
        [
            run.name,
            f"{run.events:,}",
            f"{run.stream_seconds:.2f}",
            f"{run.events_per_second:,.0f}",
            f"{run.cpu_seconds:.2f}",
            f"{run.events_per_cpu_second:,.0f}",
            f"{run.total_seconds:.1f}",
            f"{run.peak_rss_bytes / 2**20:.0f}",
        ]
        for run in runs
    ]
    return (
        "## Catch-up\n\n"
        f"{catchup.operations:,} finished operations in the simulator, a cold bridge "
        f"with `poll.start=all`: {catchup.expected_events:,} status events expected "
        f"(ground truth), {catchup.seen_events:,} read back by a read_committed "
        f"consumer; {catchup.api_requests:,} API requests. References publish the "
        f"events the bridge wrote, read back from its topic, with acks=all, "
        f"idempotence and {catchup.per_transaction:,} events per transaction. Rates "
        "count the events visible after the first committed batch over the time from "
        "the first to the last visible batch (start-up excluded); CPU is the "
        "publisher process's between the same moments. `ceiling-batch` is a prototype "
        "(records grouped per partition with `create_batch`/`send_batch`), not what "
        "the bridge does today.\n\n"
        + markdown_table(
            [
                "publisher",
                "events",
                "stream s",
                "events/s",
                "CPU s",
                "events/CPU-s",
                "total s",
                "peak RSS MiB",
            ],
            rows,
        )
    )


def latency_details(results: BenchResults) -> str:
    if not results.latency:
        return ""
    rows = [
        [
            f"{run.interval_seconds:g}",
            f"{run.lag_seconds:g}",
            f"{run.requests_per_second:.1f}",
            f"{run.seen_transitions:,} / {run.truth_transitions:,}",
            f"{run.inferred:,}",
            f"{run.misdated}",
            f"{run.latency.p50:.3f}",
            f"{run.latency.p95:.3f}",
            f"{run.latency.p99:.3f}",
            f"{run.latency.max:.3f}",
            f"{run.latency.mean:.3f}",
        ]
        for run in results.latency
    ]
    profile = PROFILES[results.profile]
    return (
        "## Detection latency\n\n"
        f"{profile.latency_rate_per_second:g} new operations per second (default "
        "lifecycles: ~2 s queued, ~10 s running, 10% instant), one bridge per interval "
        "running side by side on the same simulator. Latency = moment a read_committed "
        "consumer received the event - the transition's time in the simulator's ground "
        "truth; every truth transition inside the window is looked up.\n\n"
        + markdown_table(
            [
                "interval s",
                "lag s",
                "API req/s",
                "seen / truth",
                "inferred",
                "misdated",
                "p50 s",
                "p95 s",
                "p99 s",
                "max s",
                "mean s",
            ],
            rows,
        )
    )


def profile_details(profiling: ProfileSummary | None) -> str:
    if profiling is None:
        return ""
    inclusive = dict(profiling.inclusive_time)
    packages = profiling.self_time_by_package
    busy = sum(t for name, t in packages if not name.startswith("idle"))
    stages = [
        [
            label,
            f"{find_time(inclusive, key):.2f}",
            f"{find_time(inclusive, key) / busy:.0%}",
        ]
        for label, key in PROFILE_STAGES
    ]
    by_package = [
        [name, f"{t:.2f}", f"{t / busy:.0%}" if not name.startswith("idle") else "-"]
        for name, t in packages
        if t >= 0.005 * busy
    ]
    top = [
        [name, f"{t:.2f}", f"{t / busy:.0%}"]
        for name, t in profiling.self_time
        if not name.startswith("epoll")
    ][:15]
    return (
        "## Profile of the catch-up (pyinstrument)\n\n"
        "The bridge under `python -m pyinstrument` catching up "
        f"{profiling.operations:,} finished operations ({profiling.seconds:.1f} s "
        "including the profiler's overhead); call tree in "
        f"`{_relative(profiling.text_path)}`. Shares are of the busy (non-idle) "
        f"time, {busy:.2f} s.\n\n"
        "Stages (inclusive time):\n\n"
        + markdown_table(["stage", "s", "share"], stages)
        + "\n\nSelf time by package:\n\n"
        + markdown_table(["package", "s", "share"], by_package)
        + "\n\nTop functions by self time:\n\n"
        + markdown_table(["function", "s", "share"], top)
    )


def _relative(path: str) -> str:
    marker = "bench/results/"
    return path[path.index(marker) :] if marker in path else path


def markdown_table(header: list[str], rows: Iterable[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += [
        "| " + " | ".join(cell.replace("|", "/") for cell in row) + " |" for row in rows
    ]
    return "\n".join(lines)


def _ms(seconds: float, digits: int = 1) -> str:
    return f"{seconds * 1000:.{digits}f}"


def find_time(values: dict[str, float], prefix: str) -> float:
    """Total time of the functions whose name starts with `prefix`."""
    return sum(t for name, t in values.items() if name.startswith(prefix))
