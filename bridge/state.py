"""The bridge's memory: what it has published, kept in a compacted Kafka topic.

Records are keyed `<environment>/<account>/operation/<id>` (one per tracked operation,
its value a `TrackedOperation`) and `<environment>/<account>/cursor` (the scans'
watermarks). They commit in the same transaction as the events they describe, so the
topic always says exactly what consumers have seen. An empty value (a tombstone)
forgets an operation once no scan can return it any more.

On start `restore_state` reads the topic from the beginning to its last stable offset
with `isolation_level=read_committed` and rebuilds `BridgeState`.

Without transactions (at least once) events land before the state records that
describe them, so a crash or a failed write can leave events the state does not know.
Numbering the operation's next event from the stale state would then give a used
`event_id` to a different change (a progress step seen by one run, a status by the
next), and consumers that drop repeated ids would drop it. So in that mode each batch
is followed by a `<environment>/<account>/events-covered` record, written once the
batch's state records are acknowledged: per events partition, the offset below which
every event is in the state. `restore_state` then reads the events topic from there to
its end and folds what it finds into the state; the folded operations are written
with the next batch, before the coverage moves past them.
"""

import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from datetime import datetime

import msgspec
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError
from aiokafka.structs import ConsumerRecord

from bridge.brokers import connection_options
from bridge.config import KafkaSettings
from bridge.detector import TrackedOperation, tracked_from_event
from bridge.errors import PayloadError, PublishError
from bridge.events import decode_event

logger = logging.getLogger(__name__)


class Cursor(msgspec.Struct, frozen=True, kw_only=True):
    """How far the scans have read, by the operations' own timestamps."""

    discover_watermark: datetime | None
    sweep_watermark: datetime | None
    initial_load_done: bool = False


EventOffsets = dict[int, int]
"""Per partition of the events topic, the offset of the first event not yet in the
state (at-least-once mode only)."""


class EventsCovered(msgspec.Struct, frozen=True):
    """The value of the coverage record."""

    offsets: EventOffsets


class BridgeState(msgspec.Struct, kw_only=True):
    """Everything the bridge knows; changed only after Kafka committed the change.

    `unsaved` names operations learned from the events topic on restore and not yet
    written back; `events_covered` holds once they are."""

    tracked: dict[str, TrackedOperation] = msgspec.field(default_factory=dict)
    cursor: Cursor | None = None
    restored_records: int = 0
    events_covered: EventOffsets = msgspec.field(default_factory=dict)
    unsaved: set[str] = msgspec.field(default_factory=set)


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

    @property
    def events_covered(self) -> bytes:
        return f"{self.prefix}events-covered".encode()


StateRecord = tuple[bytes, bytes | None]

_encoder = msgspec.json.Encoder()
_tracked_decoder = msgspec.json.Decoder(TrackedOperation)
_cursor_decoder = msgspec.json.Decoder(Cursor)
_covered_decoder = msgspec.json.Decoder(EventsCovered)


def tracked_record(keys: StateKeys, tracked: TrackedOperation) -> StateRecord:
    return keys.operation(tracked.operation_id), _encoder.encode(tracked)


def tombstone(keys: StateKeys, operation_id: str) -> StateRecord:
    return keys.operation(operation_id), None


def cursor_record(keys: StateKeys, cursor: Cursor) -> StateRecord:
    return keys.cursor, _encoder.encode(cursor)


def coverage_record(keys: StateKeys, offsets: EventOffsets) -> StateRecord:
    return keys.events_covered, _encoder.encode(EventsCovered(offsets))


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
    if key == keys.events_covered:
        covered = None if value is None else _covered_decoder.decode(value)
        state.events_covered = {} if covered is None else covered.offsets
        return

    operation_id = name.removeprefix(f"{keys.prefix}operation/")
    if value is None:
        state.tracked.pop(operation_id, None)
    else:
        state.tracked[operation_id] = _tracked_decoder.decode(value)


