"""The published contract, generated from the code: event JSON Schema and AsyncAPI.

`schemas/` in the repository holds the output of `contract_files()`; a test fails when
the two differ, so the documents never drift from the Structs that produce the events.
"""

import json
from typing import Any

from bridge import __version__
from bridge.events import (
    CONTENT_TYPE,
    DATA_SCHEMA,
    SCHEMA_VERSION,
    SPEC_VERSION,
    TYPE_PREFIX,
    event_schema,
)

EVENT_SCHEMA_FILE = f"operation-event.v{SCHEMA_VERSION}.schema.json"
ASYNCAPI_FILE = "asyncapi.json"
EVENTS_CHANNEL = "toloka.operations.events"

_HEADER_DESCRIPTIONS = {
    "ce_specversion": f"CloudEvents version, always {SPEC_VERSION!r}",
    "ce_id": "the event_id; equal ids are the same event",
    "ce_source": "urn:toloka-bridge:<environment>:<account>",
    "ce_type": f"{TYPE_PREFIX}.<kind>.v{SCHEMA_VERSION}",
    "ce_subject": "the Toloka operation id",
    "ce_time": "occurred_at, RFC 3339 UTC",
    "ce_dataschema": DATA_SCHEMA,
    "ce_partitionkey": "the Toloka operation id, also the record key",
    "content-type": CONTENT_TYPE,
}


def asyncapi_document() -> dict[str, Any]:
    """An AsyncAPI 3.0 description of the events topic."""
    schema = event_schema()
    definitions = schema.pop("$defs")
    payload = _rebase(definitions["OperationEvent"], "#/components/schemas/")
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "toloka-bridge events",
            "version": __version__,
            "description": (
                "Every status change and progress step of a Toloka account's "
                "asynchronous operations, one Kafka record per event, keyed by "
                "operation id, CloudEvents 1.0 binary mode. Read with "
                "isolation_level=read_committed."
            ),
        },
        "channels": {
            "operationEvents": {
                "address": EVENTS_CHANNEL,
                "description": "Configurable as kafka.events_topic.",
                "messages": {"operationEvent": {"$ref": "#/components/messages/event"}},
            }
        },
        "operations": {
            "receiveOperationEvents": {
                "action": "receive",
                "channel": {"$ref": "#/channels/operationEvents"},
            }
        },
        "components": {
            "messages": {
                "event": {
                    "contentType": CONTENT_TYPE,
                    "headers": _headers_schema(),
                    "payload": {"$ref": "#/components/schemas/OperationEvent"},
                    "bindings": {
                        "kafka": {"key": {"type": "string"}, "bindingVersion": "0.5.0"}
                    },
                }
            },
            "schemas": {
                "OperationEvent": payload,
                **{
                    name: _rebase(value, "#/components/schemas/")
                    for name, value in definitions.items()
                    if name != "OperationEvent"
                },
            },
        },
    }


def contract_files() -> dict[str, str]:
    """File name -> content of everything that belongs in `schemas/`."""
    return {
        EVENT_SCHEMA_FILE: _dump(_with_schema_id(event_schema())),
        ASYNCAPI_FILE: _dump(asyncapi_document()),
    }


def _with_schema_id(schema: dict[str, Any]) -> dict[str, Any]:
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": DATA_SCHEMA,
        **schema,
    }


def _headers_schema() -> dict[str, Any]:
    return {
        "type": "object",
        "required": sorted(_HEADER_DESCRIPTIONS),
        "properties": {
            name: {"type": "string", "description": text}
            for name, text in _HEADER_DESCRIPTIONS.items()
        },
    }


def _rebase(node: Any, prefix: str) -> Any:
    """Point `#/$defs/X` references at another place in the document."""
    if isinstance(node, dict):
        return {
            key: (
                value.replace("#/$defs/", prefix)
                if key == "$ref" and isinstance(value, str)
                else _rebase(value, prefix)
            )
            for key, value in node.items()
        }
    if isinstance(node, list):
        return [_rebase(item, prefix) for item in node]
    return node


def _dump(document: dict[str, Any]) -> str:
    return json.dumps(document, indent=2, sort_keys=False) + "\n"
