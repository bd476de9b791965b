"""Scenario 4: the bridge is down for longer than the lag and the start window.

Operations keep arriving, starting and finishing while the bridge is away (stopped
with SIGTERM, or killed with SIGKILL in the long run). After each gap, longer than
`poll.lag_seconds` and than `poll.start_window_seconds`, the bridge starts again and
must publish every transition that happened meanwhile, dated by the operation's own
timestamps (not by when it noticed), with the steps it did not see marked `inferred`,
and without treating the restart as a cold start (`initial_load` stays false).
"""

import asyncio
import time
from datetime import UTC, datetime

from bridge.events import OperationEvent
from bridge.simulator.runner import run_simulator
from bridge.simulator.settings import LoadSettings, SimulatorSettings
from tests.bridge_harness import bridge_environment, unique_name
from tests.chaos.context import ChaosContext
from tests.chaos.processes import ChaosBridge
from tests.chaos.results import ScenarioResult
from tests.chaos.streams import settle_and_judge
from tests.chaos.topics import kafka_options

EVENTS_PARTITIONS = 3
READY_TIMEOUT_SECONDS = 60.0
SETTLE_TIMEOUT_SECONDS = 120.0
RUN_SECONDS = 4.0

Gap = tuple[datetime, datetime]


async def run(context: ChaosContext) -> ScenarioResult:
    scale = context.scale
    result = ScenarioResult(
        scenario=(
            f"4. Restart gaps: down {scale.gap_seconds:.0f} s x{scale.gap_rounds} "
            f"(lag {scale.gap_lag_seconds:.0f} s)"
        )
    )
    started = time.monotonic()
    name = unique_name("chaos-gap")
    load = LoadSettings(
        rate_per_second=10.0,
        mean_queue_seconds=1.0,
        mean_run_seconds=3.0,
        instant_ratio=0.2,
        max_progress_steps=3,
    )
    options = kafka_options(context.bootstrap)
    async with run_simulator(SimulatorSettings(seed=61, load=load)) as sim:
        environment = bridge_environment(
            sim.base_url,
            context.bootstrap,
            name,
            TOLOKA_BRIDGE_POLL__LAG_SECONDS=str(scale.gap_lag_seconds),
            TOLOKA_BRIDGE_POLL__START="window",
            TOLOKA_BRIDGE_POLL__START_WINDOW_SECONDS="2",
        )
        bridge = ChaosBridge(environment, context.directory(name) / "bridge.log")
        try:
            gaps, exit_codes = await _stop_and_return(
                bridge, scale.gap_rounds, scale.gap_seconds
            )
            verdict, published, _ = await settle_and_judge(
                sim,
                options,
                f"{name}.events",
                EVENTS_PARTITIONS,
                SETTLE_TIMEOUT_SECONDS,
            )
            exit_codes.append(await bridge.terminate())
        finally:
            await bridge.stop()

    result.add_verdict(verdict)
    _check_gap_events(result, published, gaps)
    result.check("every SIGTERM ended with exit 0", set(exit_codes) <= {0}, exit_codes)
    result.note(f"bridge log: {bridge.log_path}")
    result.seconds = time.monotonic() - started
    return result


async def _stop_and_return(
    bridge: ChaosBridge, rounds: int, gap_seconds: float
) -> tuple[list[Gap], list[int]]:
    """Run, stop (SIGTERM, then SIGKILL on odd rounds), stay away, start again."""
    gaps: list[Gap] = []
    exit_codes: list[int] = []
    bridge.start()
    await _wait_ready(bridge)
    for number in range(rounds):
        await asyncio.sleep(RUN_SECONDS)
        if number % 2 == 0:
            exit_codes.append(await bridge.terminate())
        else:
            bridge.kill()
        down_at = datetime.now(UTC)
        await asyncio.sleep(gap_seconds)
        gaps.append((down_at, datetime.now(UTC)))
        bridge.start()
        await _wait_ready(bridge)
    await asyncio.sleep(RUN_SECONDS)
    return gaps, exit_codes


async def _wait_ready(bridge: ChaosBridge) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + READY_TIMEOUT_SECONDS
    while loop.time() < deadline and not await bridge.ready():
        if not bridge.alive():
            raise RuntimeError(f"the bridge exited: {bridge.run_log()[-2000:]}")
        await asyncio.sleep(0.2)


def _check_gap_events(
    result: ScenarioResult, published: list[tuple[int, OperationEvent]], gaps: list[Gap]
) -> None:
    """Transitions that happened while the bridge was away, as published."""
    during = [
        event
        for _, event in published
        if event.kind != "progressed" and _in_gap(event.occurred_at, gaps)
    ]
    late = [e for e in during if not _seen_after_gap(e, gaps)]
    inferred = [e for e in during if e.inferred]
    initial = [e for e in during if e.initial_load]
    result.check(
        "transitions that happened while the bridge was down were published",
        len(during) > 0,
        f"{len(during)} transitions dated inside the gaps",
    )
    result.check(
        "each is dated inside the gap, observed only after the restart",
        not late,
        f"{len(late)} observed before the gap ended",
    )
    result.check(
        "steps nobody saw are marked inferred",
        len(inferred) > 0,
        f"{len(inferred)} inferred of {len(during)}",
    )
    result.check(
        "a restart is not a cold start (initial_load false)",
        not initial,
        f"{len(initial)} marked initial_load",
    )


def _in_gap(moment: datetime, gaps: list[Gap]) -> bool:
    return any(down < moment < up for down, up in gaps)


def _seen_after_gap(event: OperationEvent, gaps: list[Gap]) -> bool:
    for down, up in gaps:
        if down < event.occurred_at < up:
            return event.observed_at >= up
    return False
