"""aiokafka's transactional producer against the real broker, read back by consumers."""

import uuid
from collections.abc import Awaitable, Callable

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import ProducerFenced

pytestmark = pytest.mark.kafka

FETCH_WAIT_SECONDS = 0.5
MAX_FETCH_ROUNDS = 40


def new_transactional_id() -> str:
    """A transactional id no other test uses."""
    return f"test-txn-{uuid.uuid4().hex[:12]}"


def transactional_producer(bootstrap: str, transactional_id: str) -> AIOKafkaProducer:
    """A producer whose transactional_id also turns on acks=all and idempotence."""
    return AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        transactional_id=transactional_id,
        client_id=transactional_id,
    )


async def read_topics(
    bootstrap: str, topics: list[str], isolation_level: str
) -> dict[str, list[bytes]]:
    """Every record value of the single-partition topics, from the start to the end."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        isolation_level=isolation_level,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    await consumer.start()
    try:
        return await read_assigned(consumer, [TopicPartition(t, 0) for t in topics])
    finally:
        await consumer.stop()


async def read_assigned(
    consumer: AIOKafkaConsumer, partitions: list[TopicPartition]
) -> dict[str, list[bytes]]:
    """Assigns the partitions (no group) and reads them up to their end offsets."""
    consumer.assign(partitions)
    await consumer.seek_to_beginning(*partitions)
    end_offsets = await consumer.end_offsets(partitions)
    values: dict[str, list[bytes]] = {tp.topic: [] for tp in partitions}

    for _ in range(MAX_FETCH_ROUNDS):
        positions = {tp: await consumer.position(tp) for tp in partitions}
        if all(positions[tp] >= end_offsets[tp] for tp in partitions):
            return values
        batches = await consumer.getmany(timeout_ms=int(FETCH_WAIT_SECONDS * 1000))
        for tp, records in batches.items():
            values[tp.topic].extend(record.value for record in records)

    raise AssertionError(
        f"did not reach end offsets {end_offsets}; read so far: {values}"
    )


async def test_read_committed_sees_committed_records_and_not_aborted_ones(
    kafka_bootstrap: str, topic_factory: Callable[..., Awaitable[str]]
) -> None:
    """A transaction over two topics commits together; an aborted one stays hidden."""
    events_topic, state_topic = await topic_factory(), await topic_factory()
    producer = transactional_producer(kafka_bootstrap, new_transactional_id())
    await producer.start()
    try:
        async with producer.transaction():
            await producer.send_and_wait(events_topic, b"event-1", key=b"op-1")
            await producer.send_and_wait(state_topic, b"state-1", key=b"op-1")

        await producer.begin_transaction()
        await producer.send_and_wait(events_topic, b"event-2-aborted", key=b"op-2")
        await producer.send_and_wait(state_topic, b"state-2-aborted", key=b"op-2")
        await producer.abort_transaction()
    finally:
        await producer.stop()

    topics = [events_topic, state_topic]
    committed = await read_topics(kafka_bootstrap, topics, "read_committed")
    uncommitted = await read_topics(kafka_bootstrap, topics, "read_uncommitted")

    assert committed == {events_topic: [b"event-1"], state_topic: [b"state-1"]}
    assert uncommitted == {
        events_topic: [b"event-1", b"event-2-aborted"],
        state_topic: [b"state-1", b"state-2-aborted"],
    }


async def send_then_fail(producer: AIOKafkaProducer, topic: str) -> None:
    """Sends one record in a transaction block, then fails inside the block."""
    async with producer.transaction():
        await producer.send_and_wait(topic, b"sent-before-failure")
        raise ValueError("cursor rejected")


async def test_transaction_block_aborts_when_its_body_raises(
    kafka_bootstrap: str, new_topic: str
) -> None:
    """An exception inside `async with producer.transaction()` aborts what it sent."""
    producer = transactional_producer(kafka_bootstrap, new_transactional_id())
    await producer.start()
    try:
        with pytest.raises(ValueError, match="cursor rejected"):
            await send_then_fail(producer, new_topic)

        async with producer.transaction():
            await producer.send_and_wait(new_topic, b"sent-after-failure")
    finally:
        await producer.stop()

    committed = await read_topics(kafka_bootstrap, [new_topic], "read_committed")
    uncommitted = await read_topics(kafka_bootstrap, [new_topic], "read_uncommitted")

    assert committed == {new_topic: [b"sent-after-failure"]}
    assert uncommitted == {new_topic: [b"sent-before-failure", b"sent-after-failure"]}


async def test_second_producer_with_same_transactional_id_fences_the_first(
    kafka_bootstrap: str, new_topic: str
) -> None:
    """A new producer with the same id aborts the old one's transaction, fences it."""
    transactional_id = new_transactional_id()
    old = transactional_producer(kafka_bootstrap, transactional_id)
    new = transactional_producer(kafka_bootstrap, transactional_id)
    await old.start()
    try:
        await old.begin_transaction()
        await old.send_and_wait(new_topic, b"old-open")
        await new.start()

        with pytest.raises(ProducerFenced, match="newer producer"):
            await old.send_and_wait(new_topic, b"old-after-fence")

        async with new.transaction():
            await new.send_and_wait(new_topic, b"new-committed")
    finally:
        await old.stop()
        await new.stop()

    committed = await read_topics(kafka_bootstrap, [new_topic], "read_committed")
    uncommitted = await read_topics(kafka_bootstrap, [new_topic], "read_uncommitted")

    assert committed == {new_topic: [b"new-committed"]}
    assert uncommitted == {new_topic: [b"old-open", b"new-committed"]}
