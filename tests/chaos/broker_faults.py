"""Scenario 2: the broker goes away mid-run, for longer than the producer's timeouts.

A dedicated broker (its own port and data, never the default one) serves a bridge whose
Kafka timeouts are short (request 3 s, transaction 5 s). While operations keep coming,
the broker is stopped (SIGTERM) and started again with its data, killed (SIGKILL) and
started again (long run), and frozen with SIGSTOP then thawed, each time for longer
than those timeouts. A freeze leaves connections open and requests unanswered, and a
commit in flight may be applied after the thaw even though the bridge gave up on it.

During each outage the bridge must keep running and say so: /readyz answers 503 naming
Kafka, `toloka_bridge_kafka_connected` is 0 and `toloka_bridge_publish_errors_total`
rises. After it, the bridge must become ready again on its own, and in the end the
stream must hold every transition exactly once.
"""

import asyncio
import random
import time
from collections.abc import Callable

import msgspec

from bridge.simulator.runner import Simulator, run_simulator
from bridge.simulator.settings import LoadSettings, SimulatorSettings
from tests.bridge_harness import bridge_environment, unique_name
from tests.chaos import commit_freeze
from tests.chaos.brokers import DedicatedBroker
from tests.chaos.context import ChaosContext, Scale
from tests.chaos.processes import ChaosBridge, Samples
from tests.chaos.results import ScenarioResult
from tests.chaos.streams import settle_and_judge
from tests.chaos.topics import kafka_options

EVENTS_PARTITIONS = 3
READY_TIMEOUT_SECONDS = 90.0
RECOVERY_TIMEOUT_SECONDS = 120.0
FREEZE_SECONDS = 9.0
WATCH_INTERVAL_SECONDS = 0.5
BURST = 1000


class OutageReport(msgspec.Struct, kw_only=True):
    """What the bridge showed while the broker was away, and after."""

    label: str
    began: str = ""
    alive: bool = True
    not_ready_after: float | None = None
    disconnected_after: float | None = None
    errors_after: float | None = None
    publish_errors: float = 0.0
    recovery_seconds: float | None = None
    exit_code: int | None = None


async def run(context: ChaosContext) -> list[ScenarioResult]:
    """The outage scenario and, on the same broker, the commit-freeze scenario (2b)."""
    scale = context.scale
    outages = 1 + scale.broker_kills + scale.broker_freezes
    result = ScenarioResult(
        scenario=f"2. Broker faults: {outages} outages (stop, kill -9, SIGSTOP)"
    )
    started = time.monotonic()
    name = unique_name("chaos-broker")
    broker = DedicatedBroker(context.directory(name) / "kafka-data")
    await asyncio.to_thread(broker.up)
    try:
        await _run_against(context, result, broker, name)
        result.seconds = time.monotonic() - started
        frozen_commits = await commit_freeze.run(context, broker, scale.commit_freezes)
    finally:
        await asyncio.to_thread(broker.down)
    return [result, frozen_commits]


async def _run_against(
    context: ChaosContext, result: ScenarioResult, broker: DedicatedBroker, name: str
) -> None:
    scale = context.scale
    rng = random.Random()
    load = LoadSettings(
        rate_per_second=12.0, mean_queue_seconds=0.5, mean_run_seconds=2.0
    )
    async with run_simulator(SimulatorSettings(seed=41, load=load)) as sim:
        environment = bridge_environment(
            sim.base_url,
            broker.bootstrap,
            name,
            TOLOKA_BRIDGE_LOG__LEVEL="DEBUG",
            TOLOKA_BRIDGE_KAFKA__REQUEST_TIMEOUT_SECONDS="3",
            TOLOKA_BRIDGE_KAFKA__TRANSACTION_TIMEOUT_SECONDS="5",
            TOLOKA_BRIDGE_KAFKA__CONNECT_TIMEOUT_SECONDS="30",
        )
        bridge = ChaosBridge(environment, context.directory(name) / "bridge.log")
        try:
            bridge.start()
            ready = await _wait_ready(bridge, READY_TIMEOUT_SECONDS)
            result.check("ready before the first outage", ready is not None, ready)
            reports = await _outages(bridge, broker, sim, scale, rng)
            verdict, _, _ = await settle_and_judge(
                sim,
                kafka_options(broker.bootstrap),
                f"{name}.events",
                EVENTS_PARTITIONS,
                RECOVERY_TIMEOUT_SECONDS,
            )
            exit_code = await bridge.terminate()
        finally:
            await bridge.stop()

    result.add_verdict(verdict)
    for report in reports:
        _check_outage(result, report)
    result.check("clean shutdown at the end (exit 0)", exit_code == 0, exit_code)
    result.note(f"bridge log: {bridge.log_path}")


