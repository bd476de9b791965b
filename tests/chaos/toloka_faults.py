"""Scenario 3: Toloka misbehaves in every documented way while operations keep coming.

One simulator and one bridge (a subprocess, DEBUG log, `toloka.timeout_seconds` 1 s,
`toloka.max_response_bytes` 24 MB) run through a sequence of windows. In each window
some storms of `storms.py` are switched on (simulator faults, a resetting TCP proxy in
front of it, operations hidden from search); then the faults are switched off and the
bridge must poll successfully again before the next window starts. At the end every
operation finishes and the stream is judged: per window (the operations that had a
transition inside it) and as a whole. Each storm then checks its own promise from the
metrics, the log lines and the events of its window.
"""

import asyncio
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from urllib.parse import urlsplit

import msgspec

from bridge.operation import parse_wire_datetime
from bridge.simulator.runner import Simulator, run_simulator
from bridge.simulator.settings import FaultSettings, LoadSettings, SimulatorSettings
from bridge.simulator.truth import TruthRecord
from tests.bridge_harness import Verdict, bridge_environment, judge, unique_name
from tests.chaos.context import ChaosContext
from tests.chaos.processes import ChaosBridge, Samples
from tests.chaos.proxy import ResetProxy
from tests.chaos.results import ScenarioResult
from tests.chaos.storms import (
    CI_WINDOWS,
    MAX_RESPONSE_BYTES,
    SLACK,
    STORMS,
    STORMS_BY_KEY,
    Evidence,
    Storm,
)
from tests.chaos.streams import (
    Published,
    expected_truth,
    settle_and_judge,
    wait_for_stream,
)
from tests.chaos.topics import Options, kafka_options

EVENTS_PARTITIONS = 3
READY_TIMEOUT_SECONDS = 60.0
CALM_TIMEOUT_SECONDS = 60.0
SETTLE_TIMEOUT_SECONDS = 180.0
REFUSAL_SECONDS = 2.0
SCRIPTED_OPERATIONS = 20
"""Operations a vanishing storm moves by hand: with 40% of them hidden, the chance
that none is hidden is 0.6^20, under one run in 20,000."""

Condition = Callable[[ChaosBridge], Awaitable[bool]]


class Window:
    """Storms switched on together, and what they left behind."""

    def __init__(self, storms: list[Storm], evidence: Evidence) -> None:
        self.storms = storms
        self.evidence = evidence

    @property
    def title(self) -> str:
        return " + ".join(storm.title for storm in self.storms)


async def run_all(context: ChaosContext) -> list[ScenarioResult]:
    plan: tuple[tuple[str, ...], ...]
    if context.scale.storms_in_one_run:
        plan = CI_WINDOWS
    else:
        plan = tuple((storm.key,) for storm in STORMS)
    return await run_windows(context, plan)


async def run_windows(
    context: ChaosContext, plan: tuple[tuple[str, ...], ...]
) -> list[ScenarioResult]:
    started = time.monotonic()
    name = unique_name("chaos-toloka")
    load = LoadSettings(
        rate_per_second=10.0,
        mean_queue_seconds=0.5,
        mean_run_seconds=2.0,
        instant_ratio=0.2,
        max_progress_steps=2,
    )
    options = kafka_options(context.bootstrap)
    async with run_simulator(SimulatorSettings(seed=31, load=load)) as sim:
        target = urlsplit(sim.root_url)
        proxy = ResetProxy(target.hostname or "127.0.0.1", target.port or 80)
        await proxy.start()
        environment = bridge_environment(
            f"{proxy.url}/api",
            context.bootstrap,
            name,
            TOLOKA_BRIDGE_LOG__LEVEL="DEBUG",
            TOLOKA_BRIDGE_TOLOKA__TIMEOUT_SECONDS="1",
            TOLOKA_BRIDGE_TOLOKA__MAX_RESPONSE_BYTES=str(MAX_RESPONSE_BYTES),
        )
        bridge = ChaosBridge(environment, context.directory(name) / "bridge.log")
        try:
            bridge.start()
            await _wait_until(bridge, _ready, READY_TIMEOUT_SECONDS)
            await asyncio.sleep(2.0)
            windows: list[Window] = []
            for keys in plan:
                storms = [STORMS_BY_KEY[key] for key in keys]
                duration = context.scale.storm_seconds
                hidden = _undiscoverable(windows)
                evidence = await _window(
                    sim, proxy, bridge, storms, duration, options, name, hidden
                )
                windows.append(Window(storms, evidence))
            undiscoverable = _undiscoverable(windows)
            verdict, published, left_out = await settle_and_judge(
                sim,
                options,
                f"{name}.events",
                EVENTS_PARTITIONS,
                SETTLE_TIMEOUT_SECONDS,
                undiscoverable,
            )
            exit_code = await bridge.terminate()
        finally:
            await bridge.stop()
            await proxy.stop()

        results = _window_results(windows, sim.truth.records, published, undiscoverable)
    whole = ScenarioResult(
        scenario="3. Toloka faults: the whole run, calm periods included"
    )
    whole.add_verdict(verdict)
    whole.check("clean shutdown at the end (exit 0)", exit_code == 0, exit_code)
    whole.note(
        f"{left_out} operations hidden from birth were never seen (undiscoverable)"
    )
    whole.note(f"bridge log: {bridge.log_path}")
    whole.seconds = time.monotonic() - started
    return [*results, whole]


