"""The Kafka test harness: its fixtures, and a second client checking the first."""

import os
import socket
import subprocess
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer
from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient

CONFLUENT_TIMEOUT_SECONDS = 10.0
REPO_ROOT = Path(__file__).resolve().parent.parent


def confluent_topic_partitions(bootstrap: str) -> dict[str, list[int]]:
    """Topic name -> partition ids, as librdkafka (not aiokafka) sees the cluster."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    metadata = admin.list_topics(timeout=CONFLUENT_TIMEOUT_SECONDS)
    return {name: sorted(topic.partitions) for name, topic in metadata.topics.items()}


def confluent_read_committed(
    bootstrap: str, topic: str, count: int
) -> list[bytes | None]:
    """Reads `count` committed record values of partition 0 with librdkafka."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": "unused-partitions-are-assigned-directly",
            "enable.auto.commit": False,
            "isolation.level": "read_committed",
        }
    )
    consumer.assign([TopicPartition(topic, 0, 0)])
    try:
        records = consumer.consume(count, timeout=CONFLUENT_TIMEOUT_SECONDS)
    finally:
        consumer.close()

    errors = [record.error() for record in records if record.error()]
    assert not errors, f"librdkafka reported {errors}"
    return [record.value() for record in records]


def unused_local_port() -> int:
    """A loopback port nothing listens on (the OS just handed it out, then freed it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


@pytest.mark.kafka
async def test_confluent_admin_lists_topics_created_by_aiokafka(
    kafka_bootstrap: str, topic_factory: Callable[..., Awaitable[str]]
) -> None:
    """Topics the aiokafka admin client created are visible to librdkafka."""
    single = await topic_factory()
    triple = await topic_factory(partitions=3)

    seen = confluent_topic_partitions(kafka_bootstrap)

    assert seen[single] == [0]
    assert seen[triple] == [0, 1, 2]


@pytest.mark.kafka
async def test_confluent_consumer_reads_what_aiokafka_committed(
    kafka_bootstrap: str, new_topic: str
) -> None:
    """librdkafka honours the commit and abort markers aiokafka's producer wrote."""
    producer = AIOKafkaProducer(
        bootstrap_servers=kafka_bootstrap, transactional_id=f"harness-{new_topic}"
    )
    await producer.start()
    try:
        await producer.begin_transaction()
        await producer.send_and_wait(new_topic, b"aborted")
        await producer.abort_transaction()
        async with producer.transaction():
            await producer.send_and_wait(new_topic, b"committed")
    finally:
        await producer.stop()

    assert confluent_read_committed(kafka_bootstrap, new_topic, 1) == [b"committed"]


@pytest.mark.kafka
async def test_topic_factory_fails_loudly_when_the_broker_rejects_a_topic(
    topic_factory: Callable[..., Awaitable[str]],
) -> None:
    """aiokafka returns per-topic errors instead of raising; the factory raises them."""
    with pytest.raises(RuntimeError, match=r"creating topic .* failed: error code"):
        await topic_factory(config={"cleanup.policy": "no-such-policy"})


def test_kafka_tests_fail_with_a_hint_when_no_broker_answers() -> None:
    """Without a broker a Kafka test errors, naming `make kafka-up`; it never skips."""
    target = (
        f"{Path(__file__).name}::test_confluent_admin_lists_topics_created_by_aiokafka"
    )
    environment = dict(os.environ, KAFKA_BOOTSTRAP=f"127.0.0.1:{unused_local_port()}")

    finished = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", f"tests/{target}"],
        cwd=REPO_ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    assert finished.returncode == pytest.ExitCode.TESTS_FAILED, finished.stdout
    assert "make kafka-up" in finished.stdout
    assert "1 error" in finished.stdout
    assert "skipped" not in finished.stdout
