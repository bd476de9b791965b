"""A downstream service reading toloka-bridge's events: the whole pattern in one file.

    KAFKA_BOOTSTRAP=127.0.0.1:9092 python dev/consumer_example.py

It joins a consumer group, reads only committed events (`read_committed`), routes on
the CloudEvents `ce_type` header without parsing the value, decodes the value into the
few fields it needs, drops repeats by `event_id` (only possible when the bridge runs
without transactions), and commits its offsets after handling each batch.
It imports nothing from toloka-bridge: the topic's contract is all it needs.
"""

import argparse
import asyncio
import os
from collections import OrderedDict

import msgspec
from aiokafka import AIOKafkaConsumer

FAILED = "org.tolokabridge.operation.failed.v1"
SUCCEEDED = "org.tolokabridge.operation.succeeded.v1"


class Change(msgspec.Struct):
    """The part of an event this service uses; other fields are ignored."""

    event_id: str
    operation_id: str
    operation_type: str
    status: str
    occurred_at: str


class RecentIds:
    """Remembers the last `size` event ids, to drop repeated deliveries."""

    def __init__(self, size: int = 100_000) -> None:
        self._ids: OrderedDict[str, None] = OrderedDict()
        self._size = size

    def first_time(self, event_id: str) -> bool:
        if event_id in self._ids:
            return False
        self._ids[event_id] = None
        if len(self._ids) > self._size:
            self._ids.popitem(last=False)
        return True


def handle(change: Change) -> None:
    """Where a real service would open the next pool, pay a bonus or page someone."""
    verb = "failed" if change.status == "FAIL" else "finished"
    print(
        f"{change.operation_type} {change.operation_id} {verb} at {change.occurred_at}"
    )


async def consume(bootstrap: str, topic: str, group: str, limit: int) -> int:
    """Handle finished operations until `limit` were handled (0: forever)."""
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=group,
        isolation_level="read_committed",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    decoder = msgspec.json.Decoder(Change)
    seen = RecentIds()
    handled = 0
    await consumer.start()
    try:
        while not limit or handled < limit:
            batches = await consumer.getmany(timeout_ms=1000)
            for records in batches.values():
                for record in records:
                    kind = dict(record.headers).get("ce_type", b"").decode()
                    if kind not in (SUCCEEDED, FAILED):
                        continue
                    change = decoder.decode(record.value)
                    if seen.first_time(change.event_id):
                        handle(change)
                        handled += 1
            await consumer.commit()
    finally:
        await consumer.stop()
    return handled


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--topic", default="toloka.operations.events")
    parser.add_argument("--group", default="example-service")
    parser.add_argument("--limit", type=int, default=0, help="stop after N (0: never)")
    args = parser.parse_args()
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP", "127.0.0.1:9092")
    asyncio.run(consume(bootstrap, args.topic, args.group, args.limit))


if __name__ == "__main__":
    main()
