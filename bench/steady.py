"""Steady state with N running operations: API requests, memory, scrape cost, baseline.

For each size the simulator holds N long-running operations plus a trickle of new
ones, and one bridge (default settings: 2 s interval, 60 s lag) watches them. After
the initial load and a settling pause:

1. API window: from the end of one poll cycle to the end of another, the simulator's
   request counter (reset at the first boundary) over the cycles completed between
   them, so no half cycle is counted. CPU and RSS are sampled in the same window
   without touching /metrics.
2. Scrape window (sizes >= the series cap): /healthz sampled while nothing else
   happens, then again while /metrics is fetched back to back.
3. Baseline window: the bridge is stopped and `bench.baseline` GETs every unfinished
   operation once per second against the same simulator.
"""

import asyncio
import logging
import statistics
import time

import httpx
import msgspec

from bench.baseline import BaselineResult
from bench.context import RunContext
from bench.procs import API_KEY, python_module
from bench.results import BaselineWindow, BridgeWindow, ScrapeWindow, SteadyRun
from bench.services import (
    BridgeHandle,
    MetricSample,
    SimulatorHandle,
    SimulatorLoad,
    bridge_spec,
    metric_count,
    metric_sum,
    parse_metrics,
    start_bridge,
    start_simulator,
)
from bench.stats import distribution

log = logging.getLogger(__name__)

INITIAL_LOAD_TIMEOUT_SECONDS = 900.0
BOUNDARY_POLL_SECONDS = 0.25
HEALTHZ_EVERY_SECONDS = 0.2
BASELINE_WARMUP_SECONDS = 3.0
LONG_RUN_SECONDS = 1800.0


def steady_load(running: int, trickle_per_second: float) -> SimulatorLoad:
    """N operations that keep running for the window, and a trickle of new ones."""
    return SimulatorLoad(
        running=running,
        rate_per_second=trickle_per_second if running else 0.0,
        mean_run_seconds=LONG_RUN_SECONDS,
        instant_ratio=0.0,
        fail_unstarted_ratio=0.0,
    )


async def run_steady(context: RunContext, running: int) -> SteadyRun:
    profile = context.profile
    load = steady_load(running, profile.trickle_per_second)
    sim = await start_simulator(context.children, f"sim-steady-{running}", load)
    try:
        result = await _watch_with_bridge(context, sim, running)
        if running in profile.baseline_sizes:
            result.baseline = await run_baseline(context, sim, running)
        return result
    finally:
        await sim.close()
        context.children.stop(sim.child)


async def _watch_with_bridge(
    context: RunContext, sim: SimulatorHandle, running: int
) -> SteadyRun:
    began = time.monotonic()
    spec = bridge_spec(f"steady-{running}", sim.base_url, context.bootstrap)
    bridge = start_bridge(context.children, spec, context.bridge_wrapper)
    try:
        await bridge.wait_ready(INITIAL_LOAD_TIMEOUT_SECONDS)
        initial_load_seconds = time.monotonic() - began
        await asyncio.sleep(context.profile.settle_seconds)

        window, rss_bytes = await measure_bridge_window(
            bridge, sim, context.profile.api_window_seconds
        )
        stats = await sim.stats()
        samples = await bridge.metrics()
        result = SteadyRun(
            running_target=running,
            running_measured=stats.operations_by_status.get("RUNNING", 0),
            tracked=int(metric_sum(samples, "toloka_bridge_tracked_operations")),
            initial_load_seconds=initial_load_seconds,
            rss_bytes=rss_bytes,
            bridge=window,
        )
        if running in context.profile.scrape_sizes:
            result.scrape = await measure_scrapes(
                bridge, context.profile.scrape_window_seconds
            )
        return result
    finally:
        await bridge.close()
        context.children.stop(bridge.child)


async def measure_bridge_window(
    bridge: BridgeHandle, sim: SimulatorHandle, window_seconds: float
) -> tuple[BridgeWindow, int]:
    """Requests over whole cycles; CPU and RSS over a quiet stretch inside them."""
    first = await cycle_boundary(bridge)
    await sim.stats(reset=True)
    began = time.monotonic()
    cpu_began = bridge.child.usage().cpu_seconds

    rss_samples = []
    while time.monotonic() - began < window_seconds:
        await asyncio.sleep(1.0)
        rss_samples.append(bridge.child.usage().rss_bytes)
    quiet_seconds = time.monotonic() - began
    cpu_seconds = bridge.child.usage().cpu_seconds - cpu_began

    last = await cycle_boundary(bridge)
    stats = await sim.stats()
    elapsed = time.monotonic() - began

    cycles = int(_polls(last) - _polls(first))
    requests = sum(item.count for item in stats.requests)
    by_endpoint: dict[str, int] = {}
    for item in stats.requests:
        by_endpoint[item.endpoint] = by_endpoint.get(item.endpoint, 0) + item.count
    durations = _delta(first, last, "toloka_bridge_poll_duration_seconds_sum")
    period = elapsed / max(cycles, 1)
    window = BridgeWindow(
        cycles=cycles,
        window_seconds=elapsed,
        requests=requests,
        requests_by_endpoint=by_endpoint,
        requests_from_bridge_metrics=int(
            _delta(first, last, "toloka_bridge_api_requests_total")
        ),
        requests_per_cycle=requests / max(cycles, 1),
        requests_per_second=requests / elapsed,
        interval_seconds=bridge.interval_seconds,
        mean_cycle_seconds=durations / max(cycles, 1),
        cpu_seconds_per_cycle=cpu_seconds / quiet_seconds * period,
        cpu_share=cpu_seconds / quiet_seconds,
    )
    return window, int(statistics.median(rss_samples))


