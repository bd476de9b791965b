"""The Toloka API: `/api/v1/operations`, `/api/v1/operations/{id}` and `.../log`.

Every request under `/api/` passes through one middleware, in this order: count it
(by endpoint and final status code), maybe stall it (slow fault), maybe answer with
an injected error (5xx, 429), check the `Authorization` header, run the handler,
maybe truncate the body (malformed fault). Errors use Toloka's envelope.
"""

import asyncio
import hmac
import logging
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from aiohttp import web

from bridge.simulator import catalog
from bridge.simulator.clock import Clock
from bridge.simulator.envelope import error_response, validation_error
from bridge.simulator.faults import FaultInjector
from bridge.simulator.lifecycle import Engine
from bridge.simulator.model import (
    SimOperation,
    encode_operation,
    encode_page,
    encode_with_details,
)
from bridge.simulator.query import run_search
from bridge.simulator.searchparams import QueryError, parse_search_params
from bridge.simulator.settings import ServerSettings
from bridge.simulator.world import World

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
Sleep = Callable[[float], Awaitable[None]]


class RequestStats:
    """API requests counted by endpoint name and HTTP status code."""

    def __init__(self) -> None:
        self.counts: Counter[tuple[str, int]] = Counter()

    def record(self, endpoint: str, status: int) -> None:
        """Count one answered request."""
        self.counts[endpoint, status] += 1

    def reset(self) -> None:
        """Forget every count."""
        self.counts.clear()


@dataclass
class ApiState:
    """What the handlers work with; one per running simulator."""

    settings: ServerSettings
    world: World
    engine: Engine
    faults: FaultInjector
    clock: Clock
    token: str = field(repr=False)
    stats: RequestStats = field(default_factory=RequestStats)
    sleep: Sleep = asyncio.sleep


STATE = web.AppKey("simulator_state", ApiState)


def add_api_routes(app: web.Application) -> None:
    """Register the Toloka endpoints and the middleware that guards them."""
    app.middlewares.append(api_middleware)
    app.router.add_get("/api/v1/operations", search_operations, name="search")
    app.router.add_get("/api/v1/operations/{operation_id}", get_operation, name="get")
    app.router.add_get(
        "/api/v1/operations/{operation_id}/log", get_operation_log, name="log"
    )


@web.middleware
async def api_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Stats, faults, auth and error envelopes for everything under `/api/`."""
    if not request.path.startswith("/api/"):
        return await handler(request)

    state = request.app[STATE]
    response = await _serve(request, handler, state)
    route_name = request.match_info.route.name
    state.stats.record(route_name or "unknown", response.status)
    return response


async def search_operations(request: web.Request) -> web.Response:
    """`GET /v1/operations`: one page of the matching operations."""
    state = request.app[STATE]
    try:
        query = parse_search_params(
            request.query.items(),
            default_limit=state.settings.default_limit,
            max_limit=state.settings.max_limit,
            reject_unknown=state.settings.reject_unknown_params,
        )
    except QueryError as error:
        return validation_error(error.field, error.code, error.message)

    now_us = state.clock.now_us()
    result = run_search(state.world.index, query, state.faults.visibility(now_us))
    items = [_encode(op, state.faults) for op in result.operations]
    exists = state.world.index.operations.__contains__
    items = state.faults.mix_junk(items, exists, now_us)
    return _json(encode_page(items, result.has_more))


async def get_operation(request: web.Request) -> web.Response:
    """`GET /v1/operations/{id}`: one operation."""
    state = request.app[STATE]
    op = state.world.get(request.match_info["operation_id"])
    if op is None:
        return _does_not_exist()
    return _json(_encode(op, state.faults))


async def get_operation_log(request: web.Request) -> web.Response:
    """`GET /v1/operations/{id}/log`: the per-item log of a batch operation."""
    state = request.app[STATE]
    op = state.world.get(request.match_info["operation_id"])
    if op is None:
        return _does_not_exist()
    return _json(catalog.log_for(op.type, op.content_seed, op.status, op.progress))


async def _serve(
    request: web.Request, handler: Handler, state: ApiState
) -> web.StreamResponse:
    delay_seconds = state.faults.delay_seconds()
    if delay_seconds > 0:
        await state.sleep(delay_seconds)

    fault = state.faults.request_fault()
    if fault is not None:
        headers = {"Retry-After": fault.retry_after} if fault.retry_after else None
        return error_response(
            fault.status, fault.code, fault.message, fault.payload, headers
        )

    refusal = _authentication_problem(request, state)
    if refusal is not None:
        return error_response(401, "AUTHENTICATION_ERROR", refusal)

    try:
        response = await handler(request)
    except web.HTTPException as error:
        return _http_error(error)
    return _maybe_corrupt(response, state.faults)


def _authentication_problem(request: web.Request, state: ApiState) -> str | None:
    """Why the request's credentials are refused, or None when they are good.

    The messages never repeat any part of the header, which may hold a secret.
    """
    header = request.headers.get("Authorization")
    schemes = " or ".join(
        f"'{scheme} <token>'" for scheme in state.settings.auth_schemes
    )
    if not header:
        return f"Authorization header is missing; expected {schemes}"

    scheme, _, credentials = header.strip().partition(" ")
    if scheme not in state.settings.auth_schemes:
        return f"Authorization scheme is not accepted; expected {schemes}"
    if not hmac.compare_digest(credentials.strip().encode(), state.token.encode()):
        return "The API key or OAuth token is not valid"
    return None


def _http_error(error: web.HTTPException) -> web.Response:
    if error.status == 404:
        return error_response(404, "DOES_NOT_EXIST", "No such resource")
    if error.status == 405:
        return error_response(405, "VALIDATION_ERROR", "Method not allowed")
    return error_response(error.status, "INTERNAL_ERROR", error.reason)


def _maybe_corrupt(
    response: web.StreamResponse, faults: FaultInjector
) -> web.StreamResponse:
    if not isinstance(response, web.Response) or response.status != 200:
        return response
    body = response.body
    if not isinstance(body, bytes):
        return response
    truncated = faults.corrupt(body)
    if truncated is None:
        return response
    return _json(truncated)


def _encode(op: SimOperation, faults: FaultInjector) -> bytes:
    huge = faults.huge_details(op)
    if huge is None:
        return encode_operation(op)
    return encode_with_details(op, huge)


def _does_not_exist() -> web.Response:
    return error_response(404, "DOES_NOT_EXIST", "Operation does not exist")


def _json(body: bytes) -> web.Response:
    return web.Response(body=body, content_type="application/json")