async def _window(
    sim: Simulator,
    proxy: ResetProxy,
    bridge: ChaosBridge,
    storms: list[Storm],
    duration: float,
    options: Options,
    name: str,
    hidden: set[str],
) -> Evidence:
    """Switch the storms on for `duration`, off again, and wait for a good poll;
    `hidden` are the operations earlier windows hid from birth."""
    scripted = await _prepare(sim, storms, options, name, hidden)
    before = await _scrape(bridge)
    log_start = len(bridge.full_log())
    began = datetime.now(UTC)

    _switch_on(sim, proxy, storms)
    await _blow(sim, proxy, storms, duration, scripted)
    sim.faults.settings = FaultSettings()
    proxy.reset_probability = 0.0
    ended = datetime.now(UTC)
    sim.engine.set_load(paused=False)

    calm = await _wait_until(bridge, _polled_since(ended), CALM_TIMEOUT_SECONDS)
    after = await _scrape(bridge)
    log = bridge.full_log()[log_start:]
    if not calm:
        raise RuntimeError(f"no successful poll after {storms[0].key}: {log[-3000:]}")

    await _outlast_slack(ended)
    return Evidence(before, after, log, began, ended, sim, proxy)


async def _outlast_slack(ended: datetime) -> None:
    """A window's events include those observed up to SLACK after it ended; the next
    window must begin later, or its faults are judged as this one's (a CI run once
    counted an operation made huge by the oversized storm as a stranger to 5 MB)."""
    remaining = (ended + SLACK - datetime.now(UTC)).total_seconds()
    await asyncio.sleep(max(0.0, remaining) + 0.1)


async def _prepare(
    sim: Simulator, storms: list[Storm], options: Options, name: str, hidden: set[str]
) -> list[str]:
    """Before a storm that hides operations, the bridge must know every operation so
    far: one submitted a moment before the storm and hidden before a poll saw it would
    be undiscoverable, yet not born inside the window (the long run once counted such
    an operation as lost). A vanishing storm also gets operations moved by hand while
    it lasts, so some of them are surely unfinished and hidden; their ids are returned.
    """
    scripted: list[str] = []
    if any(storm.only_known_operations for storm in storms):
        created = sim.engine.create("POOL.OPEN", count=SCRIPTED_OPERATIONS)
        scripted = [op.id for op in created]
    if scripted or any(storm.undiscoverable for storm in storms):
        await _catch_up(sim, options, name, hidden)
    return scripted


async def _blow(
    sim: Simulator,
    proxy: ResetProxy,
    storms: list[Storm],
    duration: float,
    scripted: list[str],
) -> None:
    """Let the storm last `duration`: arrivals resume unless only known operations
    may change; scripted operations start, then finish; a refusal closes the proxy."""
    if scripted:
        await _move_by_hand(sim, scripted, duration)
        return

    sim.engine.set_load(paused=False)
    if any(storm.proxy_refusal for storm in storms):
        await asyncio.sleep(duration / 2)
        await proxy.close()
        await asyncio.sleep(REFUSAL_SECONDS)
        await proxy.reopen()
        await asyncio.sleep(duration / 2)
    else:
        await asyncio.sleep(duration)


