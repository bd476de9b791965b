"""The two reference publishers of the catch-up benchmark, each run as its own process.

    python -m bench.publishers ceiling|naive --bootstrap HOST:PORT \\
        --source-topic T --target-topic U --partitions P --per-transaction 2000 \\
        [--limit N] --output result.json

Both first read the events the bridge wrote (`--source-topic`, read_committed) into
memory, untimed, then publish them to `--target-topic` with the bridge's delivery
settings: acks=all, idempotence, one transaction per `--per-transaction` events.

* `ceiling`: the already serialized values, keys and headers, sent the way the
  bridge's publisher sends (every send queued, the futures awaited together, then
  commit), with the bridge's linger and batch size. Nothing but Kafka's own cost.
* `ceiling-batch`: the same, but records go into one batch per partition built with
  `create_batch` and handed over with `send_batch` (no per-record future): a
  measured prototype of a faster publishing path, not what the bridge does today.
* `naive`: what a hand-written publisher does: for each event, build a dict, encode
  it with the standard `json` module, build the CloudEvents headers, and await the
  send before the next one (aiokafka's default linger of 0).

The result file holds the publisher's own timing and CPU time; the harness measures
visibility separately with a consumer.
"""

import argparse
import asyncio
import json
import sys
import time
import uuid
from typing import Any

import msgspec
import psutil  # type: ignore[import-untyped]
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.partitioner import murmur2

Record = tuple[bytes | None, bytes, list[tuple[str, bytes]]]


class PublisherResult(msgspec.Struct, kw_only=True):
    """What one reference publisher did, by its own clock."""

    kind: str
    events: int
    transactions: int
    seconds: float
    cpu_seconds: float
    rss_bytes: int


async def read_source(
    bootstrap: str, topic: str, partitions: int, limit: int | None
) -> list[Record]:
    """Every committed record of `topic` (or the first `limit`), untimed."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        isolation_level="read_committed",
        enable_auto_commit=False,
        max_partition_fetch_bytes=8 * 1024 * 1024,
    )
    await consumer.start()
    try:
        assigned = [TopicPartition(topic, number) for number in range(partitions)]
        consumer.assign(assigned)
        await consumer.seek_to_beginning(*assigned)
        ends = await consumer.end_offsets(assigned)
        records: list[Record] = []
        remaining = {tp for tp, end in ends.items() if end > 0}
        while remaining and (limit is None or len(records) < limit):
            batches = await consumer.getmany(*remaining, timeout_ms=1000)
            for batch in batches.values():
                records.extend((r.key, r.value, list(r.headers)) for r in batch)
            for tp in list(remaining):
                if await consumer.position(tp) >= ends[tp]:
                    remaining.discard(tp)
        return records if limit is None else records[:limit]
    finally:
        await consumer.stop()


def producer_options(bootstrap: str, linger_ms: int) -> dict[str, Any]:
    """The bridge publisher's delivery settings, with a transactional id of our own."""
    return {
        "bootstrap_servers": bootstrap,
        "client_id": "bench-reference",
        "request_timeout_ms": 30_000,
        "acks": "all",
        "enable_idempotence": True,
        "linger_ms": linger_ms,
        "max_batch_size": 256 * 1024,
        "transactional_id": f"bench-reference-{uuid.uuid4().hex[:8]}",
        "transaction_timeout_ms": 60_000,
    }


async def publish_ceiling(
    producer: AIOKafkaProducer, topic: str, records: list[Record], per_tx: int
) -> int:
    """Queue every send of a transaction, await them together, commit."""
    transactions = 0
    for start in range(0, len(records), per_tx):
        await producer.begin_transaction()
        pending = [
            await producer.send(topic, value=value, key=key, headers=headers)
            for key, value, headers in records[start : start + per_tx]
        ]
        await asyncio.gather(*pending)
        await producer.commit_transaction()
        transactions += 1
    return transactions