async def restore_state(settings: KafkaSettings, keys: StateKeys) -> BridgeState:
    """Read the state topic to its last stable offset and rebuild the state; without
    transactions, fold in the events that landed after the state last covered them."""
    state = BridgeState()
    partitions = _partitions(settings.state_topic, settings.state_partitions)
    async with _reading(settings, partitions) as consumer:
        await consumer.seek_to_beginning(*partitions)
        await _read_to_end(
            consumer, partitions, lambda r: apply_record(state, keys, r.key, r.value)
        )
    if not settings.transactions:
        await _fold_uncovered_events(settings, keys, state)

    logger.info(
        "state restored: %d records, %d tracked operations",
        state.restored_records,
        len(state.tracked),
    )
    return state


def fold_event(state: BridgeState, keys: StateKeys, value: bytes | None) -> None:
    """Take one events-topic record into the state if it is this account's and newer
    than what the state says was published; skip an unreadable one with a warning."""
    try:
        event = decode_event(value or b"")
        source = (event.source.environment, event.source.account)
        tracked = state.tracked.get(event.operation_id)
        if source != (keys.environment, keys.account):
            return
        if tracked is not None and tracked.sequence >= event.sequence:
            return
        state.tracked[event.operation_id] = tracked_from_event(event, tracked)
    except (msgspec.DecodeError, PayloadError) as error:
        logger.warning("skipped an unreadable record of the events topic: %s", error)
        return

    state.unsaved.add(event.operation_id)


async def _fold_uncovered_events(
    settings: KafkaSettings, keys: StateKeys, state: BridgeState
) -> None:
    partitions = _partitions(settings.events_topic, settings.events_partitions)
    async with _reading(settings, partitions) as consumer:
        for tp in partitions:
            await _seek_uncovered(consumer, tp, state.events_covered)
        ends = await _read_to_end(
            consumer, partitions, lambda r: fold_event(state, keys, r.value)
        )

    state.events_covered = {tp.partition: end for tp, end in ends.items()}
    if state.unsaved:
        logger.info(
            "%d operations had events newer than the state; taken from the topic",
            len(state.unsaved),
        )


async def _seek_uncovered(
    consumer: AIOKafkaConsumer, tp: TopicPartition, covered: EventOffsets
) -> None:
    """From the first event the state lacks; from the beginning if it never said."""
    if tp.partition in covered:
        consumer.seek(tp, covered[tp.partition])
    else:
        await consumer.seek_to_beginning(tp)


def _partitions(topic: str, count: int) -> list[TopicPartition]:
    return [TopicPartition(topic, number) for number in range(count)]


@contextlib.asynccontextmanager
async def _reading(
    settings: KafkaSettings, partitions: list[TopicPartition]
) -> AsyncIterator[AIOKafkaConsumer]:
    """A started read_committed consumer, assigned `partitions` of one topic."""
    consumer = AIOKafkaConsumer(
        **connection_options(settings),
        isolation_level="read_committed",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    try:
        await consumer.start()
        consumer.assign(partitions)
        yield consumer
    except KafkaError as error:
        topic = partitions[0].topic
        raise PublishError(f"cannot read {topic}: {error!r}") from error
    finally:
        await consumer.stop()


async def _read_to_end(
    consumer: AIOKafkaConsumer,
    partitions: list[TopicPartition],
    apply: Callable[[ConsumerRecord[bytes, bytes]], None],
) -> dict[TopicPartition, int]:
    """Apply every record from each partition's position to its last stable offset."""
    ends: dict[TopicPartition, int] = await consumer.end_offsets(partitions)
    remaining = {tp for tp in partitions if await consumer.position(tp) < ends[tp]}
    while remaining:
        batches = await consumer.getmany(*remaining, timeout_ms=1000)
        for records in batches.values():
            for record in records:
                apply(record)

        for tp in list(remaining):
            if await consumer.position(tp) >= ends[tp]:
                remaining.discard(tp)
    return ends
