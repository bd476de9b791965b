"""The control API under `/_sim/` (no auth): script the simulator from tests.

    POST   /_sim/operations                    create operations (CreateOperations)
    GET    /_sim/operations/{id}               an operation as stored, without faults
    POST   /_sim/operations/{id}/transition    move one step (Transition)
    GET    /_sim/truth?offset=&limit=&operation_id=   the ground truth (TruthPage)
    GET    /_sim/faults    PUT /_sim/faults     read / replace FaultSettings
    GET    /_sim/load      POST /_sim/load      read / change the load (LoadChange)
    GET    /_sim/stats     DELETE /_sim/stats   request counts; DELETE also resets them

Bodies are msgspec Structs that reject unknown fields; errors use Toloka's envelope.
"""

from typing import Annotated, TypeVar

import msgspec
from aiohttp import web

from bridge.simulator.envelope import error_response, validation_error
from bridge.simulator.lifecycle import ControlError
from bridge.simulator.model import encode_operation
from bridge.simulator.server import STATE, ApiState, Handler
from bridge.simulator.settings import FaultSettings
from bridge.simulator.truth import TruthRecord

_Body = TypeVar("_Body", bound=msgspec.Struct)
_encoder = msgspec.json.Encoder()


class CreateOperations(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Create `count` PENDING operations of `type`.

    `id` (only with count 1) picks the id; `submitted` (a wire datetime, not in the
    future) is shared by all of them; `scheduled` hands them to the engine, which
    then moves them at random like the generated load.
    """

    type: str
    count: Annotated[int, msgspec.Meta(ge=1, le=1_000_000)] = 1
    id: str | None = None
    submitted: str | None = None
    scheduled: bool = False


class CreatedOperations(msgspec.Struct):
    """The operations just created, in wire form."""

    operations: list[msgspec.Raw]


class Transition(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Move an operation to `status` and/or set its `progress`."""

    status: str | None = None
    progress: int | None = None


class LoadChange(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Pause/resume arrivals or transitions, or change the arrival rate."""

    paused: bool | None = None
    transitions_paused: bool | None = None
    rate_per_second: float | None = None


class TruthPage(msgspec.Struct):
    """A slice of the ground truth."""

    records: list[TruthRecord]
    total: int
    offset: int


class RequestCount(msgspec.Struct):
    """How many API requests to one endpoint got one status code."""

    endpoint: str
    status: int
    count: int


class StatsSnapshot(msgspec.Struct):
    """Request counts and the size of the simulated world."""

    requests: list[RequestCount]
    total_requests: int
    operations: int
    operations_by_status: dict[str, int]
    truth_records: int


def add_control_routes(app: web.Application) -> None:
    """Register the `/_sim/` endpoints."""
    app.middlewares.append(control_middleware)
    router = app.router
    router.add_post("/_sim/operations", create_operations)
    router.add_get("/_sim/operations/{operation_id}", show_operation)
    router.add_post("/_sim/operations/{operation_id}/transition", transition)
    router.add_get("/_sim/truth", read_truth)
    router.add_get("/_sim/faults", read_faults)
    router.add_put("/_sim/faults", replace_faults)
    router.add_get("/_sim/load", read_load)
    router.add_post("/_sim/load", change_load)
    router.add_get("/_sim/stats", read_stats)
    router.add_delete("/_sim/stats", reset_stats)


async def create_operations(request: web.Request) -> web.Response:
    """Create operations on request."""
    state = request.app[STATE]
    body = await _decode(request, CreateOperations)
    ops = state.engine.create(
        body.type, body.count, body.id, body.submitted, body.scheduled
    )
    wire = [msgspec.Raw(encode_operation(op)) for op in ops]
    return _json(CreatedOperations(wire), status=201)


async def show_operation(request: web.Request) -> web.Response:
    """An operation exactly as stored (no faults applied)."""
    op = request.app[STATE].world.get(request.match_info["operation_id"])
    if op is None:
        return error_response(404, "DOES_NOT_EXIST", "Operation does not exist")
    return web.Response(body=encode_operation(op), content_type="application/json")


async def transition(request: web.Request) -> web.Response:
    """Move one operation one step, or change its progress."""
    state = request.app[STATE]
    body = await _decode(request, Transition)
    op_id = request.match_info["operation_id"]
    op = state.engine.control_transition(op_id, body.status, body.progress)
    return web.Response(body=encode_operation(op), content_type="application/json")


async def read_truth(request: web.Request) -> web.Response:
    """The ground truth, optionally from an offset, limited, or for one operation."""
    state = request.app[STATE]
    try:
        offset = int(request.query.get("offset", "0"))
        limit = int(request.query.get("limit", "0")) or None
    except ValueError:
        return validation_error("offset", "INTEGER_EXPECTED", "offset/limit: integers")

    records = state.world.truth.records
    wanted = request.query.get("operation_id")
    if wanted is not None:
        records = [r for r in records if r.operation_id == wanted]
    end = None if limit is None else offset + limit
    return _json(TruthPage(records[offset:end], len(records), offset))


async def read_faults(request: web.Request) -> web.Response:
    """The fault settings in force."""
    return _json(request.app[STATE].faults.settings)


async def replace_faults(request: web.Request) -> web.Response:
    """Replace every fault setting (omitted fields take their defaults)."""
    state = request.app[STATE]
    state.faults.settings = await _decode(request, FaultSettings)
    return _json(state.faults.settings)


async def read_load(request: web.Request) -> web.Response:
    """Whether the random load runs, and how fast."""
    return _json(request.app[STATE].engine.load_state())


async def change_load(request: web.Request) -> web.Response:
    """Pause or resume the random load, or change its rate."""
    state = request.app[STATE]
    body = await _decode(request, LoadChange)
    load = state.engine.set_load(
        body.paused, body.transitions_paused, body.rate_per_second
    )
    return _json(load)


async def read_stats(request: web.Request) -> web.Response:
    """Request counts by endpoint and status, and the world's size."""
    return _json(_snapshot(request.app[STATE]))


async def reset_stats(request: web.Request) -> web.Response:
    """Return the request counts, then set them back to zero."""
    state = request.app[STATE]
    snapshot = _snapshot(state)
    state.stats.reset()
    return _json(snapshot)


def _snapshot(state: ApiState) -> StatsSnapshot:
    counts = [
        RequestCount(endpoint, status, count)
        for (endpoint, status), count in sorted(state.stats.counts.items())
    ]
    return StatsSnapshot(
        requests=counts,
        total_requests=sum(state.stats.counts.values()),
        operations=len(state.world),
        operations_by_status=state.world.index.counts_by_status(),
        truth_records=len(state.world.truth),
    )


class _BodyError(ValueError):
    """A control request body that does not decode into its Struct."""


async def _decode(request: web.Request, body_type: type[_Body]) -> _Body:
    try:
        return msgspec.json.decode(await request.read(), type=body_type)
    except (msgspec.ValidationError, msgspec.DecodeError) as error:
        raise _BodyError(str(error)) from error


@web.middleware
async def control_middleware(
    request: web.Request, handler: Handler
) -> web.StreamResponse:
    """Turn bad bodies and refused control actions into error envelopes."""
    try:
        return await handler(request)
    except _BodyError as error:
        return validation_error("body", "INVALID_VALUE", str(error))
    except ControlError as error:
        return error_response(error.status, error.code, error.message)


def _json(value: msgspec.Struct, status: int = 200) -> web.Response:
    return web.Response(
        body=_encoder.encode(value), status=status, content_type="application/json"
    )
