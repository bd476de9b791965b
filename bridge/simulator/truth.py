"""The ground truth: every status transition the simulator made, in order.

One JSON line per transition, `{"operation_id", "operation_type", "from_status",
"to_status", "at"}`; creation is `from_status: null` to `PENDING`. `at` is exactly the
wire string the operation carries for that step (`submitted`, `started` or
`finished`). Lines go to a file (flushed after each append call) and stay in memory.
Faults never write here: the truth is what happened, not what was served.
"""

import logging
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import IO

import msgspec

log = logging.getLogger(__name__)


class TruthRecord(msgspec.Struct, kw_only=True):
    """One status transition."""

    operation_id: str
    operation_type: str
    from_status: str | None
    to_status: str
    at: str


class TruthLog:
    """Keeps the records in memory and appends them to a JSON-lines file."""

    def __init__(self, path: Path | None = None) -> None:
        self.records: list[TruthRecord] = []
        self._path = path
        self._file: IO[bytes] | None = None
        self._encoder = msgspec.json.Encoder()
        if path is not None:
            self._file = path.open("wb")
            log.info("writing ground truth to %s", path)

    def __len__(self) -> int:
        return len(self.records)

    def append(self, record: TruthRecord) -> None:
        """Record one transition and flush it to the file."""
        self.append_many((record,))

    def append_many(self, records: Sequence[TruthRecord]) -> None:
        """Record several transitions with one write and one flush."""
        self.records.extend(records)
        if self._file is not None and records:
            lines = b"".join(self._encoder.encode(r) + b"\n" for r in records)
            self._file.write(lines)
            self._file.flush()

    def for_operation(self, operation_id: str) -> list[TruthRecord]:
        """The transitions of one operation, in order."""
        return [r for r in self.records if r.operation_id == operation_id]

    def close(self) -> None:
        """Close the file; the records stay readable in memory."""
        if self._file is not None:
            self._file.close()
            self._file = None


def replay(records: Iterable[TruthRecord]) -> dict[str, str]:
    """The status each operation ends in according to `records`.

    Raises ValueError when a record does not start from the status the operation
    was in, which would mean the truth contradicts itself.
    """
    statuses: dict[str, str] = {}
    for record in records:
        current = statuses.get(record.operation_id)
        if current != record.from_status:
            raise ValueError(
                f"truth for {record.operation_id!r} goes from {record.from_status!r} "
                f"but the operation was {current!r}"
            )
        statuses[record.operation_id] = record.to_status
    return statuses


def read_truth_file(path: Path) -> list[TruthRecord]:
    """Read a truth file written by `TruthLog`."""
    decoder = msgspec.json.Decoder(TruthRecord)
    with path.open("rb") as lines:
        return [decoder.decode(line) for line in lines if line.strip()]
