"""The simulated operation and its wire encoding.

`SimOperation` is the simulator's own record of one operation: the wire fields as
strings exactly as served, their parsed values (microseconds since the epoch) for
sorting and filtering, and a few per-operation fault draws. `encode_operation` turns
it into the JSON object Toloka would send: fields in the API's order, absent optional
fields omitted (never `null`).
"""

import msgspec

PENDING = "PENDING"
RUNNING = "RUNNING"
SUCCESS = "SUCCESS"
FAIL = "FAIL"
KNOWN_STATUSES = (PENDING, RUNNING, SUCCESS, FAIL)
TERMINAL_STATUSES = frozenset({SUCCESS, FAIL})


class SimOperation(msgspec.Struct, kw_only=True):
    """One operation as the simulator holds it (mutable; only `World` changes it)."""

    id: str
    type: str
    status: str
    submitted: str
    submitted_us: int
    started: str | None = None
    started_us: int | None = None
    finished: str | None = None
    finished_us: int | None = None
    progress: int | None = None
    parameters: msgspec.Raw | None = None
    details: msgspec.Raw | None = None
    content_seed: int = 0
    late_draw: float = 1.0
    hidden_draw: float = 1.0
    huge_draw: float = 1.0
    submitted_key: tuple[int, str] = (0, "")
    finished_key: tuple[int, str] | None = None
    wire_cache: bytes | None = None

    @property
    def is_finished(self) -> bool:
        """Whether the operation carries a `finished` timestamp."""
        return self.finished_us is not None


class WireOperation(msgspec.Struct, omit_defaults=True):
    """An operation exactly as the API serves it."""

    id: str
    type: str
    status: str
    submitted: str
    started: str | None = None
    finished: str | None = None
    progress: int | None = None
    parameters: msgspec.Raw | None = None
    details: msgspec.Raw | None = None


_encoder = msgspec.json.Encoder()


def to_wire(op: SimOperation, details: msgspec.Raw | None = None) -> WireOperation:
    """The wire form of `op`; `details` replaces the operation's own when given."""
    return WireOperation(
        id=op.id,
        type=op.type,
        status=op.status,
        submitted=op.submitted,
        started=op.started,
        finished=op.finished,
        progress=op.progress,
        parameters=op.parameters,
        details=details if details is not None else op.details,
    )


def encode_operation(op: SimOperation) -> bytes:
    """The operation's JSON object, cached until the operation changes."""
    if op.wire_cache is None:
        op.wire_cache = _encoder.encode(to_wire(op))
    return op.wire_cache


def encode_with_details(op: SimOperation, details: msgspec.Raw) -> bytes:
    """The operation's JSON object with other `details` (not cached)."""
    return _encoder.encode(to_wire(op, details))


def encode_page(items: list[bytes], has_more: bool) -> bytes:
    """A search answer `{"items": [...], "has_more": bool}` from encoded items."""
    tail = b'],"has_more":true}' if has_more else b'],"has_more":false}'
    return b'{"items":[' + b",".join(items) + tail
