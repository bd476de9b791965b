"""Change detection: what the bridge knew + what it now sees -> events + what it knows.

Pure functions only: no I/O, no clock, no globals. The moment of observation and every
setting arrive in a `DetectionContext`.

Statuses advance PENDING -> RUNNING -> SUCCESS | FAIL; an unknown status counts as a
running one. When a poll sees only the end of a journey (PENDING, then SUCCESS), the
operation's own timestamps prove the steps in between (`started` set means it ran):
each step becomes its own event, in order, dated by the operation's timestamp and
marked `inferred` unless it is the step into the status actually observed.

An observation that would move an operation backwards (RUNNING after SUCCESS, PENDING
after RUNNING, a lower progress) is a stale read of an eventually consistent list and
changes nothing.
"""

from datetime import datetime

import msgspec

from bridge.events import (
    EventKind,
    EventSource,
    OperationEvent,
    ScanName,
    event_id,
    fit_operation,
    kind_of,
)
from bridge.operation import (
    PENDING,
    RUNNING,
    TERMINAL_STATUSES,
    Observation,
    read_operation,
)


class TrackedOperation(msgspec.Struct, frozen=True, kw_only=True):
    """What the bridge has published about one operation."""

    operation_id: str
    operation_type: str
    status: str
    progress: int | None
    sequence: int
    submitted: datetime
    started: datetime | None = None
    finished: datetime | None = None

    @property
    def is_terminal(self) -> bool:
        return self.status in TERMINAL_STATUSES


class DetectionContext(msgspec.Struct, frozen=True, kw_only=True):
    """Everything `detect` needs besides the state and the observation."""

    observed_at: datetime
    seen_by: ScanName
    source: EventSource
    initial_load: bool = False
    progress_events: bool = True
    max_operation_bytes: int = 64 * 1024


class Detection(msgspec.Struct, frozen=True):
    """The outcome of one observation: events to publish, the state to keep."""

    events: list[OperationEvent]
    tracked: TrackedOperation
    stale: bool = False


class _Step(msgspec.Struct, frozen=True):
    status: str
    occurred_at: datetime
    inferred: bool


def detect(
    tracked: TrackedOperation | None,
    observation: Observation,
    context: DetectionContext,
) -> Detection:
    """Compare one observation with what was published before; say what changed."""
    if tracked is None:
        steps = _first_sight_steps(observation, context.observed_at)
        return _emit(None, steps, observation, context)

    if _is_stale(tracked, observation):
        return Detection([], tracked, stale=True)

    if observation.status != tracked.status:
        steps = _journey_steps(tracked.status, observation, context.observed_at)
        return _emit(tracked, steps, observation, context)

    return _progress(tracked, observation, context)


def status_rank(status: str) -> int:
    """Position in the lifecycle; unknown statuses rank with RUNNING."""
    if status == PENDING:
        return 0
    if status in TERMINAL_STATUSES:
        return 2
    return 1


def _is_stale(tracked: TrackedOperation, observation: Observation) -> bool:
    if tracked.is_terminal:
        return observation.status != tracked.status
    return status_rank(observation.status) < status_rank(tracked.status)


def _first_sight_steps(observation: Observation, observed_at: datetime) -> list[_Step]:
    created = _Step(PENDING, observation.submitted, observation.status != PENDING)
    return [created, *_journey_steps(PENDING, observation, observed_at)]


def _journey_steps(
    previous_status: str, observation: Observation, observed_at: datetime
) -> list[_Step]:
    """The statuses between `previous_status` and the observed one, oldest first."""
    steps: list[_Step] = []
    target = observation.status
    if target == previous_status:
        return steps

    ran_unseen = previous_status == PENDING and target != RUNNING
    if ran_unseen and observation.started is not None:
        steps.append(_Step(RUNNING, observation.started, inferred=True))

    steps.append(_Step(target, _moment_of(observation, observed_at), inferred=False))
    return steps


def _moment_of(observation: Observation, observed_at: datetime) -> datetime:
    """When the operation entered its current status, by its own timestamps."""
    if observation.status in TERMINAL_STATUSES and observation.finished is not None:
        return observation.finished
    if observation.status == RUNNING and observation.started is not None:
        return observation.started
    if observation.status == PENDING:
        return observation.submitted
    return observed_at


def _emit(
    tracked: TrackedOperation | None,
    steps: list[_Step],
    observation: Observation,
    context: DetectionContext,
    kind: EventKind | None = None,
) -> Detection:
    """One event per step, numbered after the last published one."""
    operation, truncated = fit_operation(observation.raw, context.max_operation_bytes)
    previous_status = None if tracked is None else tracked.status
    previous_progress = None if tracked is None else tracked.progress
    sequence = 0 if tracked is None else tracked.sequence

    events = []
    for index, step in enumerate(steps):
        is_last = index == len(steps) - 1
        progress = observation.progress if is_last else previous_progress
        sequence += 1
        events.append(
            OperationEvent(
                event_id=event_id(observation.operation_id, sequence),
                kind=kind or kind_of(previous_status, step.status),
                sequence=sequence,
                operation_id=observation.operation_id,
                operation_type=observation.operation_type,
                previous_status=previous_status,
                status=step.status,
                previous_progress=previous_progress,
                progress=progress,
                occurred_at=step.occurred_at,
                observed_at=context.observed_at,
                inferred=step.inferred,
                initial_load=context.initial_load,
                seen_by=context.seen_by,
                operation=operation,
                operation_truncated=truncated,
                source=context.source,
            )
        )
        previous_status, previous_progress = step.status, progress

    return Detection(events, _tracked_after(observation, sequence, tracked))


def _progress(
    tracked: TrackedOperation, observation: Observation, context: DetectionContext
) -> Detection:
    """Same status: a progress step is an event of its own kind, if switched on."""
    previous, current = tracked.progress, observation.progress
    if current is None or current == previous or tracked.is_terminal:
        return Detection([], tracked)
    if previous is not None and current < previous:
        return Detection([], tracked, stale=True)

    if not context.progress_events:
        return Detection([], _tracked_after(observation, tracked.sequence, tracked))

    step = _Step(observation.status, context.observed_at, inferred=False)
    return _emit(tracked, [step], observation, context, kind="progressed")


def _tracked_after(
    observation: Observation, sequence: int, tracked: TrackedOperation | None
) -> TrackedOperation:
    return TrackedOperation(
        operation_id=observation.operation_id,
        operation_type=observation.operation_type,
        status=observation.status,
        progress=observation.progress,
        sequence=sequence,
        submitted=observation.submitted if tracked is None else tracked.submitted,
        started=observation.started,
        finished=observation.finished,
    )


def tracked_from_event(
    event: OperationEvent, tracked: TrackedOperation | None
) -> TrackedOperation:
    """What the bridge knew right after publishing `event`; raises `PayloadError`
    when the operation it carries is unreadable."""
    observation = read_operation(event.operation)
    after = _tracked_after(observation, event.sequence, tracked)
    return msgspec.structs.replace(after, status=event.status, progress=event.progress)
