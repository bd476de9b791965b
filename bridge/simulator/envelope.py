"""Toloka's error envelope: `{"request_id", "code", "message", "payload"}`."""

import uuid

import msgspec
from aiohttp import web


class FieldProblem(msgspec.Struct):
    """Why one request field was rejected (the payload of a VALIDATION_ERROR)."""

    code: str
    message: str


class ErrorEnvelope(msgspec.Struct):
    """The body of every non-2xx answer."""

    request_id: str
    code: str
    message: str
    payload: msgspec.Struct | dict[str, FieldProblem] | None = None


_encoder = msgspec.json.Encoder()


def error_response(
    status: int,
    code: str,
    message: str,
    payload: msgspec.Struct | dict[str, FieldProblem] | None = None,
    headers: dict[str, str] | None = None,
) -> web.Response:
    """An error answer in Toloka's envelope."""
    envelope = ErrorEnvelope(uuid.uuid4().hex, code, message, payload)
    return web.Response(
        status=status,
        body=_encoder.encode(envelope),
        content_type="application/json",
        headers=headers,
    )


def validation_error(field: str, code: str, message: str) -> web.Response:
    """A 400 VALIDATION_ERROR naming the bad field in its payload."""
    payload = {field: FieldProblem(code, message)}
    return error_response(400, "VALIDATION_ERROR", message, payload)
