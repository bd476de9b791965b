"""The bridge's memory: what it has published, kept in a compacted Kafka topic.

Records are keyed `<environment>/<account>/operation/<id>` (one per tracked operation,
its value a `TrackedOperation`) and `<environment>/<account>/cursor` (the scans'
watermarks). They commit in the same transaction as the events they describe, so the
topic always says exactly what consumers have seen. An empty value (a tombstone)
forgets an operation once no scan can return it any more.

On start `restore_state` reads the topic from the beginning to its last stable offset
with `isolation_level=read_committed` and rebuilds `BridgeState`.
"""

import logging
from datetime import datetime

import msgspec
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError

from bridge.brokers import connection_options
from bridge.config import KafkaSettings
from bridge.detector import TrackedOperation
from bridge.errors import PublishError

logger = logging.getLogger(__name__)


class Cursor(msgspec.Struct, frozen=True, kw_only=True):
    """How far the scans have read, by the operations' own timestamps."""

    discover_watermark: datetime | None
    sweep_watermark: datetime | None
    initial_load_done: bool = False


class BridgeState(msgspec.Struct, kw_only=True):
    """Everything the bridge knows; changed only after Kafka committed the change."""

    tracked: dict[str, TrackedOperation] = msgspec.field(default_factory=dict)
    cursor: Cursor | None = None
    restored_records: int = 0


class StateKeys(msgspec.Struct, frozen=True):
    """Key names of one Toloka environment and account in the state topic."""

    environment: str
    account: str

    @property
    def prefix(self) -> str:
        return f"{self.environment}/{self.account}/"

    def operation(self, operation_id: str) -> bytes:
        return f"{self.prefix}operation/{operation_id}".encode()

    @property
    def cursor(self) -> bytes:
        return f"{self.prefix}cursor".encode()


StateRecord = tuple[bytes, bytes | None]

_encoder = msgspec.json.Encoder()
_tracked_decoder = msgspec.json.Decoder(TrackedOperation)
_cursor_decoder = msgspec.json.Decoder(Cursor)


def tracked_record(keys: StateKeys, tracked: TrackedOperation) -> StateRecord:
    return keys.operation(tracked.operation_id), _encoder.encode(tracked)


def tombstone(keys: StateKeys, operation_id: str) -> StateRecord:
    return keys.operation(operation_id), None


def cursor_record(keys: StateKeys, cursor: Cursor) -> StateRecord:
    return keys.cursor, _encoder.encode(cursor)


def apply_record(
    state: BridgeState, keys: StateKeys, key: bytes, value: bytes | None
) -> None:
    """Fold one state-topic record into the state; other accounts' keys are ignored."""
    name = key.decode()
    if not name.startswith(keys.prefix):
        return

    state.restored_records += 1
    if key == keys.cursor:
        state.cursor = None if value is None else _cursor_decoder.decode(value)
        return

    operation_id = name.removeprefix(f"{keys.prefix}operation/")
    if value is None:
        state.tracked.pop(operation_id, None)
    else:
        state.tracked[operation_id] = _tracked_decoder.decode(value)


async def restore_state(settings: KafkaSettings, keys: StateKeys) -> BridgeState:
    """Read the state topic to its last stable offset and rebuild the state."""
    consumer = AIOKafkaConsumer(
        **connection_options(settings),
        isolation_level="read_committed",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    state = BridgeState()
    try:
        await consumer.start()
        partitions = [
            TopicPartition(settings.state_topic, number)
            for number in range(settings.state_partitions)
        ]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        ends = await consumer.end_offsets(partitions)
        await _read_until(consumer, ends, state, keys)
    except KafkaError as error:
        raise PublishError(f"cannot read the state topic: {error!r}") from error
    finally:
        await consumer.stop()

    logger.info(
        "state restored: %d records, %d tracked operations",
        state.restored_records,
        len(state.tracked),
    )
    return state


async def _read_until(
    consumer: AIOKafkaConsumer,
    ends: dict[TopicPartition, int],
    state: BridgeState,
    keys: StateKeys,
) -> None:
    remaining = {tp for tp, end in ends.items() if end > 0}
    while remaining:
        batches = await consumer.getmany(*remaining, timeout_ms=1000)
        for records in batches.values():
            for record in records:
                apply_record(state, keys, record.key, record.value)

        for tp in list(remaining):
            if await consumer.position(tp) >= ends[tp]:
                remaining.discard(tp)
