"""Writing a cycle's events and state records to Kafka, all or nothing.

With transactions on (the default), one `publish` is one Kafka transaction holding the
events and the state records that describe them: a crash at any point leaves both or
neither, and `read_committed` consumers see each event once. The fixed
`transactional_id` fences any older instance of the same deployment.

With transactions off, events are written and acknowledged before the state records:
a crash in between repeats events on restart (at least once); their deterministic ids
let consumers drop the repeats. `publish` then returns where the events landed, for
the coverage record (see `bridge.state`).

Any failure other than being fenced throws the producer away; the next `publish`
starts a new one, whose initialisation aborts whatever the old one left open.
"""

import asyncio
import functools
import logging
import random
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import msgspec
from aiokafka import AIOKafkaProducer
from aiokafka.errors import (
    InvalidProducerEpoch,
    KafkaError,
    ProducerFenced,
    TransactionalIdAuthorizationFailed,
)
from aiokafka.partitioner import murmur2

from bridge.brokers import connection_options
from bridge.config import KafkaSettings
from bridge.errors import FencedError, PublishError
from bridge.events import OperationEvent, encode_event, event_headers
from bridge.state import EventOffsets, StateRecord

logger = logging.getLogger(__name__)

ProducerFactory = Callable[..., Any]


class PublishObserver(Protocol):
    """What the metrics module learns from the publisher."""

    def transaction_aborted(self) -> None: ...

    def kafka_connected(self, connected: bool) -> None: ...


class _Unobserved:
    def transaction_aborted(self) -> None:
        """Nobody is counting."""

    def kafka_connected(self, connected: bool) -> None:
        """Nobody is counting."""


FENCING_ERRORS = (
    ProducerFenced,
    InvalidProducerEpoch,
    TransactionalIdAuthorizationFailed,
)
STOP_TIMEOUT_SECONDS = 5.0
GIVE_UP_SECONDS = 1.0
"""How long a failed publish waits for its abort and its producer's stop: the broker
did not answer in time already, and the next producer aborts what this one left."""


KEY_HASH_CACHE_SIZE = 4_096
"""Recent keys whose hash is remembered. One operation's events are sent one after
another, and aiokafka's pure-Python murmur2 was 15% of a catch-up's CPU; a cache of
every tracked operation (65,536 keys) cost 18 MiB at 50,000 tracked, this one ~1 MiB."""


@functools.lru_cache(maxsize=KEY_HASH_CACHE_SIZE)
def _key_hash(key: bytes) -> int:
    return int(murmur2(key)) & 0x7FFFFFFF


def partition_for(key: bytes | None, partitions: Sequence[int], available: Any) -> int:
    """Kafka's default placement (murmur2 of the key, as the Java client does), with
    each key's hash computed once; a record without a key goes to a random partition."""
    if key is None:
        candidates: Sequence[int] = available or partitions
        return random.choice(candidates)
    return partitions[_key_hash(key) % len(partitions)]


class Batch(msgspec.Struct, frozen=True):
    """Events and the state records that say they were published."""

    events: list[OperationEvent]
    state_records: list[StateRecord]

    def __len__(self) -> int:
        return len(self.events) + len(self.state_records)


