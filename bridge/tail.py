"""`toloka-bridge tail`: the events topic as one readable line per event.

A read_committed consumer without a group (it assigns every partition itself), so it
never disturbs other consumers; the demo uses it to show events arriving live.
"""

import asyncio
import signal
import sys
from typing import TextIO

from aiokafka import AIOKafkaConsumer, TopicPartition

from bridge.brokers import connection_options
from bridge.config import Config
from bridge.events import OperationEvent, decode_event

ARROW = "->"


def describe(event: OperationEvent) -> str:
    """One line a person can scan: when, what, which operation, how far along."""
    moment = event.occurred_at.strftime("%H:%M:%S.%f")[:-3]
    before = event.previous_status or "new"
    if event.kind == "progressed":
        change = f"{event.status} {event.previous_progress}% {ARROW} {event.progress}%"
    else:
        change = f"{before} {ARROW} {event.status}"
        if event.progress is not None:
            change += f" ({event.progress}%)"
    marks = [
        name
        for name, on in (("inferred", event.inferred), ("initial", event.initial_load))
        if on
    ]
    suffix = f"  [{', '.join(marks)}]" if marks else ""
    return (
        f"{moment}  {event.operation_type:<24} {event.operation_id:<36} "
        f"#{event.sequence:<3} {change}{suffix}"
    )


async def tail_events(
    config: Config,
    from_beginning: bool,
    max_events: int = 0,
    out: TextIO = sys.stdout,
) -> int:
    """Print events until interrupted, or until `max_events` were printed."""
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stopping.set)

    consumer = AIOKafkaConsumer(
        **connection_options(config.kafka),
        isolation_level="read_committed",
        enable_auto_commit=False,
    )
    await consumer.start()
    try:
        topic = config.kafka.events_topic
        await _assign_all(
            consumer, topic, config.kafka.events_partitions, from_beginning
        )
        await _print_until(consumer, stopping, max_events, out)
    finally:
        await consumer.stop()
    return 0


async def _assign_all(
    consumer: AIOKafkaConsumer, topic: str, partition_count: int, from_beginning: bool
) -> None:
    """Wait for the topic to exist (the bridge creates it), then read all of it."""
    while True:
        if topic in await consumer.topics():
            break
        await asyncio.sleep(1.0)
    partitions = [TopicPartition(topic, number) for number in range(partition_count)]
    consumer.assign(partitions)
    if from_beginning:
        await consumer.seek_to_beginning(*partitions)
    else:
        await consumer.seek_to_end(*partitions)


async def _print_until(
    consumer: AIOKafkaConsumer, stopping: asyncio.Event, max_events: int, out: TextIO
) -> None:
    printed = 0
    while not stopping.is_set():
        batches = await consumer.getmany(timeout_ms=500)
        for records in batches.values():
            for record in records:
                print(describe(decode_event(record.value)), file=out, flush=True)
                printed += 1
                if max_events and printed >= max_events:
                    return
