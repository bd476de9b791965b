"""Catch-up: a cold bridge with `poll.start=all` over finished history; references.

The simulator holds H finished operations and nothing else happens. The bridge, the
ceiling publisher and the naive publisher (`bench.publishers`) run one after the
other, each as its own process, and a `read_committed` consumer in this process
watches each one's output topic from the beginning. All three are measured with the
same instrument:

* stream rate: events that became visible after the first committed batch, divided by
  the time from the first visible batch to the last (start-up excluded);
* CPU per event: the publisher process's CPU time between those two moments;
* total: from the bridge's launch (or the reference's producer start) to the end.
"""

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator

import msgspec

from bench.context import RunContext
from bench.procs import Child, UsageTrace, python_module
from bench.publishers import PublisherResult
from bench.results import CatchUp, CatchUpRound, PublisherRun
from bench.services import (
    SimulatorHandle,
    SimulatorLoad,
    bridge_spec,
    start_bridge,
    start_simulator,
)
from bench.watch import TopicWatcher

log = logging.getLogger(__name__)

CATCHUP_TIMEOUT_SECONDS = 1800.0
EXITED_GRACE_SECONDS = 15.0
PER_TRANSACTION = 2000
"""The bridge's default poll.max_events_per_transaction."""


async def run_catchup(context: RunContext) -> CatchUp:
    """Run the rounds; each publisher is reported by its median round (by rate)."""
    rounds = [
        await catchup_round(context) for _ in range(context.profile.catchup_rounds)
    ]
    first = rounds[0]
    return CatchUp(
        operations=context.profile.catchup_history,
        expected_events=first.expected_events,
        seen_events=_median([r.bridge for r in rounds]).events,
        api_requests=first.api_requests,
        bridge=_median([r.bridge for r in rounds]),
        ceiling=_median([r.ceiling for r in rounds]),
        ceiling_batch=_median([r.ceiling_batch for r in rounds]),
        naive=_median([r.naive for r in rounds]),
        per_transaction=PER_TRANSACTION,
        rounds=rounds,
    )


async def catchup_round(context: RunContext) -> CatchUpRound:
    """A fresh simulator and a cold bridge, then the references over its events."""
    load = SimulatorLoad(history=context.profile.catchup_history)
    sim = await start_simulator(context.children, "sim-catchup", load)
    try:
        expected = (await sim.stats()).truth_records
        bridge, topic, partitions = await bridge_catchup(context, sim, expected)
        api_requests = (await sim.stats()).total_requests
    finally:
        await sim.close()
        context.children.stop(sim.child)

    ceiling = await reference_run(context, "ceiling", topic, partitions, expected)
    batched = await reference_run(context, "ceiling-batch", topic, partitions, expected)
    naive_events = min(context.profile.naive_events, expected)
    naive = await reference_run(context, "naive", topic, partitions, naive_events)
    return CatchUpRound(
        expected_events=expected,
        api_requests=api_requests,
        bridge=bridge,
        ceiling=ceiling,
        ceiling_batch=batched,
        naive=naive,
    )


def _median(runs: list[PublisherRun]) -> PublisherRun:
    """The run with the median rate (the lower middle one for an even count)."""
    ordered = sorted(runs, key=lambda run: run.events_per_second)
    return ordered[(len(ordered) - 1) // 2]


async def bridge_catchup(
    context: RunContext, sim: SimulatorHandle, expected: int
) -> tuple[PublisherRun, str, int]:
    """Run a cold bridge until a consumer saw `expected` events."""
    overrides = {"TOLOKA_BRIDGE_POLL__START": "all"}
    spec = bridge_spec("catchup", sim.base_url, context.bootstrap, overrides)
    await context.create_topic(spec.events_topic, spec.partitions)

    watcher = TopicWatcher(context.bootstrap, spec.events_topic, spec.partitions)
    async with watcher:
        launched = time.time()
        bridge = start_bridge(context.children, spec, context.bridge_wrapper)
        try:
            async with traced(bridge.child) as trace:
                await _wait_for(watcher, expected, bridge.child)
            run = publisher_run("bridge", watcher, trace, time.time() - launched)
        finally:
            await bridge.close()
            context.children.stop(bridge.child)
    return run, spec.events_topic, spec.partitions


async def reference_run(
    context: RunContext, kind: str, source_topic: str, partitions: int, events: int
) -> PublisherRun:
    """Run `bench.publishers <kind>` over the bridge's events; watch its output."""
    target = f"{source_topic}.{kind}"
    await context.create_topic(target, partitions)
    output = context.path(f"{kind}.json")
    argv = python_module(
        "bench.publishers",
        kind,
        "--bootstrap",
        context.bootstrap,
        "--source-topic",
        source_topic,
        "--target-topic",
        target,
        "--partitions",
        str(partitions),
        "--per-transaction",
        str(PER_TRANSACTION),
        "--limit",
        str(events),
        "--output",
        str(output),
    )
    watcher = TopicWatcher(context.bootstrap, target, partitions)
    async with watcher:
        child = context.children.start(f"publisher-{kind}", argv)
        try:
            async with traced(child) as trace:
                await _wait_for(watcher, events, child)
            code = await asyncio.to_thread(child.process.wait, CATCHUP_TIMEOUT_SECONDS)
        finally:
            context.children.stop(child)
    if code != 0:
        raise RuntimeError(f"{kind} publisher exited {code}; see {child.log_path}")

    result = msgspec.json.decode(output.read_bytes(), type=PublisherResult)
    return publisher_run(kind, watcher, trace, result.seconds)


@contextlib.asynccontextmanager
async def traced(child: Child) -> AsyncIterator[UsageTrace]:
    """Sample the child's CPU and RSS while the block runs, and once at the end."""
    trace = UsageTrace(child)
    sampler = asyncio.create_task(trace.run())
    try:
        yield trace
    finally:
        sampler.cancel()
        await asyncio.gather(sampler, return_exceptions=True)
        trace.sample()


async def _wait_for(watcher: TopicWatcher, count: int, child: Child) -> None:
    deadline = time.monotonic() + CATCHUP_TIMEOUT_SECONDS
    while watcher.count < count:
        if time.monotonic() > deadline:
            raise RuntimeError(f"only {watcher.count} of {count} events arrived")
        if not child.alive():
            if await watcher.wait_for_count(count, EXITED_GRACE_SECONDS):
                return
            raise RuntimeError(
                f"{child.name} exited with {watcher.count} of {count} events "
                f"visible; see {child.log_path}"
            )
        await watcher.wait_for_count(count, 1.0)


def publisher_run(
    name: str, watcher: TopicWatcher, trace: UsageTrace, total_seconds: float
) -> PublisherRun:
    first, last = watcher.first_visible_at, watcher.last_visible_at
    if first is None or last is None:
        raise RuntimeError(f"{name}: nothing became visible")

    streamed = watcher.count - watcher.first_batch_size
    stream_seconds = last - first
    cpu_seconds = trace.cpu_at(last) - trace.cpu_at(first)
    log.info("%s: %d events, %.1f s stream", name, watcher.count, stream_seconds)
    return PublisherRun(
        name=name,
        events=watcher.count,
        stream_seconds=stream_seconds,
        events_per_second=streamed / stream_seconds if stream_seconds else 0.0,
        total_seconds=total_seconds,
        cpu_seconds=cpu_seconds,
        events_per_cpu_second=streamed / cpu_seconds if cpu_seconds else 0.0,
        peak_rss_bytes=trace.peak_rss_bytes,
    )
