"""Run the simulator in-process: `async with run_simulator(settings) as sim:`.

The context manager builds the world, pre-populates it, serves the Toloka API and the
control API on `host:port` (port 0 picks a free one), ticks the engine as an asyncio
task, and tears everything down on exit. `sim.base_url` ends in `/api`, ready for any
Toloka client; `sim.world`, `sim.engine` and `sim.faults` are there for scripting.
"""

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from pathlib import Path

from aiohttp import web

from bridge.simulator.clock import Clock, ManualClock, SystemClock
from bridge.simulator.control import add_control_routes
from bridge.simulator.faults import FaultInjector
from bridge.simulator.lifecycle import Engine
from bridge.simulator.server import STATE, ApiState, RequestStats, Sleep, add_api_routes
from bridge.simulator.settings import SimulatorSettings, check_settings
from bridge.simulator.truth import TruthLog
from bridge.simulator.world import World

log = logging.getLogger(__name__)

DEFAULT_TOKEN = "sim-token"  # the documented token for local demos, not a secret


class Simulator:
    """A running simulator: its URLs and the objects behind them."""

    def __init__(self, state: ApiState, root_url: str) -> None:
        self._state = state
        self.root_url = root_url
        self.base_url = f"{root_url}/api"
        self.control_url = f"{root_url}/_sim"

    @property
    def world(self) -> World:
        """Every operation and the ground truth."""
        return self._state.world

    @property
    def engine(self) -> Engine:
        """The load generator and transition scheduler."""
        return self._state.engine

    @property
    def faults(self) -> FaultInjector:
        """The fault injector; assign `sim.faults.settings` to change faults."""
        return self._state.faults

    @property
    def stats(self) -> RequestStats:
        """API request counts by endpoint and status."""
        return self._state.stats

    @property
    def truth(self) -> TruthLog:
        """The ground truth of every transition."""
        return self._state.world.truth

    def advance(self, seconds: float) -> int:
        """Move a manual clock forward and apply what fell due; return how many."""
        clock = self._state.clock
        if not isinstance(clock, ManualClock):
            raise TypeError("advance() needs run_simulator(clock=ManualClock(...))")
        clock.advance(seconds)
        return self._state.engine.step()


@contextlib.asynccontextmanager
async def run_simulator(
    settings: SimulatorSettings | None = None,
    *,
    token: str = DEFAULT_TOKEN,
    clock: Clock | None = None,
    port: int = 0,
    run_engine: bool = True,
    sleep: Sleep = asyncio.sleep,
) -> AsyncIterator[Simulator]:
    """Serve a simulator until the block exits.

    `clock` defaults to the wall clock; pass a `ManualClock` and `run_engine=False`
    to drive time by hand with `sim.advance()`. `sleep` is what slow-answer faults
    await (tests pass a recorder). The server binds `settings.server.host`.
    """
    settings = check_settings(settings or SimulatorSettings())
    state = _build_state(settings, token, clock or SystemClock(), sleep)
    app = web.Application()
    app[STATE] = state
    add_api_routes(app)
    add_control_routes(app)

    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    ticker: asyncio.Task[None] | None = None
    try:
        site = web.TCPSite(runner, settings.server.host, port)
        await site.start()
        host, bound_port = runner.addresses[0][:2]
        simulator = Simulator(state, f"http://{host}:{bound_port}")
        if run_engine:
            ticker = asyncio.create_task(state.engine.run(sleep))
            ticker.add_done_callback(_report_crash)
        log.info("simulator serving on %s", simulator.base_url)
        yield simulator
    finally:
        await _stop(ticker)
        await runner.cleanup()
        state.world.truth.close()


def _build_state(
    settings: SimulatorSettings, token: str, clock: Clock, sleep: Sleep
) -> ApiState:
    truth_path = Path(settings.truth_path) if settings.truth_path else None
    world = World(
        TruthLog(truth_path), settings.seed, settings.load.odd_precision_ratio
    )
    engine = Engine(world, settings.load, settings.seed, clock)
    engine.populate()
    faults = FaultInjector(settings.faults, settings.seed)
    return ApiState(
        settings=settings.server,
        world=world,
        engine=engine,
        faults=faults,
        clock=clock,
        token=token,
        sleep=sleep,
    )


async def _stop(ticker: asyncio.Task[None] | None) -> None:
    """Cancel the engine task; re-raise anything it died of."""
    if ticker is None:
        return
    ticker.cancel()
    await asyncio.wait([ticker])
    if not ticker.cancelled() and ticker.exception() is not None:
        ticker.result()


def _report_crash(ticker: asyncio.Task[None]) -> None:
    if not ticker.cancelled() and ticker.exception() is not None:
        log.error("simulator engine stopped", exc_info=ticker.exception())
