"""Scenario 1: SIGKILL the bridge again and again: mid-poll, -transaction, -restore.

The simulator starts with thousands of finished operations and a steady stream of new
ones; the bridge reads from the beginning with small pages, so its first cycles are
long and made of many small transactions, and the state topic it must restore grows.
Before each start a burst of operations arrives (one shared `submitted` timestamp, so
the scans also page through a timestamp shared by hundreds of ids), which the restarted
bridge must catch up on. Each kill waits for one of four triggers, then a random delay:

- `restore`: the run logged "producer started" (the restore begins) -> 0-20 ms;
- `transaction`: after the restore, the bridge is frozen (SIGSTOP) at random moments
  until the broker shows one of its transactions open, and killed frozen; after
  `TRANSACTION_HUNT_SECONDS` without one it is killed wherever it is. (A fixed delay
  after a full page once missed every transaction in a run: the pages were of known
  operations, with nothing to publish.)
- `busy`: the run logged "state restored" -> 0.05-1.5 s;
- `anytime`: the process started -> 0.2-3 s.

Where the kill landed is decided from evidence, not from the trigger: the run's log
(DEBUG) says whether the restore had finished, and right after the kill the broker
says whether a transaction of the bridge was open (last stable offset below the high
watermark on the events or state topic).
"""

import asyncio
import os
import random
import time
from collections import Counter

import msgspec

from bridge.simulator.runner import Simulator, run_simulator
from bridge.simulator.settings import LoadSettings, SimulatorSettings
from tests.bridge_harness import bridge_environment, unique_name
from tests.chaos.context import ChaosContext, Scale
from tests.chaos.processes import ChaosBridge
from tests.chaos.results import ScenarioResult
from tests.chaos.streams import settle_and_judge
from tests.chaos.topics import TransactionWatch, kafka_options, read_records

EVENTS_PARTITIONS = 3
PAGE_SIZE = 25
TRIGGERS = ("restore", "transaction", "busy", "anytime")
TRANSACTION_HUNT_SECONDS = 20.0
IN_FLIGHT_SECONDS = 0.05
BURST_TYPES = ("TASK.BATCH_CREATE", "POOL.OPEN", "ANALYTICS", "USER_BONUS.BATCH_CREATE")
RESTORE_STARTED = "producer started"
RESTORE_DONE = "state restored"
START_TIMEOUT_SECONDS = 90.0
SETTLE_TIMEOUT_SECONDS = 180.0


class Kill(msgspec.Struct, frozen=True):
    """One SIGKILL: how it was timed and where it landed."""

    trigger: str
    delay_seconds: float
    phase: str
    evidence: str


async def run(context: ChaosContext) -> ScenarioResult:
    scale = context.scale
    seed = int(os.environ.get("CHAOS_SEED", time.time_ns() % 1_000_000))
    result = ScenarioResult(
        scenario=(
            f"1. Crashes: SIGKILL x{scale.crash_kills} (poll, transaction, restore)"
        )
    )
    started = time.monotonic()
    name = unique_name("chaos-crash")
    load = LoadSettings(
        rate_per_second=scale.crash_rate_per_second,
        mean_queue_seconds=0.5,
        mean_run_seconds=2.0,
        instant_ratio=0.2,
        burst_probability=0.01,
        burst_size=30,
        history=scale.crash_history,
        history_window_seconds=1800.0,
        running=100,
    )
    options = kafka_options(context.bootstrap)
    async with run_simulator(SimulatorSettings(seed=seed, load=load)) as sim:
        environment = bridge_environment(
            sim.base_url,
            context.bootstrap,
            name,
            TOLOKA_BRIDGE_LOG__LEVEL="DEBUG",
            TOLOKA_BRIDGE_TOLOKA__PAGE_SIZE=str(PAGE_SIZE),
            TOLOKA_BRIDGE_POLL__MAX_EVENTS_PER_TRANSACTION="30",
        )
        bridge = ChaosBridge(environment, context.directory(name) / "bridge.log")
        try:
            kills = await _kill_repeatedly(bridge, sim, options, name, scale, seed)
            bridge.start()
            verdict, _, _ = await settle_and_judge(
                sim,
                options,
                f"{name}.events",
                EVENTS_PARTITIONS,
                SETTLE_TIMEOUT_SECONDS,
            )
            exit_code = await bridge.terminate()
        finally:
            await bridge.stop()

    result.add_verdict(verdict)
    _check_kills(result, kills, scale.crash_kills)
    result.check(
        "clean shutdown after the last restart (exit 0)", exit_code == 0, exit_code
    )
    await _check_aborted(result, options, name)
    result.note(f"seed {seed}; bridge log: {bridge.log_path}")
    result.seconds = time.monotonic() - started
    return result


