"""The change detector: random lifecycles, random poll timings, stale reads."""

from datetime import UTC, datetime, timedelta
from typing import TypedDict, Unpack

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bridge.detector import DetectionContext, TrackedOperation, detect
from bridge.events import EventSource, OperationEvent
from bridge.operation import Observation

T0 = datetime(2026, 1, 1, tzinfo=UTC)
SOURCE = EventSource(environment="test", account="acme", bridge_version="0")


class Lifecycle(msgspec.Struct, frozen=True):
    """The truth about one operation: when each status began, and progress steps."""

    submitted: datetime
    started: datetime | None
    finished: datetime | None
    outcome: str
    progress_steps: list[tuple[datetime, int]]

    def transitions(self) -> list[tuple[str | None, str, datetime]]:
        steps: list[tuple[str | None, str, datetime]] = [
            (None, "PENDING", self.submitted)
        ]
        if self.started is not None:
            steps.append(("PENDING", "RUNNING", self.started))
        if self.finished is not None:
            steps.append((steps[-1][1], self.outcome, self.finished))
        return steps

    def seen_at(self, moment: datetime) -> Observation:
        status = "PENDING"
        started = finished = None
        progress = None
        if self.started is not None and self.started <= moment:
            status, started, progress = "RUNNING", self.started, 0
            for at, value in self.progress_steps:
                if at <= moment:
                    progress = value
        if self.finished is not None and self.finished <= moment:
            status, finished = self.outcome, self.finished
            progress = 100 if self.outcome == "SUCCESS" else progress
        return observation(status, self.submitted, started, finished, progress)


def observation(
    status: str,
    submitted: datetime = T0,
    started: datetime | None = None,
    finished: datetime | None = None,
    progress: int | None = None,
    operation_id: str = "op-1",
) -> Observation:
    raw = msgspec.json.encode(
        {"id": operation_id, "type": "POOL.OPEN", "status": status}
    )
    return Observation(
        operation_id=operation_id,
        operation_type="POOL.OPEN",
        status=status,
        progress=progress,
        submitted=submitted,
        started=started,
        finished=finished,
        raw=msgspec.Raw(raw),
    )


class Overrides(TypedDict, total=False):
    """The `DetectionContext` fields a test may change from their defaults."""

    initial_load: bool
    progress_events: bool
    max_operation_bytes: int


def context(at: datetime, **overrides: Unpack[Overrides]) -> DetectionContext:
    return DetectionContext(
        observed_at=at, seen_by="refresh", source=SOURCE, **overrides
    )


def run(
    observations: list[tuple[datetime, Observation]], **overrides: Unpack[Overrides]
) -> tuple[list[OperationEvent], TrackedOperation | None]:
    tracked: TrackedOperation | None = None
    events: list[OperationEvent] = []
    for at, seen in observations:
        detection = detect(tracked, seen, context(at, **overrides))
        tracked = detection.tracked
        events.extend(detection.events)
    return events, tracked


def status_events(events: list[OperationEvent]) -> list[OperationEvent]:
    return [event for event in events if event.kind != "progressed"]


@st.composite
def lifecycles(draw: st.DrawFn) -> Lifecycle:
    seconds = st.floats(min_value=0, max_value=30, allow_nan=False)
    submitted = T0 + timedelta(seconds=draw(seconds))
    shape = draw(st.sampled_from(["pending", "running", "done", "failed_unstarted"]))
    started: datetime | None = None
    finished: datetime | None = None
    if shape in ("running", "done"):
        started = submitted + timedelta(seconds=draw(seconds))
    if shape == "done":
        assert started is not None
        finished = started + timedelta(seconds=draw(seconds))
    if shape == "failed_unstarted":
        finished = submitted + timedelta(seconds=draw(seconds))
    outcome = (
        "FAIL"
        if shape == "failed_unstarted"
        else draw(st.sampled_from(["SUCCESS", "FAIL"]))
    )

    steps: list[tuple[datetime, int]] = []
    if started is not None:
        values = sorted(draw(st.lists(st.integers(1, 99), max_size=5, unique=True)))
        end = finished or started + timedelta(seconds=30)
        span = (end - started).total_seconds()
        offsets = sorted(
            draw(st.lists(seconds, min_size=len(values), max_size=len(values)))
        )
        steps = [
            (started + timedelta(seconds=min(offset, span)), value)
            for offset, value in zip(offsets, values, strict=True)
        ]
    return Lifecycle(submitted, started, finished, outcome, steps)


def poll_times(lifecycle: Lifecycle, offsets: list[float]) -> list[datetime]:
    """Poll moments after submission, plus one after everything has happened."""
    moments = sorted(lifecycle.submitted + timedelta(seconds=o) for o in offsets)
    return [*moments, lifecycle.submitted + timedelta(seconds=200)]


@settings(max_examples=400, deadline=None)
@given(
    lifecycle=lifecycles(),
    offsets=st.lists(st.floats(min_value=0, max_value=120), max_size=12),
)
def test_emitted_stream_equals_the_true_lifecycle(
    lifecycle: Lifecycle, offsets: list[float]
) -> None:
    """Whatever the poll timing, status events replay the truth, dated by it."""
    moments = poll_times(lifecycle, offsets)
    events, tracked = run([(at, lifecycle.seen_at(at)) for at in moments])

    emitted = [
        (e.previous_status, e.status, e.occurred_at) for e in status_events(events)
    ]
    assert emitted == lifecycle.transitions()
    assert [e.sequence for e in events] == list(range(1, len(events) + 1))
    assert len({e.event_id for e in events}) == len(events)
    assert tracked is not None
    assert tracked.sequence == len(events)


