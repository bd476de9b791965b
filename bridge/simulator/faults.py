"""Injected faults: what goes wrong with a request, a page or an operation.

Request faults (errors, 429s, slow answers, malformed bodies, junk items in a page)
are drawn per request from a seeded RNG. Operation faults (huge `details`, rows that
show up in search late, rows missing from search) are decided per operation by the
stable draws `World` gives each operation, compared with the current probability, so
a change of settings at runtime applies to every operation at once. Faults change
only what is served, never the operations or the truth.
"""

import random
from collections.abc import Callable

import msgspec

from bridge.simulator.clock import seconds_to_us
from bridge.simulator.model import SimOperation
from bridge.simulator.query import Visible
from bridge.simulator.settings import FaultSettings
from bridge.simulator.wiretime import format_wire_time

_SERVER_ERRORS = (
    (500, "INTERNAL_ERROR", "Internal server error"),
    (502, "REMOTE_SERVICE_UNAVAILABLE", "Bad gateway"),
    (503, "REMOTE_SERVICE_UNAVAILABLE", "Service temporarily unavailable"),
    (504, "REMOTE_SERVICE_UNAVAILABLE", "Gateway timeout"),
)
_JUNK_KINDS = (
    "missing_id",
    "missing_type",
    "bad_datetime",
    "progress_250",
    "finished_before_submitted",
)
_DAY_US = 86_400_000_000


class QuotaPayload(msgspec.Struct):
    """The payload of a 429 that names the quota window."""

    interval: str


class RequestFault(msgspec.Struct, kw_only=True):
    """An error answer to send instead of the real one."""

    status: int
    code: str
    message: str
    payload: QuotaPayload | None = None
    retry_after: str | None = None


class JunkItem(msgspec.Struct, omit_defaults=True):
    """Something in a page that looks like an operation but is not one."""

    id: str | None = None
    type: str | None = None
    status: str | None = None
    submitted: str = ""
    started: str | None = None
    finished: str | None = None
    progress: int | None = None


class FaultInjector:
    """Decides, per request and per operation, which fault (if any) applies."""

    def __init__(self, settings: FaultSettings, seed: int) -> None:
        self.settings = settings
        self._rng = random.Random(f"{seed}:faults")
        self._huge_cache: dict[int, msgspec.Raw] = {}
        self._encoder = msgspec.json.Encoder()

    def delay_seconds(self) -> float:
        """How long to stall this request before answering (0 for no delay)."""
        if self._happens(self.settings.slow_probability):
            return self.settings.slow_delay_seconds
        return 0.0

    def request_fault(self) -> RequestFault | None:
        """An error to answer this request with, or None to answer normally."""
        settings = self.settings
        if self._happens(settings.server_error_probability):
            status, code, message = self._rng.choice(_SERVER_ERRORS)
            return RequestFault(status=status, code=code, message=message)
        if self._happens(settings.rate_limit_probability):
            return _too_many(retry_after=_header_seconds(settings.retry_after_seconds))
        if self._happens(settings.rate_limit_no_header_probability):
            return _too_many()
        if self._happens(settings.quota_probability):
            interval = settings.quota_interval
            return RequestFault(
                status=429,
                code="TOO_MANY_REQUESTS",
                message=f"The {interval} quota for this method is exhausted",
                payload=QuotaPayload(interval=interval),
            )
        return None

    def corrupt(self, body: bytes) -> bytes | None:
        """A truncated copy of `body` for a malformed answer, or None."""
        if len(body) < 2 or not self._happens(self.settings.malformed_probability):
            return None
        return body[: self._rng.randint(1, len(body) - 1)]

    def mix_junk(
        self, items: list[bytes], exists: Callable[[str], bool], now_us: int
    ) -> list[bytes]:
        """`items` with junk objects inserted, if this page gets junk.

        Junk never goes last when real items exist, so a client that pages on the
        last real item's key is not thrown off course by it.
        """
        if not self._happens(self.settings.junk_probability):
            return items
        mixed = list(items)
        for _ in range(self.settings.junk_items_per_page):
            junk = self._junk_item(exists, now_us)
            mixed.insert(self._rng.randint(0, max(0, len(mixed) - 1)), junk)
        return mixed

    def visibility(self, now_us: int) -> Visible | None:
        """A predicate hiding late and vanished rows from search, or None if none."""
        hidden = self.settings.hidden_probability
        late = self.settings.late_visibility_probability
        if hidden <= 0.0 and late <= 0.0:
            return None
        delay_us = seconds_to_us(self.settings.late_visibility_delay_seconds)

        def visible(op: SimOperation) -> bool:
            if op.hidden_draw < hidden:
                return False
            return not (op.late_draw < late and now_us < op.submitted_us + delay_us)

        return visible

    def huge_details(self, op: SimOperation) -> msgspec.Raw | None:
        """Oversized `details` to serve for a finished operation chosen for them."""
        if not op.is_finished or op.huge_draw >= self.settings.huge_details_probability:
            return None
        size = self.settings.huge_details_bytes
        if size not in self._huge_cache:
            self._huge_cache = {size: _huge_details(size)}
        return self._huge_cache[size]

    def _happens(self, probability: float) -> bool:
        return probability > 0.0 and self._rng.random() < probability

    def _junk_item(self, exists: Callable[[str], bool], now_us: int) -> bytes:
        kind = self._rng.choice(_JUNK_KINDS)
        op_id = f"{self._rng.getrandbits(96):024x}"
        while exists(op_id):
            op_id = f"{self._rng.getrandbits(96):024x}"
        now = format_wire_time(now_us)
        item = JunkItem(
            id=op_id, type="POOL.OPEN", status="SUCCESS", submitted=now, started=now
        )
        item.finished = now
        if kind == "missing_id":
            item.id = None
        elif kind == "missing_type":
            item.type = None
        elif kind == "bad_datetime":
            item.submitted = "2021-02-30T25:61:00.000"
        elif kind == "progress_250":
            item.status, item.finished, item.progress = "RUNNING", None, 250
        else:
            item.finished = format_wire_time(now_us - _DAY_US)
        return self._encoder.encode(item)


def _too_many(retry_after: str | None = None) -> RequestFault:
    return RequestFault(
        status=429,
        code="TOO_MANY_REQUESTS",
        message="Too many requests",
        retry_after=retry_after,
    )


def _header_seconds(seconds: float) -> str:
    """`Retry-After` takes whole seconds; round up so no client waits too little."""
    whole = int(seconds)
    return str(whole if whole == seconds else whole + 1)


def _huge_details(size: int) -> msgspec.Raw:
    """A `details` object of at least `size` bytes: a long list of item errors."""
    entry = (
        b'{"index":%d,"code":"VALUE_REQUIRED",'
        b'"message":"Value must be present and not equal to null"}'
    )
    parts: list[bytes] = []
    length = 0
    while length < size:
        part = entry % len(parts)
        parts.append(part)
        length += len(part) + 1
    return msgspec.Raw(b'{"errors":[' + b",".join(parts) + b"]}")
