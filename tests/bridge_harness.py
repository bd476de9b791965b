"""Running the real bridge against the simulator and a real broker, and judging it.

Shared by the end-to-end, crash, metrics and chaos tests: build a configuration for a
simulator and fresh topics, run the bridge in-process or as a subprocess, read the
events topic back with a read_committed consumer, and compare it with the simulator's
ground truth.
"""

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from pathlib import Path

import msgspec
from aiokafka import AIOKafkaConsumer, TopicPartition
from prometheus_client import CollectorRegistry

from bridge.config import Config, load_config
from bridge.events import OperationEvent, decode_event
from bridge.operation import parse_wire_datetime
from bridge.service import run_bridge
from bridge.simulator.truth import TruthRecord

API_KEY = "sim-token"
REPO = Path(__file__).resolve().parent.parent


class Verdict(msgspec.Struct, kw_only=True):
    """How the published stream compares with what really happened."""

    operations: int
    transitions: int
    published_transitions: int
    lost: int
    duplicated: int
    out_of_order: int
    phantom: int
    misdated: int
    sequence_gaps: int
    problems: list[str]

    @property
    def exact(self) -> bool:
        counts = (self.lost, self.duplicated, self.out_of_order, self.phantom)
        return not any(counts) and not self.misdated and not self.sequence_gaps


def bridge_environment(
    base_url: str, bootstrap: str, name: str, **overrides: str
) -> dict[str, str]:
    """TOLOKA_BRIDGE_* variables for a bridge on fresh topics named after `name`."""
    settings = {
        "TOLOKA_BRIDGE_TOLOKA__BASE_URL": base_url,
        "TOLOKA_BRIDGE_TOLOKA__API_KEY": API_KEY,
        "TOLOKA_BRIDGE_TOLOKA__ENVIRONMENT": "test",
        "TOLOKA_BRIDGE_TOLOKA__ACCOUNT": name,
        "TOLOKA_BRIDGE_TOLOKA__BACKOFF_INITIAL_SECONDS": "0.05",
        "TOLOKA_BRIDGE_TOLOKA__BACKOFF_MAX_SECONDS": "0.5",
        "TOLOKA_BRIDGE_POLL__INTERVAL_SECONDS": "0.3",
        "TOLOKA_BRIDGE_POLL__LAG_SECONDS": "5",
        "TOLOKA_BRIDGE_POLL__START": "all",
        "TOLOKA_BRIDGE_KAFKA__BOOTSTRAP_SERVERS": bootstrap,
        "TOLOKA_BRIDGE_KAFKA__EVENTS_TOPIC": f"{name}.events",
        "TOLOKA_BRIDGE_KAFKA__STATE_TOPIC": f"{name}.state",
        "TOLOKA_BRIDGE_KAFKA__TRANSACTIONAL_ID": f"{name}.bridge",
        "TOLOKA_BRIDGE_KAFKA__EVENTS_PARTITIONS": "3",
        "TOLOKA_BRIDGE_KAFKA__REPLICATION_FACTOR": "1",
        "TOLOKA_BRIDGE_KAFKA__MIN_INSYNC_REPLICAS": "1",
        "TOLOKA_BRIDGE_HTTP__PORT": "0",
        "TOLOKA_BRIDGE_LOG__FORMAT": "plain",
    }
    settings.update(overrides)
    return settings


def unique_name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def bridge_config(environment: Mapping[str, str]) -> Config:
    return load_config(None, environment)


@contextlib.asynccontextmanager
async def running_bridge(
    config: Config, registry: CollectorRegistry | None = None
) -> AsyncIterator[asyncio.Task[None]]:
    """Run the bridge in this event loop; stop it (SIGTERM-style) on exit."""
    stopping = asyncio.Event()
    task = asyncio.create_task(run_bridge(config, stopping, registry=registry))
    try:
        yield task
    finally:
        stopping.set()
        await asyncio.wait_for(task, timeout=60)


class BridgeProcess:
    """`python -m bridge run` as a child process, for kill -9 tests."""

    def __init__(self, environment: Mapping[str, str], log_path: Path) -> None:
        self._environment = {**os.environ, **environment}
        self._log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        log = self._log_path.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "bridge", "run"],
            env=self._environment,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=REPO,
        )
        log.close()

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=30)

    def terminate(self) -> int:
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=60)

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None


