"""One poll cycle's bookkeeping: observations in, committed batches out.

A `Cycle` runs every observation through the detector against an overlay of the
committed state, collects the events, and lands them with the state records that
describe them in one `Batch`. The committed state changes only after Kafka took the
batch, so a failure anywhere leaves the bridge exactly where Kafka says it is.

Large cycles (a catch-up after downtime) flush every `max_events_per_transaction`
events; the cursor is written only by the last flush, once everything before it has
landed, so a crash mid-cycle re-reads a little and publishes nothing twice.

Without transactions, the first flush also writes back the operations the restore
took from the events topic, and every flush is followed by the coverage record
(`bridge.state`), sent only after the flush's own records were acknowledged.
"""

import logging
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Protocol

import msgspec

from bridge.detector import DetectionContext, TrackedOperation, detect
from bridge.errors import PayloadError
from bridge.events import EventSource, OperationEvent, ScanName
from bridge.operation import Observation
from bridge.publisher import Batch, Publisher
from bridge.state import (
    BridgeState,
    Cursor,
    EventOffsets,
    StateKeys,
    StateRecord,
    coverage_record,
    cursor_record,
    tombstone,
    tracked_record,
)

logger = logging.getLogger(__name__)


class CycleObserver(Protocol):
    """What the metrics module learns from a cycle."""

    def item_rejected(self, reason: str) -> None: ...

    def observation_stale(self) -> None: ...

    def batch_committed(
        self, events: list[OperationEvent], state: BridgeState, committed_at: datetime
    ) -> None: ...


class CycleOptions(msgspec.Struct, frozen=True, kw_only=True):
    """The settings a cycle needs, gathered from the configuration."""

    source: EventSource
    keys: StateKeys
    initial_load: bool
    progress_events: bool
    max_operation_bytes: int
    max_events_per_batch: int


class CycleTally(msgspec.Struct, kw_only=True):
    """Counts of one cycle, for the DEBUG line and the tests."""

    observations: int = 0
    events: int = 0
    rejected: int = 0
    stale: int = 0
    batches: int = 0
    forgotten: int = 0


class Cycle:
    """Detects changes against the committed state and lands them batch by batch."""

    def __init__(
        self,
        state: BridgeState,
        options: CycleOptions,
        publisher: Publisher,
        observer: CycleObserver,
        clock: Callable[[], datetime],
    ) -> None:
        self._state = state
        self._options = options
        self._publisher = publisher
        self._observer = observer
        self._clock = clock
        self._changed: dict[str, TrackedOperation] = {}
        self._forgotten: set[str] = set()
        self._events: list[OperationEvent] = []
        self.tally = CycleTally()

    def tracked(self, operation_id: str) -> TrackedOperation | None:
        """The latest known state of an operation, committed or not."""
        if operation_id in self._forgotten:
            return None
        return self._changed.get(operation_id) or self._state.tracked.get(operation_id)

    def unfinished_ids(self) -> list[str]:
        """Operations that are neither finished nor forgotten, as of now."""
        ids = set(self._state.tracked) | set(self._changed)
        return sorted(
            operation_id
            for operation_id in ids - self._forgotten
            if not self._latest(operation_id).is_terminal
        )

    def observe(
        self, observation: Observation, seen_by: ScanName, observed_at: datetime
    ) -> None:
        """Run one observation through the detector; remember what changed."""
        self.tally.observations += 1
        operation_id = observation.operation_id
        current = self.tracked(operation_id)
        context = self._context(seen_by, observed_at)
        detection = detect(current, observation, context)

        if detection.stale:
            self.tally.stale += 1
            self._observer.observation_stale()
            logger.debug("stale observation of %s ignored", operation_id)
        if detection.tracked != current:
            self._changed[operation_id] = detection.tracked
            self._forgotten.discard(operation_id)
        self._events.extend(detection.events)

    def reject(self, error: PayloadError) -> None:
        """Count and log an unusable item; the rest of the page is still used."""
        self.tally.rejected += 1
        self._observer.item_rejected(error.reason)
        logger.warning(
            "skipped an invalid operation: reason=%s id=%s: %s",
            error.reason,
            error.operation_id,
            error,
        )

    def forget(self, operation_ids: Iterable[str]) -> None:
        """Drop operations from the state once no scan can return them any more."""
        for operation_id in operation_ids:
            self._forgotten.add(operation_id)
            self._changed.pop(operation_id, None)

    async def flush_if_full(self) -> None:
        if len(self._events) >= self._options.max_events_per_batch:
            await self.flush()

    async def flush(self, cursor: Cursor | None = None) -> None:
        """Land pending events with their state records (and the cursor, if given)."""
        records = self._state_records(cursor)
        if not records and not self._events:
            return

        batch = Batch(self._events, records)
        landed = await self._publisher.publish(batch)
        self._commit(cursor)
        self._observer.batch_committed(batch.events, self._state, self._clock())

        self.tally.batches += 1
        self.tally.events += len(batch.events)
        self._events = []
        if not self._publisher.transactional:
            await self._cover(landed)

    async def _cover(self, landed: EventOffsets) -> None:
        """Say that the state now holds every event up to the batch just landed."""
        covered = self._state.events_covered | landed
        record = coverage_record(self._options.keys, covered)
        await self._publisher.publish(Batch([], [record]))
        self._state.events_covered = covered

    def _latest(self, operation_id: str) -> TrackedOperation:
        tracked = self.tracked(operation_id)
        assert tracked is not None, operation_id
        return tracked

    def _context(self, seen_by: ScanName, observed_at: datetime) -> DetectionContext:
        options = self._options
        return DetectionContext(
            observed_at=observed_at,
            seen_by=seen_by,
            source=options.source,
            initial_load=options.initial_load,
            progress_events=options.progress_events,
            max_operation_bytes=options.max_operation_bytes,
        )

    def _state_records(self, cursor: Cursor | None) -> list[StateRecord]:
        keys = self._options.keys
        records = [tracked_record(keys, item) for item in self._changed.values()]
        records += [
            tracked_record(keys, self._state.tracked[operation_id])
            for operation_id in sorted(self._state.unsaved)
            if operation_id not in self._changed and operation_id not in self._forgotten
        ]
        records += [
            tombstone(keys, operation_id)
            for operation_id in sorted(self._forgotten)
            if operation_id in self._state.tracked
        ]
        if cursor is not None and cursor != self._state.cursor:
            records.append(cursor_record(keys, cursor))
        return records

    def _commit(self, cursor: Cursor | None) -> None:
        self._state.tracked.update(self._changed)
        self._state.unsaved.clear()
        for operation_id in self._forgotten:
            if self._state.tracked.pop(operation_id, None) is not None:
                self.tally.forgotten += 1
        if cursor is not None:
            self._state.cursor = cursor

        self._changed = {}
        self._forgotten = set()