async def _outages(
    bridge: ChaosBridge,
    broker: DedicatedBroker,
    sim: Simulator,
    scale: Scale,
    rng: random.Random,
) -> list[OutageReport]:
    """Each outage hits a bridge busy catching up on a burst, at a random moment."""
    restart = _restarter(broker)
    seconds = scale.broker_outage_seconds
    plan: list[tuple[str, Callable[[], None], Callable[[], None], float]] = [
        ("stopped (SIGTERM)", broker.down, restart, seconds)
    ]
    plan += [("killed (SIGKILL)", broker.kill, restart, seconds)] * scale.broker_kills
    freeze = ("frozen (SIGSTOP)", broker.freeze, broker.thaw, FREEZE_SECONDS)
    plan += [freeze] * scale.broker_freezes

    reports = []
    for number, (label, stop, start, seconds) in enumerate(plan, start=1):
        await asyncio.sleep(rng.uniform(1.0, 3.0))
        sim.engine.create("TASK.BATCH_CREATE", BURST, scheduled=True)
        await asyncio.sleep(rng.uniform(0.2, 1.5))
        report = await _outage(
            bridge, f"outage {number}: {label}", stop, start, seconds
        )
        reports.append(report)
        if not report.alive:
            break
    return reports


def _restarter(broker: DedicatedBroker) -> Callable[[], None]:
    def restart() -> None:
        broker.up(keep_data=True)

    return restart


async def _outage(
    bridge: ChaosBridge,
    label: str,
    stop: Callable[[], None],
    start: Callable[[], None],
    seconds: float,
) -> OutageReport:
    """Take the broker away for `seconds`, watch the bridge, bring the broker back."""
    report = OutageReport(label=label, began=time.strftime("%H:%M:%S"))
    before = await bridge.metrics()
    errors_before = 0.0 if before is None else _publish_errors(before)
    await asyncio.to_thread(stop)
    loop = asyncio.get_running_loop()
    began = loop.time()
    deadline = began + seconds
    while loop.time() < deadline:
        await _watch_once(bridge, report, errors_before, loop.time() - began)
        if not bridge.alive():
            report.alive = False
            report.exit_code = bridge.returncode()
            break
        await asyncio.sleep(WATCH_INTERVAL_SECONDS)

    await asyncio.to_thread(start)
    back = loop.time()
    if report.alive and await _wait_ready(bridge, RECOVERY_TIMEOUT_SECONDS):
        report.recovery_seconds = loop.time() - back
    report.alive = report.alive and bridge.alive()
    return report


async def _watch_once(
    bridge: ChaosBridge, report: OutageReport, errors_before: float, elapsed: float
) -> None:
    """Note when the bridge first showed each sign of the outage."""
    readiness = await bridge.readyz()
    not_ready = (
        readiness is not None and readiness[0] == 503 and "Kafka" in readiness[1]
    )
    if not_ready and report.not_ready_after is None:
        report.not_ready_after = elapsed
    samples = await bridge.metrics()
    if samples is None:
        return
    disconnected = samples.value("toloka_bridge_kafka_connected") == 0
    if disconnected and report.disconnected_after is None:
        report.disconnected_after = elapsed
    errors = _publish_errors(samples) - errors_before
    if errors > 0 and report.errors_after is None:
        report.errors_after = elapsed
    report.publish_errors = max(report.publish_errors, errors)


def _publish_errors(samples: Samples) -> float:
    return samples.value("toloka_bridge_publish_errors_total")


async def _wait_ready(bridge: ChaosBridge, timeout_seconds: float) -> str | None:
    """Wait until /readyz says 200 and Kafka counts as connected; return the body."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_seconds
    while loop.time() < deadline and bridge.alive():
        readiness = await bridge.readyz()
        samples = await bridge.metrics()
        connected = (
            samples is not None and samples.value("toloka_bridge_kafka_connected") == 1
        )
        if readiness is not None and readiness[0] == 200 and connected:
            return readiness[1].strip()
        await asyncio.sleep(WATCH_INTERVAL_SECONDS)
    return None


def _check_outage(result: ScenarioResult, report: OutageReport) -> None:
    label = report.label
    result.check(
        f"{label}: the bridge kept running",
        report.alive,
        f"from {report.began}; exit code {report.exit_code}",
    )
    result.check(
        f"{label}: /readyz answered 503 naming Kafka",
        report.not_ready_after is not None,
        _after(report.not_ready_after),
    )
    result.check(
        f"{label}: toloka_bridge_kafka_connected was 0",
        report.disconnected_after is not None,
        _after(report.disconnected_after),
    )
    result.check(
        f"{label}: toloka_bridge_publish_errors_total rose",
        report.publish_errors > 0,
        f"+{report.publish_errors:.0f}, {_after(report.errors_after)}",
    )
    recovered = report.recovery_seconds is not None
    evidence = (
        "never"
        if not recovered
        else f"ready {report.recovery_seconds:.1f} s after the broker returned"
    )
    result.check(f"{label}: recovered on its own", recovered, evidence)


def _after(seconds: float | None) -> str:
    return "never" if seconds is None else f"{seconds:.1f} s into the outage"
