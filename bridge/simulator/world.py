"""The simulated account: every operation, its indexes and the ground truth.

`World` is the only code that changes an operation once it exists. Each change goes
through `add`, `transition` or `set_progress`, which keep three things in step: the
operation as served, its index entries, and the truth record of the transition. The
timestamp a transition carries is stamped here, so the truth's `at` is always the
exact wire string.
"""

import hashlib
from collections.abc import Sequence

from bridge.simulator import catalog
from bridge.simulator.index import OperationIndex
from bridge.simulator.model import (
    PENDING,
    RUNNING,
    TERMINAL_STATUSES,
    SimOperation,
)
from bridge.simulator.truth import TruthLog, TruthRecord
from bridge.simulator.wiretime import format_wire_time, truncate_us

_ODD_DIGITS = (0, 5, 6)
_UNIT = float(2**64)


class TransitionError(ValueError):
    """A requested transition is not possible from the operation's status."""


class World:
    """All simulated operations, indexed, with the truth of how they got there."""

    def __init__(self, truth: TruthLog, seed: int, odd_precision_ratio: float) -> None:
        self.index = OperationIndex()
        self.truth = truth
        self._seed = seed
        self._odd_precision_ratio = odd_precision_ratio

    def __len__(self) -> int:
        return len(self.index)

    def get(self, op_id: str) -> SimOperation | None:
        """The operation with this id, if it exists."""
        return self.index.operations.get(op_id)

    def stamp(
        self, op_id: str, field: str, at_us: int, floor_us: int = 0
    ) -> tuple[str, int]:
        """The wire string for a timestamp of `op_id`, and the value it stands for.

        Most timestamps get 3 fraction digits; `odd_precision_ratio` of them get 0, 5
        or 6. A string is never earlier than `floor_us` (the operation's previous
        timestamp): if truncation would make it so, all 6 digits are kept.
        """
        at_us = max(at_us, floor_us)
        digits = self._digits(op_id, field)
        value = truncate_us(at_us, digits)
        if value < floor_us:
            digits, value = 6, at_us
        return format_wire_time(value, digits), value

    def new_operation(
        self,
        op_id: str,
        op_type: str,
        content_seed: int,
        submitted: tuple[str, int],
    ) -> SimOperation:
        """A PENDING operation, not yet added; `submitted` comes from `stamp`."""
        wire, value = submitted
        return SimOperation(
            id=op_id,
            type=op_type,
            status=PENDING,
            submitted=wire,
            submitted_us=value,
            parameters=catalog.parameters_for(op_type, content_seed),
            content_seed=content_seed,
            submitted_key=(value, op_id),
        )

    def settle(
        self,
        op: SimOperation,
        status: str,
        started_at_us: int | None,
        finished_at_us: int | None,
        progress: int | None,
    ) -> None:
        """Give a new operation (not yet added) the later steps of its past.

        Used to pre-populate operations that started and maybe finished before the
        simulator did; `add` then records the truth of every step.
        """
        floor_us = op.submitted_us
        if started_at_us is not None:
            op.started, op.started_us = self.stamp(
                op.id, "started", started_at_us, floor_us
            )
            floor_us = op.started_us
        if finished_at_us is not None:
            op.finished, op.finished_us = self.stamp(
                op.id, "finished", finished_at_us, floor_us
            )
            op.details = catalog.details_for(
                op.type, op.content_seed, status, op.finished
            )
        op.status = status
        op.progress = progress

    def add(self, ops: Sequence[SimOperation]) -> None:
        """Add new operations and record every transition their state implies.

        An operation may arrive already RUNNING or finished (pre-populated history);
        its `started`/`finished` must then be set, and the truth gets one record per
        step it went through.
        """
        records: list[TruthRecord] = []
        for op in ops:
            self._draw_faults(op)
            op.finished_key = (
                None if op.finished_us is None else (op.finished_us, op.id)
            )
            records.extend(_implied_records(op))
        self.index.add_many(ops)
        self.truth.append_many(records)

    def transition(
        self, op: SimOperation, to_status: str, at_us: int, progress: int | None = None
    ) -> None:
        """Move `op` to `to_status` at `at_us`, stamping the matching timestamp."""
        if op.status in TERMINAL_STATUSES:
            raise TransitionError(f"operation {op.id!r} is already {op.status}")
        if to_status == op.status:
            raise TransitionError(f"operation {op.id!r} is already {op.status}")
        if to_status == "SUCCESS" and op.started is None:
            raise TransitionError(f"operation {op.id!r} cannot succeed before running")

        old_status, old_finished_key = op.status, op.finished_key
        at = self._apply(op, to_status, at_us, progress)
        op.wire_cache = None
        self.index.update(op, old_status, old_finished_key)
        self.truth.append(
            TruthRecord(
                operation_id=op.id,
                operation_type=op.type,
                from_status=old_status,
                to_status=to_status,
                at=at,
            )
        )

    def set_progress(self, op: SimOperation, progress: int) -> None:
        """Change the progress of an unfinished operation (not a transition)."""
        if op.status in TERMINAL_STATUSES:
            raise TransitionError(f"operation {op.id!r} is already {op.status}")
        if not 0 <= progress <= 100:
            raise TransitionError(f"progress must be 0-100, got {progress!r}")
        op.progress = progress
        op.wire_cache = None

    def _apply(
        self, op: SimOperation, to_status: str, at_us: int, progress: int | None
    ) -> str:
        """Set the fields of the new status; return the wire time of the change."""
        floor_us = max(op.submitted_us, op.started_us or 0)
        op.status = to_status
        if to_status == RUNNING and op.started is None:
            op.started, op.started_us = self.stamp(op.id, "started", at_us, floor_us)
            op.progress = 0 if progress is None else progress
            return op.started
        if to_status in TERMINAL_STATUSES:
            op.finished, op.finished_us = self.stamp(op.id, "finished", at_us, floor_us)
            op.finished_key = (op.finished_us, op.id)
            op.progress = _final_progress(op, to_status, progress)
            op.details = catalog.details_for(
                op.type, op.content_seed, to_status, op.finished
            )
            return op.finished

        if progress is not None:
            op.progress = progress
        return self.stamp(op.id, "other", at_us, floor_us)[0]

    def _digits(self, op_id: str, field: str) -> int:
        if self._odd_precision_ratio <= 0.0:
            return 3
        draw = _unit_draws(f"{self._seed}:{field}:{op_id}", 1)[0]
        if draw >= self._odd_precision_ratio:
            return 3
        return _ODD_DIGITS[int(draw / self._odd_precision_ratio * 3) % 3]

    def _draw_faults(self, op: SimOperation) -> None:
        late, hidden, huge = _unit_draws(f"{self._seed}:faults:{op.id}", 3)
        op.late_draw, op.hidden_draw, op.huge_draw = late, hidden, huge