async def _move_by_hand(sim: Simulator, ids: list[str], duration: float) -> None:
    """PENDING -> RUNNING a third into the storm, -> SUCCESS two thirds in."""
    await asyncio.sleep(duration / 3)
    for op_id in ids:
        sim.engine.control_transition(op_id, "RUNNING", 10)
    await asyncio.sleep(duration / 3)
    for op_id in ids:
        sim.engine.control_transition(op_id, "SUCCESS", None)
    await asyncio.sleep(duration / 3)


def _switch_on(sim: Simulator, proxy: ResetProxy, storms: list[Storm]) -> None:
    settings: dict[str, object] = {}
    for storm in storms:
        settings.update(storm.faults)
    sim.faults.settings = msgspec.convert(settings, FaultSettings)
    proxy.reset_probability = max(storm.proxy_resets for storm in storms)


async def _catch_up(
    sim: Simulator, options: Options, name: str, hidden: set[str]
) -> None:
    """Stop arrivals; wait until every discoverable transition so far is published."""
    sim.engine.set_load(paused=True)
    await wait_for_stream(
        options,
        f"{name}.events",
        EVENTS_PARTITIONS,
        lambda published: len(expected_truth(sim, published, hidden)[0]),
        CALM_TIMEOUT_SECONDS,
    )


async def _scrape(bridge: ChaosBridge) -> Samples:
    samples = await bridge.metrics()
    if samples is None:
        state = "exited" if not bridge.alive() else "does not answer"
        raise RuntimeError(f"the bridge {state}: {bridge.run_log()[-3000:]}")
    return samples


async def _ready(bridge: ChaosBridge) -> bool:
    return await bridge.ready()


def _polled_since(moment: datetime) -> Condition:
    async def polled(bridge: ChaosBridge) -> bool:
        samples = await bridge.metrics()
        if samples is None:
            return False
        last = samples.value("toloka_bridge_last_successful_poll_timestamp_seconds")
        return last > moment.timestamp()

    return polled


async def _wait_until(
    bridge: ChaosBridge, condition: Condition, timeout_seconds: float
) -> bool:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_seconds
    while loop.time() < deadline:
        if not bridge.alive():
            raise RuntimeError(f"the bridge exited: {bridge.run_log()[-3000:]}")
        if await condition(bridge):
            return True
        await asyncio.sleep(0.3)
    return False


def _undiscoverable(windows: list[Window]) -> set[str]:
    """Operations born hidden inside a window of a storm that hides them from birth."""
    hidden: set[str] = set()
    for window in windows:
        for storm in window.storms:
            if storm.undiscoverable:
                limit = storm.faults["hidden_probability"]
                hidden.update(
                    op.id
                    for op in window.evidence.window_operations()
                    if op.hidden_draw < limit
                )
    return hidden


def _window_results(
    windows: list[Window],
    truth: list[TruthRecord],
    published: Published,
    undiscoverable: set[str],
) -> list[ScenarioResult]:
    seen = {event.operation_id for _, event in published}
    kept = [
        r
        for r in truth
        if r.operation_id in seen or r.operation_id not in undiscoverable
    ]
    results = []
    for number, window in enumerate(windows, start=1):
        evidence = window.evidence
        evidence.published = published
        result = ScenarioResult(scenario=f"3.{number} Toloka: {window.title}")
        result.add_verdict(_judge_window(kept, published, evidence))
        for storm in window.storms:
            for name, passed, detail in storm.verify(evidence):
                result.check(f"{storm.title}: {name}", passed, detail)
        result.seconds = (evidence.ended - evidence.began).total_seconds()
        results.append(result)
    return results


def _judge_window(
    truth: list[TruthRecord], published: Published, evidence: Evidence
) -> Verdict:
    """The verdict on operations with a transition inside the window."""
    inside = {
        r.operation_id
        for r in truth
        if evidence.began <= parse_wire_datetime(r.at) <= evidence.ended
    }
    return judge(
        [r for r in truth if r.operation_id in inside],
        [(p, e) for p, e in published if e.operation_id in inside],
    )