@settings(max_examples=300, deadline=None)
@given(
    lifecycle=lifecycles(),
    offsets=st.lists(st.floats(min_value=0, max_value=120), max_size=12),
)
def test_inferred_marks_exactly_the_unobserved_steps(
    lifecycle: Lifecycle, offsets: list[float]
) -> None:
    """A step is inferred iff no observation showed the operation in that status."""
    moments = poll_times(lifecycle, offsets)
    observations = [(at, lifecycle.seen_at(at)) for at in moments]
    events, _ = run(observations)

    observed_statuses = {seen.status for _, seen in observations}
    for event in status_events(events):
        assert event.inferred == (event.status not in observed_statuses)


@settings(max_examples=300, deadline=None)
@given(
    lifecycle=lifecycles(),
    offsets=st.lists(st.floats(min_value=0, max_value=120), min_size=1, max_size=12),
    staleness=st.lists(st.floats(min_value=0, max_value=60), max_size=12),
)
def test_stale_reads_never_change_the_stream(
    lifecycle: Lifecycle, offsets: list[float], staleness: list[float]
) -> None:
    """Eventually consistent lists may answer from the past; nothing moves backwards."""
    moments = poll_times(lifecycle, offsets)
    observations = []
    for index, at in enumerate(moments):
        observations.append((at, lifecycle.seen_at(at)))
        if index < len(staleness):
            past = max(lifecycle.submitted, at - timedelta(seconds=staleness[index]))
            observations.append((at, lifecycle.seen_at(past)))

    events, _ = run(observations)
    emitted = [(e.previous_status, e.status) for e in status_events(events)]
    assert emitted == [(before, after) for before, after, _ in lifecycle.transitions()]
    progress: list[int] = []
    for event in events:
        if event.kind == "progressed":
            assert event.progress is not None, "a progressed event has a progress"
            progress.append(event.progress)
    assert progress == sorted(set(progress))


def test_pending_then_success_emits_inferred_running() -> None:
    """A jump from PENDING to SUCCESS is two events: RUNNING (inferred), SUCCESS."""
    started, finished = T0 + timedelta(seconds=5), T0 + timedelta(seconds=9)
    events, _ = run(
        [
            (T0, observation("PENDING")),
            (finished, observation("SUCCESS", T0, started, finished, 100)),
        ]
    )

    assert [(e.kind, e.status, e.inferred, e.occurred_at) for e in events] == [
        ("created", "PENDING", False, T0),
        ("started", "RUNNING", True, started),
        ("succeeded", "SUCCESS", False, finished),
    ]


def test_first_sight_of_a_finished_operation_gets_its_whole_lifecycle() -> None:
    """Seen only once, already failed: created and started are inferred."""
    started, finished = T0 + timedelta(seconds=1), T0 + timedelta(seconds=2)
    events, _ = run([(finished, observation("FAIL", T0, started, finished, 40))])

    assert [(e.kind, e.inferred) for e in events] == [
        ("created", True),
        ("started", True),
        ("failed", False),
    ]
    assert [e.event_id for e in events] == ["op-1:1", "op-1:2", "op-1:3"]


def test_unknown_status_passes_through_as_a_change() -> None:
    """A status Toloka adds later is reported, not dropped or rejected."""
    events, tracked = run(
        [
            (T0, observation("RUNNING", started=T0)),
            (T0, observation("CANCELLING", started=T0)),
            (T0, observation("SUCCESS", started=T0, finished=T0)),
        ]
    )

    transitions = [(e.previous_status, e.status, e.kind) for e in events]
    assert transitions[-2:] == [
        ("RUNNING", "CANCELLING", "status_changed"),
        ("CANCELLING", "SUCCESS", "succeeded"),
    ]
    assert tracked is not None
    assert tracked.is_terminal


def test_the_same_observation_twice_emits_nothing_the_second_time() -> None:
    """Re-reading an unchanged operation is free of events."""
    seen = observation("RUNNING", started=T0, progress=30)
    first, tracked = run([(T0, seen)])
    second = detect(tracked, seen, context(T0))

    assert len(first) == 2
    assert second.events == []
    assert second.tracked == tracked


@pytest.mark.parametrize("enabled", [True, False])
def test_progress_events_can_be_switched_off(enabled: bool) -> None:
    """With progress events off, progress is still tracked but not published."""
    events, tracked = run(
        [
            (T0, observation("RUNNING", started=T0, progress=10)),
            (T0, observation("RUNNING", started=T0, progress=60)),
        ],
        progress_events=enabled,
    )

    kinds = [event.kind for event in events]
    assert ("progressed" in kinds) is enabled
    assert tracked is not None
    assert tracked.progress == 60


def test_oversized_operation_is_trimmed_and_marked() -> None:
    """Huge details are dropped from the event so it stays under the size limit."""
    raw = msgspec.json.encode(
        {"id": "op-1", "type": "POOL.OPEN", "status": "PENDING", "details": "x" * 5000}
    )
    seen = msgspec.structs.replace(observation("PENDING"), raw=msgspec.Raw(raw))
    detection = detect(None, seen, context(T0, max_operation_bytes=1024))

    event = detection.events[0]
    assert event.operation_truncated
    assert b"details" not in bytes(event.operation)
    assert len(event.operation) <= 1024
