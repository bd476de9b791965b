"""A Toloka-compatible operations API that tests, benchmarks and demos run against.

In-process use::

    async with run_simulator(SimulatorSettings(seed=1)) as sim:
        client = httpx.AsyncClient(base_url=sim.base_url, headers=...)

From a shell: `toloka-bridge simulate` or `python -m bridge.simulator --port 0`.
"""

from bridge.simulator.clock import Clock, ManualClock, SystemClock
from bridge.simulator.runner import DEFAULT_TOKEN, Simulator, run_simulator
from bridge.simulator.settings import (
    FaultSettings,
    LoadSettings,
    ServerSettings,
    SimulatorSettings,
    load_settings,
)
from bridge.simulator.truth import TruthRecord, replay

__all__ = [
    "DEFAULT_TOKEN",
    "Clock",
    "FaultSettings",
    "LoadSettings",
    "ManualClock",
    "ServerSettings",
    "Simulator",
    "SimulatorSettings",
    "SystemClock",
    "TruthRecord",
    "load_settings",
    "replay",
    "run_simulator",
]