def _final_progress(op: SimOperation, to_status: str, given: int | None) -> int | None:
    if given is not None:
        return given
    if to_status == "SUCCESS":
        return 100
    return op.progress


def _implied_records(op: SimOperation) -> list[TruthRecord]:
    """The transitions a new operation in its current state went through."""
    steps: list[tuple[str | None, str, str]] = [(None, PENDING, op.submitted)]
    if op.started is not None:
        steps.append((PENDING, RUNNING, op.started))
    if op.finished is not None:
        steps.append((steps[-1][1], op.status, op.finished))
    if steps[-1][1] != op.status:
        raise ValueError(
            f"operation {op.id!r} is {op.status} but its timestamps say {steps[-1][1]}"
        )
    return [
        TruthRecord(
            operation_id=op.id,
            operation_type=op.type,
            from_status=from_status,
            to_status=to_status,
            at=at,
        )
        for from_status, to_status, at in steps
    ]


def _unit_draws(key: str, count: int) -> list[float]:
    """`count` stable pseudo-random numbers in [0, 1) derived from `key`."""
    digest = hashlib.blake2b(key.encode(), digest_size=8 * count).digest()
    return [
        int.from_bytes(digest[8 * i : 8 * i + 8], "big") / _UNIT for i in range(count)
    ]