class Publisher:
    """Owns the Kafka producer; `publish` either lands a whole batch or raises."""

    def __init__(
        self,
        settings: KafkaSettings,
        observer: PublishObserver | None = None,
        producer_factory: ProducerFactory = AIOKafkaProducer,
    ) -> None:
        self._settings = settings
        self._observer = observer or _Unobserved()
        self._producer_factory = producer_factory
        self._producer: Any = None

    @property
    def transactional(self) -> bool:
        return self._settings.transactions

    @property
    def connected(self) -> bool:
        return self._producer is not None

    async def start(self) -> None:
        """Connect, and with transactions fence older instances and abort their work."""
        if self._producer is not None:
            return

        producer = self._producer_factory(**self._producer_options())
        try:
            await producer.start()
        except FENCING_ERRORS as error:
            await _stop_quietly(producer)
            raise FencedError(f"producer fenced at start: {error!r}") from error
        except (KafkaError, OSError) as error:
            await _stop_quietly(producer)
            self._observer.kafka_connected(False)
            raise PublishError(f"cannot start the Kafka producer: {error!r}") from error

        self._producer = producer
        self._observer.kafka_connected(True)
        logger.info(
            "producer started (transactions %s)", "on" if self.transactional else "off"
        )

    async def publish(self, batch: Batch) -> EventOffsets:
        """Land the whole batch in Kafka, or raise and leave nothing visible; without
        transactions, return the offset after the batch's last event per partition."""
        if not len(batch):
            return {}
        await self.start()

        try:
            async with asyncio.timeout(self._settings.transaction_timeout_seconds):
                if self.transactional:
                    await self._publish_in_transaction(batch)
                    return {}
                return await self._publish_events_then_state(batch)
        except FENCING_ERRORS as error:
            await self._discard()
            raise FencedError(f"another instance took over: {error!r}") from error
        except (KafkaError, OSError, TimeoutError) as error:
            self._observer.kafka_connected(False)
            await self._discard(GIVE_UP_SECONDS)
            raise PublishError(f"Kafka did not take the batch: {error!r}") from error

    async def stop(self) -> None:
        await self._discard()

    async def _publish_in_transaction(self, batch: Batch) -> None:
        producer = self._producer
        await producer.begin_transaction()
        try:
            pending = await self._send_events(batch.events)
            pending += await self._send_state(batch.state_records)
            await asyncio.gather(*pending)
        except BaseException:
            await self._abort_quietly()
            raise
        await producer.commit_transaction()

    async def _publish_events_then_state(self, batch: Batch) -> EventOffsets:
        landed = await asyncio.gather(*await self._send_events(batch.events))
        await asyncio.gather(*await self._send_state(batch.state_records))

        offsets: EventOffsets = {}
        for metadata in landed:
            offsets[metadata.partition] = max(
                offsets.get(metadata.partition, 0), metadata.offset + 1
            )
        return offsets

    async def _send_events(self, events: list[OperationEvent]) -> list[Any]:
        topic = self._settings.events_topic
        return [
            await self._producer.send(
                topic,
                value=encode_event(event),
                key=event.operation_id.encode(),
                headers=event_headers(event),
            )
            for event in events
        ]

    async def _send_state(self, records: list[StateRecord]) -> list[Any]:
        topic = self._settings.state_topic
        return [
            await self._producer.send(topic, value=value, key=key)
            for key, value in records
        ]

    async def _abort_quietly(self) -> None:
        self._observer.transaction_aborted()
        try:
            async with asyncio.timeout(GIVE_UP_SECONDS):
                await self._producer.abort_transaction()
        except (KafkaError, TimeoutError) as error:
            logger.warning("abort failed, the next producer will fence it: %r", error)

    async def _discard(self, timeout_seconds: float = STOP_TIMEOUT_SECONDS) -> None:
        producer, self._producer = self._producer, None
        if producer is not None:
            await _stop_quietly(producer, timeout_seconds)

    def _producer_options(self) -> dict[str, Any]:
        settings = self._settings
        options = connection_options(settings)
        options.update(
            acks="all",
            enable_idempotence=True,
            partitioner=partition_for,
            linger_ms=int(settings.linger_seconds * 1000),
            max_batch_size=256 * 1024,
            compression_type=None if settings.compression == "none" else "gzip",
        )
        if settings.transactions:
            options.update(
                transactional_id=settings.transactional_id,
                transaction_timeout_ms=int(settings.transaction_timeout_seconds * 1000),
            )
        return options


async def _stop_quietly(
    producer: Any, timeout_seconds: float = STOP_TIMEOUT_SECONDS
) -> None:
    try:
        async with asyncio.timeout(timeout_seconds):
            await producer.stop()
    except (KafkaError, OSError, TimeoutError) as error:
        logger.debug("producer did not stop cleanly: %r", error)
