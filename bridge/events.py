"""The event contract: what every consumer of the events topic reads.

Each record's value is one `OperationEvent` as JSON. Its headers follow the CloudEvents
1.0 Kafka binding in binary mode (`ce_*` attributes, `content-type`), so a consumer can
route on `ce_type` or `ce_subject` without parsing the value. The record key is the
operation id, which keeps one operation's events in one partition, in order.

`event_id` is `<operation id>:<sequence>`: deterministic, so a consumer that sees the
same id twice (possible only in the at-least-once mode) can drop the second copy; both
copies carry the same change (`bridge.state` explains how restarts keep it so).
"""

from datetime import datetime
from typing import Annotated, Any, Literal

import msgspec

from bridge.operation import WireOperation

SPEC_VERSION = "1.0"
TYPE_PREFIX = "org.tolokabridge.operation"
SCHEMA_VERSION = 1
DATA_SCHEMA = f"urn:toloka-bridge:schema:operation-event:v{SCHEMA_VERSION}"
CONTENT_TYPE = "application/json"

EventKind = Literal[
    "created", "started", "succeeded", "failed", "status_changed", "progressed"
]
ScanName = Literal["discover", "refresh", "sweep", "lookup"]


class EventSource(msgspec.Struct, frozen=True, kw_only=True):
    """Which Toloka account an event describes, and who published it."""

    environment: str
    account: str
    bridge_version: str

    @property
    def uri(self) -> str:
        """The CloudEvents `source`: one per Toloka environment and account."""
        return f"urn:toloka-bridge:{self.environment}:{self.account}"


class OperationEvent(msgspec.Struct, frozen=True, kw_only=True):
    """One change of one Toloka operation: a status transition or a progress step."""

    event_id: Annotated[
        str,
        msgspec.Meta(description="`<operation_id>:<sequence>`; the deduplication key"),
    ]
    kind: Annotated[
        EventKind,
        msgspec.Meta(description="what happened; also the middle of `ce_type`"),
    ]
    sequence: Annotated[
        int, msgspec.Meta(description="1, 2, 3, ... per operation, without gaps", ge=1)
    ]
    operation_id: Annotated[
        str, msgspec.Meta(description="Toloka's operation id; also the record key")
    ]
    operation_type: Annotated[
        str, msgspec.Meta(description="Toloka's `type`, e.g. POOL.OPEN; may be new")
    ]
    previous_status: Annotated[
        str | None, msgspec.Meta(description="null when the operation is first seen")
    ]
    status: Annotated[
        str,
        msgspec.Meta(description="PENDING, RUNNING, SUCCESS, FAIL or a newer status"),
    ]
    previous_progress: Annotated[
        int | None, msgspec.Meta(description="percent before this change")
    ]
    progress: Annotated[
        int | None, msgspec.Meta(description="percent, as Toloka reports it")
    ]
    occurred_at: Annotated[
        datetime,
        msgspec.Meta(
            description="when it happened, by the operation's own clock", tz=True
        ),
    ]
    observed_at: Annotated[
        datetime, msgspec.Meta(description="when the bridge saw it", tz=True)
    ]
    inferred: Annotated[
        bool,
        msgspec.Meta(description="true when implied by timestamps, not seen directly"),
    ]
    initial_load: Annotated[
        bool, msgspec.Meta(description="first seen during the bridge's cold start")
    ]
    seen_by: Annotated[
        ScanName,
        msgspec.Meta(description="which scan of the poll cycle saw the change"),
    ]
    operation: Annotated[
        msgspec.Raw,
        msgspec.Meta(description="the operation exactly as Toloka returned it"),
    ]
    operation_truncated: Annotated[
        bool, msgspec.Meta(description="true when oversized details were dropped")
    ]
    source: EventSource

    @property
    def ce_type(self) -> str:
        return f"{TYPE_PREFIX}.{self.kind}.v{SCHEMA_VERSION}"


class OperationDocument(WireOperation, kw_only=True):
    """The operation as Toloka returned it; used only to describe `operation`."""

    parameters: dict[str, Any] | None = None
    details: Any = None


_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(OperationEvent)
_document_decoder = msgspec.json.Decoder(dict[str, Any])


def event_id(operation_id: str, sequence: int) -> str:
    return f"{operation_id}:{sequence}"


def kind_of(previous_status: str | None, status: str) -> EventKind:
    """The event kind of a transition into `status`."""
    if previous_status is None:
        return "created"
    return _KIND_BY_TARGET.get(status, "status_changed")


def encode_event(event: OperationEvent) -> bytes:
    return _encoder.encode(event)


def decode_event(value: bytes) -> OperationEvent:
    return _decoder.decode(value)


def event_headers(event: OperationEvent) -> list[tuple[str, bytes]]:
    """CloudEvents attributes as Kafka headers (binary content mode)."""
    attributes = [
        ("ce_specversion", SPEC_VERSION),
        ("ce_id", event.event_id),
        ("ce_source", event.source.uri),
        ("ce_type", event.ce_type),
        ("ce_subject", event.operation_id),
        ("ce_time", _rfc3339(event.occurred_at)),
        ("ce_dataschema", DATA_SCHEMA),
        ("ce_partitionkey", event.operation_id),
        ("content-type", CONTENT_TYPE),
    ]
    return [(name, value.encode()) for name, value in attributes]


def fit_operation(raw: msgspec.Raw, max_bytes: int) -> tuple[msgspec.Raw, bool]:
    """Fit an operation into `max_bytes` by dropping `details`, then `parameters`."""
    if len(raw) <= max_bytes:
        return raw, False

    document = _document_decoder.decode(raw)
    for field in ("details", "parameters"):
        document.pop(field, None)
        trimmed = _encoder.encode(document)
        if len(trimmed) <= max_bytes:
            break
    return msgspec.Raw(trimmed), True


def event_schema() -> dict[str, Any]:
    """JSON Schema of the event value, with `operation` described as Toloka's object."""
    schema: dict[str, Any] = msgspec.json.schema(OperationEvent)
    definitions = schema["$defs"]
    definitions.update(msgspec.json.schema(OperationDocument)["$defs"])
    event = definitions["OperationEvent"]
    operation = event["properties"]["operation"]
    operation["$ref"] = "#/$defs/OperationDocument"
    event["description"] = (
        f"{OperationEvent.__doc__} Schema version {SCHEMA_VERSION} ({DATA_SCHEMA})."
    )
    return schema


def _rfc3339(moment: datetime) -> str:
    return moment.isoformat(timespec="microseconds").replace("+00:00", "Z")


_KIND_BY_TARGET: dict[str, EventKind] = {
    "RUNNING": "started",
    "SUCCESS": "succeeded",
    "FAIL": "failed",
}
