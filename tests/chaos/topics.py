"""Reading back what landed in Kafka, over any listener, and spotting open transactions.

`kafka_options` gives the keyword arguments of an aiokafka client for a plaintext or a
SASL_SSL broker. `read_events` and `read_records` read a topic to its end as a
read_committed consumer sees it. `TransactionWatch` compares, per partition, the last
stable offset (what read_committed may read) with the high watermark: a gap means a
transaction is open right now, which is how a crash test proves its kill landed
between `begin` and `commit`.
"""

import ssl
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.helpers import create_ssl_context

from bridge.events import OperationEvent, decode_event

Options = dict[str, Any]
Record = tuple[bytes | None, bytes | None, list[tuple[str, bytes]]]


def kafka_options(
    bootstrap: str,
    *,
    user: str | None = None,
    password: str | None = None,
    ca_file: str | None = None,
) -> Options:
    """aiokafka client arguments: plaintext, or SASL_SSL SCRAM-SHA-512 with a CA."""
    options: Options = {"bootstrap_servers": bootstrap, "request_timeout_ms": 10_000}
    if user is None:
        return options

    context: ssl.SSLContext = create_ssl_context(cafile=ca_file)
    options.update(
        security_protocol="SASL_SSL",
        ssl_context=context,
        sasl_mechanism="SCRAM-SHA-512",
        sasl_plain_username=user,
        sasl_plain_password=password,
    )
    return options


async def read_records(
    options: Options, topic: str, partitions: int, isolation: str = "read_committed"
) -> list[tuple[int, Record]]:
    """Every record of the topic as (partition, (key, value, headers)), in order."""
    consumer = AIOKafkaConsumer(
        **options, isolation_level=isolation, enable_auto_commit=False
    )
    await consumer.start()
    try:
        assigned = [TopicPartition(topic, number) for number in range(partitions)]
        consumer.assign(assigned)
        await consumer.seek_to_beginning(*assigned)
        ends = await consumer.end_offsets(assigned)
        records: list[tuple[int, Record]] = []
        remaining = {tp for tp, end in ends.items() if end > 0}
        while remaining:
            batches = await consumer.getmany(*remaining, timeout_ms=1000)
            for tp, batch in batches.items():
                records.extend(
                    (tp.partition, (r.key, r.value, list(r.headers))) for r in batch
                )
            for tp in list(remaining):
                if await consumer.position(tp) >= ends[tp]:
                    remaining.discard(tp)
        return records
    finally:
        await consumer.stop()


async def read_events(
    options: Options, topic: str, partitions: int
) -> list[tuple[int, OperationEvent]]:
    """The committed events of the events topic as (partition, event)."""
    records = await read_records(options, topic, partitions)
    return [
        (partition, decode_event(value))
        for partition, (_, value, _) in records
        if value is not None
    ]


class TransactionWatch:
    """Two consumers kept open to compare last stable offsets with high watermarks."""

    def __init__(self, options: Options, partitions: dict[str, int]) -> None:
        self._committed = AIOKafkaConsumer(**options, isolation_level="read_committed")
        self._uncommitted = AIOKafkaConsumer(
            **options, isolation_level="read_uncommitted"
        )
        self._partitions = [
            TopicPartition(topic, number)
            for topic, count in partitions.items()
            for number in range(count)
        ]

    async def start(self) -> None:
        await self._committed.start()
        await self._uncommitted.start()

    async def stop(self) -> None:
        await self._committed.stop()
        await self._uncommitted.stop()

    async def open_transactions(self) -> list[str]:
        """Partitions whose records include some of a transaction still open."""
        stable = await self._committed.end_offsets(self._partitions)
        high = await self._uncommitted.end_offsets(self._partitions)
        return [
            f"{tp.topic}[{tp.partition}] {stable[tp]}<{high[tp]}"
            for tp in self._partitions
            if stable[tp] < high[tp]
        ]
