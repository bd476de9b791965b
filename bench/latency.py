"""Detection latency under steady load: from a transition to a consumer seeing it.

One simulator makes operations at a steady rate (default lifecycles: about 2 s queued,
10 s running). One bridge per poll interval watches it, each as its own process on
its own topic, all at once, so they see the same transitions. After the initial load
and a settling pause, every transition the simulator's ground truth dates inside the
window is looked up in what each bridge's read_committed consumer saw:

    latency = moment the consumer got the event - the transition's `at` (truth)

The consumer fetches with a 50 ms maximum wait, so visibility is measured to within
a fetch round trip of the commit. Events carry the same instant as `occurred_at`;
any difference from the truth is counted as misdated.
"""

import asyncio
import contextlib
import logging
import time
from collections.abc import Sequence

from bench.context import RunContext
from bench.results import LatencyRun
from bench.services import (
    BridgeHandle,
    BridgeSpec,
    SimulatorLoad,
    bridge_spec,
    start_bridge,
    start_simulator,
)
from bench.stats import distribution
from bench.watch import Sighting, TopicWatcher
from bridge.config import PollSettings
from bridge.operation import parse_wire_datetime
from bridge.simulator.truth import TruthRecord

log = logging.getLogger(__name__)

SETTLE_SECONDS = 8.0
ARRIVAL_GRACE_SECONDS = 8.0
READY_TIMEOUT_SECONDS = 120.0


async def run_latency(context: RunContext) -> list[LatencyRun]:
    profile = context.profile
    load = SimulatorLoad(rate_per_second=profile.latency_rate_per_second)
    sim = await start_simulator(context.children, "sim-latency", load)
    try:
        specs = [
            bridge_spec(
                f"latency-{interval:g}s",
                sim.base_url,
                context.bootstrap,
                {"TOLOKA_BRIDGE_POLL__INTERVAL_SECONDS": str(interval)},
            )
            for interval in profile.latency_intervals_seconds
        ]
        for spec in specs:
            await context.create_topic(spec.events_topic, spec.partitions)
        watchers, window, rates = await _watch(context, specs)
        truth = await sim.truth()
    finally:
        await sim.close()
        context.children.stop(sim.child)

    return [
        judge_latency(spec, watcher.sightings, truth, window, rate)
        for spec, watcher, rate in zip(specs, watchers, rates, strict=True)
    ]


async def _watch(
    context: RunContext, specs: Sequence[BridgeSpec]
) -> tuple[list[TopicWatcher], tuple[float, float], list[float]]:
    """Run every bridge and its watcher through the window; stop the bridges.

    Returns the watchers, the window and each bridge's API requests per second in
    the window (from its own metrics)."""
    watchers = [
        TopicWatcher(context.bootstrap, s.events_topic, s.partitions, decode=True)
        for s in specs
    ]
    async with contextlib.AsyncExitStack() as stack:
        for watcher in watchers:
            await stack.enter_async_context(watcher)
        bridges = [
            start_bridge(context.children, spec, context.bridge_wrapper)
            for spec in specs
        ]
        try:
            await asyncio.gather(
                *(b.wait_ready(READY_TIMEOUT_SECONDS) for b in bridges)
            )
            await asyncio.sleep(SETTLE_SECONDS)
            seconds = context.profile.latency_window_seconds
            before = [await _requests(b) for b in bridges]
            window = (time.time(), time.time() + seconds)
            await asyncio.sleep(seconds)
            after = [await _requests(b) for b in bridges]
            rates = [(a - b) / seconds for a, b in zip(after, before, strict=True)]
            longest = max(b.interval_seconds for b in bridges)
            await asyncio.sleep(longest + ARRIVAL_GRACE_SECONDS)
        finally:
            await _stop(context, bridges)
    return watchers, window, rates


async def _requests(bridge: BridgeHandle) -> float:
    return await bridge.value("toloka_bridge_api_requests_total")


async def _stop(context: RunContext, bridges: list[BridgeHandle]) -> None:
    for bridge in bridges:
        await bridge.close()
        context.children.stop(bridge.child)


def judge_latency(
    spec: BridgeSpec,
    sightings: list[Sighting],
    truth: list[TruthRecord],
    window: tuple[float, float],
    requests_per_second: float,
) -> LatencyRun:
    """Match each truth transition in the window with the event a consumer saw."""
    seen = {
        (s.operation_id, s.status): s
        for s in sightings
        if s.kind != "progressed" and not s.initial_load
    }
    latencies, inferred, misdated, in_window = [], 0, 0, 0
    for record in truth:
        occurred = parse_wire_datetime(record.at)
        if not window[0] <= occurred.timestamp() < window[1]:
            continue
        in_window += 1
        sighting = seen.get((record.operation_id, record.to_status))
        if sighting is None:
            continue
        latencies.append(sighting.visible_at - occurred.timestamp())
        inferred += int(sighting.inferred)
        misdated += int(sighting.occurred_at != occurred)

    interval = float(spec.environment["TOLOKA_BRIDGE_POLL__INTERVAL_SECONDS"])
    return LatencyRun(
        interval_seconds=interval,
        lag_seconds=PollSettings().lag_seconds,
        window_seconds=window[1] - window[0],
        requests_per_second=requests_per_second,
        truth_transitions=in_window,
        seen_transitions=len(latencies),
        inferred=inferred,
        misdated=misdated,
        latency=distribution(latencies),
        samples=[round(value, 4) for value in latencies],
    )
