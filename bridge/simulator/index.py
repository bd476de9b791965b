"""Sorted indexes over the simulated operations, kept up to date on every change.

Operations are grouped into buckets: all operations, one bucket per status and one per
type. Each bucket keeps four sorted Python lists, searched with `bisect`:

    ids             operation ids (strings, compared as strings)
    by_submitted    (submitted_us, id) for every operation in the bucket
    by_finished     (finished_us, id) for operations that have finished
    unfinished_ids  ids of operations without `finished`, sorted

An operation sits in three buckets. The `(time, id)` tuples are created once per
operation and shared by its buckets, so memory grows by a few pointers per bucket.

Cost: a lookup of a key range is O(log n). Adding or moving one operation is
O(log n) comparisons plus an O(n) pointer shift inside `list.insert`/`del`, which is a
`memmove` of at most 8 bytes per operation (about 0.1 ms at 100,000 operations).
`add_many` appends and re-sorts instead (Timsort merges the appended run in O(n)),
which is what bulk loads and bursts use.
"""

from bisect import bisect_left, insort
from collections.abc import Iterable, Sequence
from typing import TypeVar

from bridge.simulator.model import SimOperation

_BULK_THRESHOLD = 32
_Entry = TypeVar("_Entry", str, tuple[int, str])


class Bucket:
    """The four sorted lists of one group of operations."""

    __slots__ = ("by_finished", "by_submitted", "ids", "unfinished_ids")

    def __init__(self) -> None:
        self.ids: list[str] = []
        self.by_submitted: list[tuple[int, str]] = []
        self.by_finished: list[tuple[int, str]] = []
        self.unfinished_ids: list[str] = []

    def __len__(self) -> int:
        return len(self.ids)

    def insert(self, op: SimOperation) -> None:
        """Add one operation, keeping every list sorted."""
        insort(self.ids, op.id)
        insort(self.by_submitted, op.submitted_key)
        self._insert_finished(op.id, op.finished_key)

    def remove(self, op: SimOperation, finished_key: tuple[int, str] | None) -> None:
        """Remove one operation that was indexed with `finished_key`."""
        _remove(self.ids, op.id)
        _remove(self.by_submitted, op.submitted_key)
        self._remove_finished(op.id, finished_key)

    def move_finished(
        self, op_id: str, old: tuple[int, str] | None, new: tuple[int, str] | None
    ) -> None:
        """Re-file an operation whose `finished` changed from `old` to `new`."""
        self._remove_finished(op_id, old)
        self._insert_finished(op_id, new)

    def extend(self, ops: Sequence[SimOperation]) -> None:
        """Add many operations at once: append, then re-sort each list."""
        self.ids.extend(op.id for op in ops)
        self.by_submitted.extend(op.submitted_key for op in ops)
        for op in ops:
            if op.finished_key is None:
                self.unfinished_ids.append(op.id)
            else:
                self.by_finished.append(op.finished_key)

        self.ids.sort()
        self.by_submitted.sort()
        self.by_finished.sort()
        self.unfinished_ids.sort()

    def _insert_finished(self, op_id: str, key: tuple[int, str] | None) -> None:
        if key is None:
            insort(self.unfinished_ids, op_id)
        else:
            insort(self.by_finished, key)

    def _remove_finished(self, op_id: str, key: tuple[int, str] | None) -> None:
        if key is None:
            _remove(self.unfinished_ids, op_id)
        else:
            _remove(self.by_finished, key)


class OperationIndex:
    """All operations by id, plus sorted buckets for searching them."""

    def __init__(self) -> None:
        self.operations: dict[str, SimOperation] = {}
        self.everything = Bucket()
        self._by_status: dict[str, Bucket] = {}
        self._by_type: dict[str, Bucket] = {}

    def __len__(self) -> int:
        return len(self.operations)

    def status_bucket(self, status: str) -> Bucket | None:
        """The bucket of operations in `status`, if any ever had it."""
        return self._by_status.get(status)

    def type_bucket(self, op_type: str) -> Bucket | None:
        """The bucket of operations of `op_type`, if any exist."""
        return self._by_type.get(op_type)

    def counts_by_status(self) -> dict[str, int]:
        """How many operations are in each status (statuses with none left out)."""
        return {status: len(b) for status, b in self._by_status.items() if len(b)}

    def add(self, op: SimOperation) -> None:
        """Index a new operation."""
        if op.id in self.operations:
            raise ValueError(f"operation {op.id!r} is already indexed")
        self.operations[op.id] = op
        for bucket in self._buckets_of(op.status, op.type):
            bucket.insert(op)

    def add_many(self, ops: Sequence[SimOperation]) -> None:
        """Index many new operations; cheaper than `add` in a loop for big batches."""
        if len(ops) < _BULK_THRESHOLD:
            for op in ops:
                self.add(op)
            return

        self._check_new_ids(ops)
        groups: dict[int, tuple[Bucket, list[SimOperation]]] = {}
        for op in ops:
            self.operations[op.id] = op
            for bucket in self._buckets_of(op.status, op.type):
                groups.setdefault(id(bucket), (bucket, []))[1].append(op)
        for bucket, members in groups.values():
            bucket.extend(members)

    def update(
        self,
        op: SimOperation,
        old_status: str,
        old_finished_key: tuple[int, str] | None,
    ) -> None:
        """Re-file `op` after its status and/or `finished` changed."""
        if old_status != op.status:
            self._status_bucket(old_status).remove(op, old_finished_key)
            self._status_bucket(op.status).insert(op)
        if old_finished_key != op.finished_key:
            for bucket in (self.everything, self._type_bucket(op.type)):
                bucket.move_finished(op.id, old_finished_key, op.finished_key)
            if old_status == op.status:
                bucket = self._status_bucket(op.status)
                bucket.move_finished(op.id, old_finished_key, op.finished_key)

    def _buckets_of(self, status: str, op_type: str) -> Iterable[Bucket]:
        return (
            self.everything,
            self._status_bucket(status),
            self._type_bucket(op_type),
        )

    def _status_bucket(self, status: str) -> Bucket:
        return self._by_status.setdefault(status, Bucket())

    def _type_bucket(self, op_type: str) -> Bucket:
        return self._by_type.setdefault(op_type, Bucket())

    def _check_new_ids(self, ops: Sequence[SimOperation]) -> None:
        ids = [op.id for op in ops]
        if len(set(ids)) != len(ids) or any(i in self.operations for i in ids):
            raise ValueError("add_many was given an id twice or an id already indexed")


def _remove(items: list[_Entry], item: _Entry) -> None:
    position = bisect_left(items, item)
    if position == len(items) or items[position] != item:
        raise ValueError(f"index entry {item!r} is missing")
    del items[position]
