"""How to reach Kafka, and making sure the two topics exist with safe settings.

`connection_options` turns `KafkaSettings` into the keyword arguments every aiokafka
client takes (TLS context, SASL). `ensure_topics` creates a missing topic from the
configuration, or checks an existing one: the state topic must be compacted, and
both must have the configured partition count, because changing it later re-maps keys.
"""

import logging
import ssl
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import KafkaError
from aiokafka.helpers import create_ssl_context

from bridge.config import KafkaSettings
from bridge.errors import PublishError, TopicError

logger = logging.getLogger(__name__)

TOPIC_ALREADY_EXISTS = 36


def connection_options(settings: KafkaSettings) -> dict[str, Any]:
    """Keyword arguments shared by the producer, the consumer and the admin client."""
    options: dict[str, Any] = {
        "bootstrap_servers": settings.bootstrap_servers,
        "client_id": settings.client_id,
        "security_protocol": settings.security_protocol,
        "request_timeout_ms": int(settings.request_timeout_seconds * 1000),
    }
    if settings.security_protocol in ("SSL", "SASL_SSL"):
        options["ssl_context"] = _ssl_context(settings)
    if settings.security_protocol.startswith("SASL"):
        password = settings.sasl_password
        options["sasl_mechanism"] = settings.sasl_mechanism
        options["sasl_plain_username"] = settings.sasl_username
        options["sasl_plain_password"] = None if password is None else password.reveal()
    return options


def _ssl_context(settings: KafkaSettings) -> ssl.SSLContext:
    context: ssl.SSLContext = create_ssl_context(
        cafile=settings.ssl_cafile,
        certfile=settings.ssl_certfile,
        keyfile=settings.ssl_keyfile,
    )
    context.check_hostname = settings.ssl_check_hostname
    return context


def events_topic_configs(settings: KafkaSettings) -> dict[str, str]:
    return {"min.insync.replicas": str(settings.min_insync_replicas)}


def state_topic_configs(settings: KafkaSettings) -> dict[str, str]:
    return {
        "cleanup.policy": "compact",
        "min.insync.replicas": str(settings.min_insync_replicas),
        "min.compaction.lag.ms": "60000",
    }


async def ensure_topics(settings: KafkaSettings) -> None:
    """Create the events and state topics if allowed and missing; check them if not."""
    wanted = {
        settings.events_topic: (
            settings.events_partitions,
            events_topic_configs(settings),
        ),
        settings.state_topic: (
            settings.state_partitions,
            state_topic_configs(settings),
        ),
    }
    admin = AIOKafkaAdminClient(**connection_options(settings))
    try:
        await admin.start()
        existing = set(await admin.list_topics())
        missing = [name for name in wanted if name not in existing]
        if missing:
            await _create(admin, settings, {name: wanted[name] for name in missing})
        existed = {name: wanted[name] for name in wanted if name in existing}
        await _check_partitions(admin, existed)
        if settings.state_topic in existing:
            await _check_state_compacted(admin, settings.state_topic)
    except KafkaError as error:
        raise PublishError(f"cannot inspect or create topics: {error!r}") from error
    finally:
        await admin.close()


async def _create(
    admin: AIOKafkaAdminClient,
    settings: KafkaSettings,
    topics: dict[str, tuple[int, dict[str, str]]],
) -> None:
    if not settings.create_topics:
        names = ", ".join(sorted(topics))
        raise TopicError(f"topics missing and kafka.create_topics is false: {names}")

    requests = [
        NewTopic(name, partitions, settings.replication_factor, topic_configs=configs)
        for name, (partitions, configs) in topics.items()
    ]
    response = await admin.create_topics(requests)
    for name, code, *rest in response.topic_errors:
        if code not in (0, TOPIC_ALREADY_EXISTS):
            detail = rest[0] if rest else ""
            raise TopicError(f"cannot create topic {name!r}: error {code} {detail}")
        logger.info("created topic %s", name)


async def _check_partitions(
    admin: AIOKafkaAdminClient, wanted: dict[str, tuple[int, dict[str, str]]]
) -> None:
    for topic in await admin.describe_topics(list(wanted)):
        name, partitions = topic["topic"], len(topic["partitions"])
        expected = wanted[name][0]
        if partitions == 0:
            raise PublishError(f"topic {name!r} has no partitions in the metadata yet")
        if partitions != expected:
            raise TopicError(
                f"topic {name!r} has {partitions} partitions, the configuration says "
                f"{expected}; changing it re-maps keys, so fix the configuration"
            )


async def _check_state_compacted(admin: AIOKafkaAdminClient, topic: str) -> None:
    resource = ConfigResource(ConfigResourceType.TOPIC, topic, {"cleanup.policy": None})
    responses = await admin.describe_configs([resource])
    policy = _config_value(responses, "cleanup.policy")
    if policy is None or "compact" not in policy:
        raise TopicError(
            f"state topic {topic!r} has cleanup.policy={policy!r}, expected 'compact': "
            "without compaction restarts read an ever-growing history"
        )


def _config_value(responses: list[Any], name: str) -> str | None:
    for response in responses:
        for resource in response.resources:
            for entry in resource[4]:
                if entry[0] == name:
                    return str(entry[1])
    return None