async def _kill_repeatedly(
    bridge: ChaosBridge,
    sim: Simulator,
    options: dict[str, object],
    name: str,
    scale: Scale,
    seed: int,
) -> list[Kill]:
    rng = random.Random(seed)
    bridge.start()
    if not await bridge.wait_for_line(RESTORE_DONE, START_TIMEOUT_SECONDS):
        raise RuntimeError(f"the bridge never restored: {bridge.run_log()[-2000:]}")

    topics = {f"{name}.events": EVENTS_PARTITIONS, f"{name}.state": 1}
    watch = TransactionWatch(options, topics)
    await watch.start()
    kills: list[Kill] = []
    try:
        for index in range(scale.crash_kills):
            if index > 0:
                sim.engine.create(
                    rng.choice(BURST_TYPES), scale.crash_burst, scheduled=True
                )
                bridge.start()
            trigger = TRIGGERS[index % len(TRIGGERS)]
            delay = await _wait_for_trigger(bridge, trigger, rng, watch)
            bridge.kill()
            open_transactions = await watch.open_transactions()
            kills.append(_classify(trigger, delay, bridge.run_log(), open_transactions))
    finally:
        await watch.stop()
    return kills


async def _wait_for_trigger(
    bridge: ChaosBridge, trigger: str, rng: random.Random, watch: TransactionWatch
) -> float:
    """Wait for the trigger's log line (if any), then a random delay; return it."""
    if trigger == "restore":
        await bridge.wait_for_line(RESTORE_STARTED, START_TIMEOUT_SECONDS)
        delay = rng.uniform(0.0, 0.02)
    elif trigger == "transaction":
        await bridge.wait_for_line(RESTORE_DONE, START_TIMEOUT_SECONDS)
        return await _freeze_in_transaction(bridge, rng, watch)
    elif trigger == "busy":
        await bridge.wait_for_line(RESTORE_DONE, START_TIMEOUT_SECONDS)
        delay = rng.uniform(0.05, 1.5)
    else:
        delay = rng.uniform(0.2, 3.0)
    await asyncio.sleep(delay)
    return delay


async def _freeze_in_transaction(
    bridge: ChaosBridge, rng: random.Random, watch: TransactionWatch
) -> float:
    """Freeze the bridge at random moments until one of its transactions is open on
    the broker, and leave it frozen; return the seconds spent. Requests already on
    the wire when it froze (a commit among them) land first, so the broker is asked
    only after `IN_FLIGHT_SECONDS`."""
    began = time.monotonic()
    while time.monotonic() - began < TRANSACTION_HUNT_SECONDS:
        await asyncio.sleep(rng.uniform(0.0, 0.03))
        bridge.freeze()
        await asyncio.sleep(IN_FLIGHT_SECONDS)
        if await watch.open_transactions():
            break
        bridge.thaw()
    return time.monotonic() - began


def _classify(
    trigger: str, delay: float, log: str, open_transactions: list[str]
) -> Kill:
    """Where a kill landed, by the run's log and the broker's open transactions."""
    if RESTORE_STARTED not in log:
        phase, evidence = "start-up", "no 'producer started' line yet"
    elif RESTORE_DONE not in log:
        phase, evidence = "restore", "'producer started' logged, 'state restored' not"
    elif open_transactions:
        phase, evidence = "transaction", "open: " + ", ".join(open_transactions)
    elif _between_cycles(log):
        phase, evidence = "idle", _last_line(log)
    else:
        phase, evidence = "poll", _last_line(log)
    return Kill(trigger, delay, phase, evidence)


def _between_cycles(log: str) -> bool:
    """The last thing the run did was to finish a cycle (it waits for the next)."""
    return log.rfind("poll cycle done") > log.rfind("toloka ")


def _last_line(log: str) -> str:
    lines = [line for line in log.splitlines() if line.strip()]
    return lines[-1][-160:] if lines else "(empty log)"


def _check_kills(result: ScenarioResult, kills: list[Kill], wanted: int) -> None:
    phases = Counter(kill.phase for kill in kills)
    summary = ", ".join(f"{phase} {count}" for phase, count in sorted(phases.items()))
    result.check(f"{wanted} kills done", len(kills) == wanted, len(kills))
    for phase in ("restore", "transaction", "poll"):
        result.check(f"some kills landed mid-{phase}", phases[phase] > 0, summary)
    for number, kill in enumerate(kills, start=1):
        result.note(
            f"kill {number}: {kill.trigger} +{kill.delay_seconds:.2f}s -> "
            f"{kill.phase} ({kill.evidence})"
        )


async def _check_aborted(
    result: ScenarioResult, options: dict[str, object], name: str
) -> None:
    """Aborted transactions left records that only read_uncommitted readers see."""
    topic = f"{name}.events"
    committed = await read_records(options, topic, EVENTS_PARTITIONS)
    everything = await read_records(
        options, topic, EVENTS_PARTITIONS, "read_uncommitted"
    )
    hidden = len(everything) - len(committed)
    result.check(
        "aborted transactions stayed invisible to read_committed",
        hidden >= 0,
        f"{hidden} records of aborted transactions, {len(committed)} committed",
    )
