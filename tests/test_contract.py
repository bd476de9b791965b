"""The published contract: schemas/ matches the code, and real events match schemas/."""

import json
from datetime import UTC, datetime
from pathlib import Path

import jsonschema
import msgspec

from bridge.contract import ASYNCAPI_FILE, EVENT_SCHEMA_FILE, contract_files
from bridge.detector import DetectionContext, detect
from bridge.events import EventSource, encode_event, event_headers
from bridge.operation import ItemRules, decode_item

SCHEMAS = Path(__file__).resolve().parent.parent / "schemas"
NOW = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)


def test_schemas_directory_matches_the_code() -> None:
    """`make schemas` output is committed; a Struct change without it fails here."""
    for name, text in contract_files().items():
        committed = (SCHEMAS / name).read_text()
        assert committed == text, f"schemas/{name} is stale: run `make schemas`"


def test_encoded_events_validate_against_the_committed_schema() -> None:
    """A first sight of a finished operation: every event of it is valid."""
    schema = json.loads((SCHEMAS / EVENT_SCHEMA_FILE).read_text())
    raw = (
        b'{"id":"op-9","type":"TASK.BATCH_CREATE","status":"SUCCESS",'
        b'"submitted":"2026-12-03T11:00:00.5","started":"2026-12-03T11:00:01",'
        b'"finished":"2026-12-03T11:00:09.120","progress":100,'
        b'"parameters":{"open_pool":true},"details":{"total_count":2}}'
    )
    observation = decode_item(raw, NOW, ItemRules())
    source = EventSource(environment="production", account="acme", bridge_version="1")
    context = DetectionContext(observed_at=NOW, seen_by="sweep", source=source)
    events = detect(None, observation, context).events

    assert len(events) == 3
    for event in events:
        jsonschema.validate(json.loads(encode_event(event)), schema)


def test_headers_follow_the_cloudevents_kafka_binding() -> None:
    """Binary mode: ce_* headers, content-type, ce_id = event_id, ce_subject = id."""
    raw = (
        b'{"id":"op-1","type":"POOL.OPEN","status":"PENDING",'
        b'"submitted":"2026-12-03T11:00:00"}'
    )
    observation = decode_item(raw, NOW, ItemRules())
    source = EventSource(environment="sandbox", account="acme", bridge_version="1")
    context = DetectionContext(observed_at=NOW, seen_by="discover", source=source)
    event = detect(None, observation, context).events[0]

    headers = {name: value.decode() for name, value in event_headers(event)}
    assert headers["ce_specversion"] == "1.0"
    assert headers["ce_id"] == event.event_id == "op-1:1"
    assert headers["ce_subject"] == "op-1"
    assert headers["ce_type"] == "org.tolokabridge.operation.created.v1"
    assert headers["ce_source"] == "urn:toloka-bridge:sandbox:acme"
    assert headers["ce_time"] == "2026-12-03T11:00:00.000000Z"
    assert headers["content-type"] == "application/json"


def test_asyncapi_document_references_resolve() -> None:
    """Every $ref in the AsyncAPI file points at something inside it."""
    document = json.loads((SCHEMAS / ASYNCAPI_FILE).read_text())
    references: list[str] = []

    def collect(node: object) -> None:
        if isinstance(node, dict):
            references.extend(v for k, v in node.items() if k == "$ref")
            for value in node.values():
                collect(value)
        elif isinstance(node, list):
            for value in node:
                collect(value)

    collect(document)
    assert references
    for reference in references:
        target: object = document
        for part in reference.removeprefix("#/").split("/"):
            assert isinstance(target, dict)
            target = target[part]
        assert target is not None


def test_event_value_round_trips_through_json() -> None:
    """Consumers can decode the value with any JSON parser; msgspec round-trips it."""
    raw = b'{"id":"x","type":"T","status":"RUNNING","submitted":"2026-12-03T11:00:00"}'
    source = EventSource(environment="e", account="a", bridge_version="1")
    context = DetectionContext(observed_at=NOW, seen_by="refresh", source=source)
    event = detect(None, decode_item(raw, NOW, ItemRules()), context).events[-1]

    decoded = msgspec.json.decode(encode_event(event))
    assert decoded["operation"] == {
        "id": "x",
        "type": "T",
        "status": "RUNNING",
        "submitted": "2026-12-03T11:00:00",
    }
    assert decoded["occurred_at"] == "2026-12-03T12:00:00Z"