async def publish_batches(
    producer: AIOKafkaProducer, topic: str, records: list[Record], per_tx: int
) -> int:
    """Like the ceiling, but records go into per-partition batches (`send_batch`)."""
    partitions = sorted(producer.client.cluster.partitions_for_topic(topic) or [])
    transactions = 0
    for start in range(0, len(records), per_tx):
        await producer.begin_transaction()
        builders: dict[int, Any] = {}
        pending = []
        for key, value, headers in records[start : start + per_tx]:
            partition = partitions[(murmur2(key or b"") & 0x7FFFFFFF) % len(partitions)]
            builder = builders.setdefault(partition, producer.create_batch())
            if builder.append(key=key, value=value, timestamp=None, headers=headers):
                continue
            pending.append(
                await producer.send_batch(builder, topic, partition=partition)
            )
            builder = builders[partition] = producer.create_batch()
            builder.append(key=key, value=value, timestamp=None, headers=headers)
        for partition, builder in builders.items():
            pending.append(
                await producer.send_batch(builder, topic, partition=partition)
            )
        await asyncio.gather(*pending)
        await producer.commit_transaction()
        transactions += 1
    return transactions


async def publish_naive(
    producer: AIOKafkaProducer, topic: str, events: list[dict[str, Any]], per_tx: int
) -> int:
    """Build a dict, json.dumps it, await each send on its own."""
    transactions = 0
    for start in range(0, len(events), per_tx):
        await producer.begin_transaction()
        for event in events[start : start + per_tx]:
            value, headers = _naive_event(event)
            key = event["operation_id"].encode()
            await producer.send_and_wait(topic, value, key=key, headers=headers)
        await producer.commit_transaction()
        transactions += 1
    return transactions


def _naive_event(data: dict[str, Any]) -> tuple[bytes, list[tuple[str, bytes]]]:
    source = data["source"]
    event_id = f"{data['operation_id']}:{data['sequence']}"
    event = {
        "event_id": event_id,
        "kind": data["kind"],
        "sequence": data["sequence"],
        "operation_id": data["operation_id"],
        "operation_type": data["operation_type"],
        "previous_status": data["previous_status"],
        "status": data["status"],
        "previous_progress": data["previous_progress"],
        "progress": data["progress"],
        "occurred_at": data["occurred_at"],
        "observed_at": data["observed_at"],
        "inferred": data["inferred"],
        "initial_load": data["initial_load"],
        "seen_by": data["seen_by"],
        "operation": data["operation"],
        "operation_truncated": data["operation_truncated"],
        "source": {
            "environment": source["environment"],
            "account": source["account"],
            "bridge_version": source["bridge_version"],
        },
    }
    uri = f"urn:toloka-bridge:{source['environment']}:{source['account']}"
    headers = [
        ("ce_specversion", b"1.0"),
        ("ce_id", event_id.encode()),
        ("ce_source", uri.encode()),
        ("ce_type", f"org.tolokabridge.operation.{data['kind']}.v1".encode()),
        ("ce_subject", data["operation_id"].encode()),
        ("ce_time", data["occurred_at"].encode()),
        ("content-type", b"application/json"),
    ]
    return json.dumps(event).encode(), headers


async def run(args: argparse.Namespace) -> PublisherResult:
    records = await read_source(
        args.bootstrap, args.source_topic, args.partitions, args.limit
    )
    naive = args.kind == "naive"
    events = [json.loads(value) for _, value, _ in records] if naive else []
    producer = AIOKafkaProducer(**producer_options(args.bootstrap, 0 if naive else 5))

    began, cpu_began = time.monotonic(), time.process_time()
    await producer.start()
    try:
        if naive:
            transactions = await publish_naive(
                producer, args.target_topic, events, args.per_transaction
            )
        elif args.kind == "ceiling-batch":
            await producer.client._wait_on_metadata(args.target_topic)
            transactions = await publish_batches(
                producer, args.target_topic, records, args.per_transaction
            )
        else:
            transactions = await publish_ceiling(
                producer, args.target_topic, records, args.per_transaction
            )
    finally:
        await producer.stop()

    return PublisherResult(
        kind=args.kind,
        events=len(records),
        transactions=transactions,
        seconds=time.monotonic() - began,
        cpu_seconds=time.process_time() - cpu_began,
        rss_bytes=psutil.Process().memory_info().rss,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.publishers")
    parser.add_argument("kind", choices=("ceiling", "ceiling-batch", "naive"))
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--source-topic", required=True)
    parser.add_argument("--target-topic", required=True)
    parser.add_argument("--partitions", type=int, required=True)
    parser.add_argument("--per-transaction", type=int, default=2000)
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--output", required=True)
    args = parser.parse_args(argv)

    result = asyncio.run(run(args))
    with open(args.output, "wb") as output:
        output.write(msgspec.json.encode(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
