"""Reading what landed in Kafka, the way a downstream service would.

A `TopicWatcher` is a `read_committed` consumer assigned to every partition of one
topic from the beginning. It notes, for each record, the wall-clock moment `getmany`
handed it over: the moment the record was visible to a consumer, which is within a
fetch round trip of its transaction's commit. It keeps either a compact `Sighting`
per event (for latency and counting) or nothing but counts and times.
"""

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from datetime import datetime

import msgspec
from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from bridge.events import decode_event

FETCH_MAX_WAIT_MS = 50
TOPIC_READY_SECONDS = 30.0


class Sighting(msgspec.Struct, frozen=True, array_like=True):
    """One status event as a consumer saw it."""

    operation_id: str
    previous_status: str | None
    status: str
    kind: str
    occurred_at: datetime
    initial_load: bool
    inferred: bool
    visible_at: float


class TopicWatcher:
    """Counts (and optionally decodes) every committed record of a topic."""

    def __init__(
        self, bootstrap: str, topic: str, partitions: int, decode: bool = False
    ) -> None:
        self._bootstrap = bootstrap
        self._topic = topic
        self._partitions = partitions
        self._decode = decode
        self.count = 0
        self.first_visible_at: float | None = None
        self.last_visible_at: float | None = None
        self.first_batch_size = 0
        self.sightings: list[Sighting] = []
        self._task: asyncio.Task[None] | None = None
        self._started = asyncio.Event()

    async def __aenter__(self) -> "TopicWatcher":
        self._task = asyncio.create_task(self._run(), name=f"watch-{self._topic}")
        started = asyncio.create_task(self._started.wait())
        await asyncio.wait({self._task, started}, return_when=asyncio.FIRST_COMPLETED)
        started.cancel()
        if self._task.done():
            self._task.result()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def wait_for_count(self, count: int, timeout_seconds: float) -> bool:
        """Wait until `count` records were seen; False if the time ran out."""
        return await wait_until(lambda: self._reached(count), timeout_seconds)

    async def _reached(self, count: int) -> bool:
        if self._task is not None and self._task.done():
            self._task.result()
        return self.count >= count

    async def _run(self) -> None:
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self._bootstrap,
            isolation_level="read_committed",
            enable_auto_commit=False,
            fetch_max_wait_ms=FETCH_MAX_WAIT_MS,
            max_partition_fetch_bytes=4 * 1024 * 1024,
        )
        await consumer.start()
        try:
            assigned = [TopicPartition(self._topic, p) for p in range(self._partitions)]
            consumer.assign(assigned)
            await consumer.seek_to_beginning(*assigned)
            self._started.set()
            while True:
                batches = await consumer.getmany(timeout_ms=200, max_records=10_000)
                self._take(batches, time.time())
        finally:
            await consumer.stop()

    def _take(
        self, batches: dict[TopicPartition, list[ConsumerRecord]], visible_at: float
    ) -> None:
        size = sum(len(records) for records in batches.values())
        if not size:
            return
        if self.first_visible_at is None:
            self.first_visible_at = visible_at
            self.first_batch_size = size
        self.last_visible_at = visible_at
        self.count += size
        if self._decode:
            for records in batches.values():
                self.sightings.extend(_sighting(r.value, visible_at) for r in records)


def _sighting(value: bytes, visible_at: float) -> Sighting:
    event = decode_event(value)
    return Sighting(
        operation_id=event.operation_id,
        previous_status=event.previous_status,
        status=event.status,
        kind=event.kind,
        occurred_at=event.occurred_at,
        initial_load=event.initial_load,
        inferred=event.inferred,
        visible_at=visible_at,
    )


async def wait_until(
    condition: Callable[[], Awaitable[bool]],
    timeout_seconds: float,
    interval_seconds: float = 0.1,
) -> bool:
    deadline = time.monotonic() + timeout_seconds
    while time.monotonic() < deadline:
        if await condition():
            return True
        await asyncio.sleep(interval_seconds)
    return await condition()


async def create_topic(bootstrap: str, topic: str, partitions: int) -> None:
    """A fresh topic with one replica; returns once every partition has a leader."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, partitions, 1)])
        deadline = time.monotonic() + TOPIC_READY_SECONDS
        while not await _has_leaders(admin, topic, partitions):
            if time.monotonic() > deadline:
                raise RuntimeError(f"topic {topic!r} has no leaders after creation")
            await asyncio.sleep(0.1)
    finally:
        await admin.close()


async def _has_leaders(admin: AIOKafkaAdminClient, topic: str, partitions: int) -> bool:
    described = await admin.describe_topics([topic])
    found = described[0]["partitions"] if described else []
    led = [p for p in found if p["leader"] is not None and p["leader"] >= 0]
    return described[0]["error_code"] == 0 and len(led) == partitions
