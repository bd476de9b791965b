"""At-least-once restarts: events that landed without their state are read back.

Without transactions a crash between a batch's events and its state records leaves
events the state does not know. The restore must fold them in, or the next change of
that operation reuses a published `event_id` for different content.
"""

from datetime import UTC, datetime

import msgspec
import pytest

from bridge.brokers import ensure_topics
from bridge.config import KafkaSettings
from bridge.cycle import Cycle, CycleOptions
from bridge.detector import DetectionContext, TrackedOperation, detect
from bridge.events import EventSource, OperationEvent, encode_event
from bridge.operation import Observation, read_operation
from bridge.publisher import Batch, Publisher
from bridge.state import BridgeState, Cursor, StateKeys, fold_event, restore_state
from tests.bridge_harness import read_events, unique_name

KEYS = StateKeys("test", "acc")
SOURCE = EventSource(environment="test", account="acc", bridge_version="0.0.0")
NOW = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)


def observation(operation_id: str, status: str, progress: int) -> Observation:
    started = '"2026-12-04T11:00:01"' if status != "PENDING" else "null"
    finished = '"2026-12-04T11:30:00"' if status in {"SUCCESS", "FAIL"} else "null"
    body = (
        f'{{"id": "{operation_id}", "type": "POOL.OPEN", "status": "{status}", '
        f'"submitted": "2026-12-04T11:00:00", "started": {started}, '
        f'"finished": {finished}, "progress": {progress}}}'
    )
    return read_operation(body.encode())


def events_of(
    tracked: TrackedOperation | None, seen: Observation
) -> tuple[list[OperationEvent], TrackedOperation]:
    context = DetectionContext(observed_at=NOW, seen_by="refresh", source=SOURCE)
    detection = detect(tracked, seen, context)
    return detection.events, detection.tracked


def test_a_newer_event_of_this_account_replaces_the_tracked_operation() -> None:
    events, _ = events_of(None, observation("op-1", "RUNNING", 40))
    state = BridgeState()

    for event in events:
        fold_event(state, KEYS, encode_event(event))

    tracked = state.tracked["op-1"]
    assert (tracked.status, tracked.sequence, tracked.progress) == ("RUNNING", 2, 40)
    assert tracked.started == datetime(2026, 12, 4, 11, 0, 1, tzinfo=UTC)
    assert state.unsaved == {"op-1"}


def test_events_the_state_already_holds_change_nothing() -> None:
    events, tracked = events_of(None, observation("op-1", "RUNNING", 40))
    state = BridgeState(tracked={"op-1": tracked})

    fold_event(state, KEYS, encode_event(events[0]))

    assert state.tracked["op-1"] == tracked
    assert state.unsaved == set()


def test_other_accounts_and_unreadable_records_are_skipped(
    caplog: pytest.LogCaptureFixture,
) -> None:
    events, _ = events_of(None, observation("op-1", "PENDING", 0))
    state = BridgeState()

    fold_event(state, StateKeys("test", "other"), encode_event(events[0]))
    fold_event(state, StateKeys("prod", "acc"), encode_event(events[0]))
    fold_event(state, KEYS, b"{not json")
    fold_event(state, KEYS, None)

    assert state.tracked == {}
    assert len(caplog.records) == 2
    assert "unreadable record of the events topic" in caplog.records[0].getMessage()


class _Unobserved:
    def item_rejected(self, reason: str) -> None:
        """Not counted here."""

    def observation_stale(self) -> None:
        """Not counted here."""

    def batch_committed(
        self, events: list[OperationEvent], state: BridgeState, committed_at: datetime
    ) -> None:
        """Not counted here."""


async def at_least_once(bootstrap: str) -> KafkaSettings:
    """Settings without transactions, on fresh topics that exist already."""
    name = unique_name("alo-state")
    settings = KafkaSettings(
        bootstrap_servers=[bootstrap],
        events_topic=f"{name}.events",
        state_topic=f"{name}.state",
        transactions=False,
        events_partitions=3,
        replication_factor=1,
        min_insync_replicas=1,
    )
    await ensure_topics(settings)
    return settings


async def land(
    state: BridgeState, publisher: Publisher, *seen: Observation
) -> BridgeState:
    """One cycle of the bridge: observe, then flush with a cursor."""
    options = CycleOptions(
        source=SOURCE,
        keys=KEYS,
        initial_load=False,
        progress_events=True,
        max_operation_bytes=65536,
        max_events_per_batch=100,
    )
    cycle = Cycle(state, options, publisher, _Unobserved(), lambda: NOW)
    for item in seen:
        cycle.observe(item, "refresh", NOW)
    await cycle.flush(Cursor(discover_watermark=NOW, sweep_watermark=NOW))
    return state


async def test_a_restart_numbers_changes_after_events_that_lost_their_state(
    kafka_bootstrap: str,
) -> None:
    """Events landed, the crash took their state: the next change follows them."""
    settings = await at_least_once(kafka_bootstrap)
    publisher = Publisher(settings)
    try:
        state = await land(
            BridgeState(),
            publisher,
            observation("op-1", "RUNNING", 10),
            observation("op-2", "RUNNING", 10),
        )
        later = [observation("op-1", "RUNNING", 60), observation("op-2", "FAIL", 10)]
        orphaned = [
            event
            for item in later
            for event in events_of(state.tracked[item.operation_id], item)[0]
        ]
        await publisher.publish(Batch(orphaned, []))

        restored = await restore_state(settings, KEYS)
        assert restored.unsaved == {"op-1", "op-2"}
        assert restored.tracked["op-1"].sequence == 3
        assert restored.tracked["op-2"].status == "FAIL"

        await land(restored, publisher, observation("op-1", "SUCCESS", 100))
        again = await restore_state(settings, KEYS)
    finally:
        await publisher.stop()

    published = await read_events(kafka_bootstrap, settings.events_topic, 3)
    one = [(e.event_id, e.kind) for _, e in published if e.operation_id == "op-1"]
    assert one == [
        ("op-1:1", "created"),
        ("op-1:2", "started"),
        ("op-1:3", "progressed"),
        ("op-1:4", "succeeded"),
    ]
    assert again.unsaved == set()
    assert again.tracked["op-1"].sequence == 4
    assert again.tracked["op-2"] == restored.tracked["op-2"]


async def test_with_transactions_the_events_topic_is_not_read(
    kafka_bootstrap: str,
) -> None:
    """The transactional state is exact already; events are never folded in."""
    settings = await at_least_once(kafka_bootstrap)
    publisher = Publisher(settings)
    try:
        events, _ = events_of(None, observation("op-9", "RUNNING", 10))
        await publisher.publish(Batch(events, []))
    finally:
        await publisher.stop()

    transactional = msgspec.structs.replace(settings, transactions=True)
    assert (await restore_state(transactional, KEYS)).tracked == {}
    assert "op-9" in (await restore_state(settings, KEYS)).tracked