async def cycle_boundary(bridge: BridgeHandle) -> list[MetricSample]:
    """Wait for a poll cycle to end; return the metrics right after it."""
    before = _polls(await bridge.metrics())
    deadline = time.monotonic() + INITIAL_LOAD_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        await asyncio.sleep(BOUNDARY_POLL_SECONDS)
        samples = await bridge.metrics()
        if _polls(samples) > before:
            return samples
    raise RuntimeError(f"bridge {bridge.name} completed no poll cycle in time")


def _polls(samples: list[MetricSample]) -> float:
    return metric_sum(samples, "toloka_bridge_polls_total")


def _delta(first: list[MetricSample], last: list[MetricSample], name: str) -> float:
    return metric_sum(last, name) - metric_sum(first, name)


async def measure_scrapes(bridge: BridgeHandle, window_seconds: float) -> ScrapeWindow:
    """/healthz and cycle times while idle, then while /metrics is fetched nonstop."""
    quiet_first = await bridge.metrics()
    quiet_healthz = await sample_healthz(bridge, window_seconds)
    quiet_last = await bridge.metrics()

    scrape_seconds: list[float] = []
    bodies: list[bytes] = []
    scraper = asyncio.create_task(_scrape_nonstop(bridge, scrape_seconds, bodies))
    try:
        scraped_healthz = await sample_healthz(bridge, window_seconds)
    finally:
        scraper.cancel()
        await asyncio.gather(scraper, return_exceptions=True)
    scraped_last = await bridge.metrics()

    samples = parse_metrics(bodies[-1].decode())
    return ScrapeWindow(
        progress_series=metric_count(samples, "toloka_operation_progress_ratio"),
        series_overflow=metric_sum(samples, "toloka_bridge_operation_series_overflow"),
        samples=len(samples),
        body_bytes=len(bodies[-1]),
        scrape=distribution(scrape_seconds),
        quiet_cycles=int(_polls(quiet_last) - _polls(quiet_first)),
        scraped_cycles=int(_polls(scraped_last) - _polls(quiet_last)),
        quiet_mean_cycle_seconds=_mean_cycle(quiet_first, quiet_last),
        scraped_mean_cycle_seconds=_mean_cycle(quiet_last, scraped_last),
        quiet_healthz=distribution(quiet_healthz),
        scraped_healthz=distribution(scraped_healthz),
    )


def _mean_cycle(first: list[MetricSample], last: list[MetricSample]) -> float:
    count = _delta(first, last, "toloka_bridge_poll_duration_seconds_count")
    total = _delta(first, last, "toloka_bridge_poll_duration_seconds_sum")
    return total / count if count else float("nan")


async def _scrape_nonstop(
    bridge: BridgeHandle, seconds: list[float], bodies: list[bytes]
) -> None:
    async with httpx.AsyncClient(timeout=60.0) as client:
        while True:
            began = time.perf_counter()
            response = await client.get(bridge.metrics_url)
            seconds.append(time.perf_counter() - began)
            response.raise_for_status()
            bodies[:] = [response.content]


async def sample_healthz(bridge: BridgeHandle, window_seconds: float) -> list[float]:
    """Answer times of /healthz, asked every 0.2 s: how responsive the loop is."""
    seconds = []
    deadline = time.monotonic() + window_seconds
    async with httpx.AsyncClient(timeout=60.0) as client:
        while time.monotonic() < deadline:
            began = time.perf_counter()
            response = await client.get(bridge.health_url)
            seconds.append(time.perf_counter() - began)
            response.raise_for_status()
            await asyncio.sleep(HEALTHZ_EVERY_SECONDS)
    return seconds


async def run_baseline(
    context: RunContext, sim: SimulatorHandle, running: int
) -> BaselineWindow:
    """One GET per unfinished operation per second, for the baseline window."""
    output = context.path(f"baseline-{running}.json")
    window_seconds = context.profile.baseline_window_seconds
    argv = python_module(
        "bench.baseline",
        "--base-url",
        sim.base_url,
        "--interval",
        "1.0",
        "--warmup",
        str(BASELINE_WARMUP_SECONDS),
        "--duration",
        str(window_seconds),
        "--output",
        str(output),
    )
    environment = {"TOLOKA_BRIDGE_TOLOKA__API_KEY": API_KEY}
    child = context.children.start(f"baseline-{running}", argv, environment)
    try:
        code = await asyncio.to_thread(child.process.wait)
    finally:
        context.children.stop(child)
    if code != 0:
        raise RuntimeError(f"baseline poller exited {code}; see {child.log_path}")

    result = msgspec.json.decode(output.read_bytes(), type=BaselineResult)
    return BaselineWindow(
        operations=result.operations,
        interval_seconds=result.interval_seconds,
        window_seconds=result.window_seconds,
        requests=result.requests,
        errors=result.errors,
        requests_per_second=result.requests_per_second,
        target_requests_per_second=result.target_requests_per_second,
        requests_per_operation_per_second=result.requests_per_second
        / max(result.operations, 1),
        mean_request_seconds=result.mean_request_seconds,
        cpu_share=result.cpu_seconds / result.window_seconds,
        rss_bytes=result.rss_bytes,
    )
