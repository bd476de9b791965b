"""Fixtures for tests that talk to the real Kafka broker started by `make kafka-up`.

The broker address comes from KAFKA_BOOTSTRAP, else 127.0.0.1:$KAFKA_PORT (port 9092
by default).
A missing broker fails the tests that need it; it never skips them.
"""

import asyncio
import os
import re
import uuid
from collections.abc import AsyncIterator, Mapping
from typing import Any, Protocol

import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError

BROKER_CHECK_TIMEOUT_SECONDS = 10.0
TOPIC_READY_TIMEOUT_SECONDS = 10.0
ADMIN_REQUEST_TIMEOUT_SECONDS = 10.0


class TopicFactory(Protocol):
    """Creates a topic with a unique name and returns that name."""

    async def __call__(
        self, *, partitions: int = 1, config: Mapping[str, str] | None = None
    ) -> str: ...


def configured_bootstrap() -> str:
    """The broker address the tests use: KAFKA_BOOTSTRAP or 127.0.0.1:KAFKA_PORT."""
    port = os.environ.get("KAFKA_PORT", "9092")
    return os.environ.get("KAFKA_BOOTSTRAP", f"127.0.0.1:{port}")


async def list_broker_topics(bootstrap: str) -> list[str]:
    """Asks the broker for its topics: a real metadata request, not a port check."""
    admin = AIOKafkaAdminClient(
        bootstrap_servers=bootstrap,
        request_timeout_ms=int(BROKER_CHECK_TIMEOUT_SECONDS * 1000),
    )
    await admin.start()
    try:
        topics: list[str] = await admin.list_topics()
    finally:
        await admin.close()

    return topics


def broker_problem(bootstrap: str) -> str | None:
    """Why no broker answers at bootstrap, or None when one does."""
    check = asyncio.wait_for(
        list_broker_topics(bootstrap), timeout=BROKER_CHECK_TIMEOUT_SECONDS
    )
    try:
        asyncio.run(check)
    except TimeoutError:
        return f"no answer to a metadata request in {BROKER_CHECK_TIMEOUT_SECONDS} s"
    except (KafkaError, OSError) as error:
        return repr(error)

    return None


@pytest.fixture(scope="session")
def kafka_bootstrap() -> str:
    """Address of a broker that answered a metadata request; fails the test if none."""
    bootstrap = configured_bootstrap()
    problem = broker_problem(bootstrap)
    if problem is not None:
        pytest.fail(
            f"no Kafka broker answers at {bootstrap} ({problem}); "
            "start one with `make kafka-up` (stop it with `make kafka-down`), "
            "or point KAFKA_BOOTSTRAP at a running broker",
            pytrace=False,
        )

    return bootstrap


def topic_prefix(test_name: str) -> str:
    """A topic-name-safe prefix naming the test, so leftovers show who made them."""
    safe = re.sub(r"[^A-Za-z0-9._-]+", "-", test_name).strip("-")
    return f"t-{safe[:150]}"


def raise_for_topic_errors(response: Any) -> None:
    """Turns the per-topic error codes of a CreateTopics response into an exception."""
    for topic_error in response.topic_errors:
        name, error_code = topic_error[0], topic_error[1]
        if error_code != 0:
            message = topic_error[2] if len(topic_error) > 2 else ""
            raise RuntimeError(
                f"creating topic {name!r} failed: error code {error_code} {message}"
            )


async def wait_for_partition_leaders(
    admin: AIOKafkaAdminClient, topic: str, partitions: int
) -> None:
    """Waits until the broker's metadata shows a leader for every partition."""
    pause_seconds = 0.05
    for _ in range(int(TOPIC_READY_TIMEOUT_SECONDS / pause_seconds)):
        (description,) = await admin.describe_topics([topic])
        led = [p for p in description["partitions"] if p["leader"] >= 0]
        if description["error_code"] == 0 and len(led) == partitions:
            return
        await asyncio.sleep(pause_seconds)

    raise TimeoutError(
        f"topic {topic!r} has no leader for all {partitions} partition(s) "
        f"after {TOPIC_READY_TIMEOUT_SECONDS} s"
    )


@pytest.fixture
async def topic_factory(
    kafka_bootstrap: str, request: pytest.FixtureRequest
) -> AsyncIterator[TopicFactory]:
    """Creates uniquely named topics (replication factor 1); they are left in place."""
    admin = AIOKafkaAdminClient(
        bootstrap_servers=kafka_bootstrap,
        request_timeout_ms=int(ADMIN_REQUEST_TIMEOUT_SECONDS * 1000),
    )
    await admin.start()
    prefix = topic_prefix(request.node.name)

    async def create_topic(
        *, partitions: int = 1, config: Mapping[str, str] | None = None
    ) -> str:
        name = f"{prefix}-{uuid.uuid4().hex[:12]}"
        topic = NewTopic(name, partitions, 1, topic_configs=dict(config or {}))
        raise_for_topic_errors(await admin.create_topics([topic]))
        await wait_for_partition_leaders(admin, name, partitions)
        return name

    try:
        yield create_topic
    finally:
        await admin.close()


@pytest.fixture
async def new_topic(topic_factory: TopicFactory) -> str:
    """One fresh single-partition topic."""
    return await topic_factory()