async def read_events(
    bootstrap: str, topic: str, partitions: int
) -> list[tuple[int, OperationEvent]]:
    """Everything committed on the events topic, as (partition, event), in order."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        isolation_level="read_committed",
        enable_auto_commit=False,
    )
    await consumer.start()
    try:
        assigned = [TopicPartition(topic, number) for number in range(partitions)]
        consumer.assign(assigned)
        await consumer.seek_to_beginning(*assigned)
        ends = await consumer.end_offsets(assigned)
        events: list[tuple[int, OperationEvent]] = []
        remaining = {tp for tp, end in ends.items() if end > 0}
        while remaining:
            batches = await consumer.getmany(*remaining, timeout_ms=1000)
            for tp, records in batches.items():
                events.extend((tp.partition, decode_event(r.value)) for r in records)
            for tp in list(remaining):
                if await consumer.position(tp) >= ends[tp]:
                    remaining.discard(tp)
        return events
    finally:
        await consumer.stop()


def judge(
    truth: Iterable[TruthRecord], published: list[tuple[int, OperationEvent]]
) -> Verdict:
    """Compare status transitions per operation, in order, dated by the operation."""
    expected: dict[str, list[TruthRecord]] = defaultdict(list)
    for record in truth:
        expected[record.operation_id].append(record)

    by_operation: dict[str, list[OperationEvent]] = defaultdict(list)
    for _, event in published:
        by_operation[event.operation_id].append(event)

    problems: list[str] = []
    counts: defaultdict[str, int] = defaultdict(int)
    for operation_id, events in by_operation.items():
        _check_sequences(operation_id, events, counts, problems)
        if operation_id not in expected:
            counts["phantom"] += 1
            problems.append(f"{operation_id}: published but never existed")

    for operation_id, records in expected.items():
        statuses = [
            e for e in by_operation.get(operation_id, []) if e.kind != "progressed"
        ]
        _compare(operation_id, records, statuses, counts, problems)

    return Verdict(
        operations=len(expected),
        transitions=sum(len(r) for r in expected.values()),
        published_transitions=sum(1 for _, e in published if e.kind != "progressed"),
        lost=counts["lost"],
        duplicated=counts["duplicated"],
        out_of_order=counts["out_of_order"],
        phantom=counts["phantom"],
        misdated=counts["misdated"],
        sequence_gaps=counts["sequence_gaps"],
        problems=problems[:20],
    )


def _check_sequences(
    operation_id: str,
    events: list[OperationEvent],
    counts: dict[str, int],
    problems: list[str],
) -> None:
    sequences = [event.sequence for event in events]
    unique = sorted(set(sequences))
    if len(unique) != len(sequences):
        counts["duplicated"] += len(sequences) - len(unique)
        problems.append(f"{operation_id}: repeated sequences {sequences}")
    if sequences != sorted(sequences):
        counts["out_of_order"] += 1
        problems.append(f"{operation_id}: sequences out of order {sequences}")
    if unique != list(range(1, len(unique) + 1)):
        counts["sequence_gaps"] += 1
        problems.append(f"{operation_id}: sequence gaps {unique}")


def _compare(
    operation_id: str,
    records: list[TruthRecord],
    events: list[OperationEvent],
    counts: dict[str, int],
    problems: list[str],
) -> None:
    want = [(r.from_status, r.to_status) for r in records]
    got = [(e.previous_status, e.status) for e in events]
    if got == want:
        for record, event in zip(records, events, strict=True):
            if parse_wire_datetime(record.at) != event.occurred_at:
                counts["misdated"] += 1
                problems.append(f"{operation_id}: {record.at} vs {event.occurred_at}")
        return

    missing = [step for step in want if step not in got]
    extra = len(got) - (len(want) - len(missing))
    counts["lost"] += len(missing)
    counts["duplicated"] += max(0, extra)
    if not missing and extra <= 0:
        counts["out_of_order"] += 1
    problems.append(f"{operation_id}: expected {want}, published {got}")


async def wait_for(
    condition: Callable[[], Awaitable[bool]],
    timeout_seconds: float,
    interval_seconds: float = 0.5,
) -> bool:
    """Poll an async condition until it holds or the time is up."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_seconds
    while loop.time() < deadline:
        if await condition():
            return True
        await asyncio.sleep(interval_seconds)
    return bool(await condition())
