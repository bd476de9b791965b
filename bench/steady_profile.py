"""The steady state under the profiler: where a poll cycle's CPU goes with N running.

The bridge runs under `bench.profiled_bridge`, which samples only between SIGUSR1 and
SIGUSR2. The initial load and a settling pause pass unprofiled; then the profiler runs
for the profile window, starting at the end of a poll cycle, while the bridge polls N
running operations every 2 s as in the steady-state benchmark.
"""

import asyncio
import logging
import os
import signal
import sys
import time

from pyinstrument.session import Session

from bench.context import RunContext
from bench.profiling import summarize
from bench.results import ProfileSummary
from bench.services import bridge_spec, metric_sum, start_bridge, start_simulator
from bench.steady import INITIAL_LOAD_TIMEOUT_SECONDS, cycle_boundary, steady_load

log = logging.getLogger(__name__)

SESSION_WRITE_SECONDS = 60.0


async def run_steady_profile(context: RunContext) -> ProfileSummary:
    profile = context.profile
    running = profile.profile_steady_size
    load = steady_load(running, profile.trickle_per_second)
    sim = await start_simulator(context.children, "sim-profile-steady", load)
    try:
        spec = bridge_spec("profile-steady", sim.base_url, context.bootstrap)
        session_path = context.path("steady.pyisession")
        argv = [sys.executable, "-m", "bench.profiled_bridge", str(session_path)]
        bridge = start_bridge(context.children, spec, argv=argv)
        try:
            await bridge.wait_ready(INITIAL_LOAD_TIMEOUT_SECONDS)
            await asyncio.sleep(profile.settle_seconds)
            first = await cycle_boundary(bridge)
            began = time.monotonic()
            os.kill(bridge.child.pid, signal.SIGUSR1)
            await asyncio.sleep(profile.profile_window_seconds)
            os.kill(bridge.child.pid, signal.SIGUSR2)
            seconds = time.monotonic() - began
            last = await bridge.metrics()
            await _wait_for_file(session_path)
        finally:
            await bridge.close()
            context.children.stop(bridge.child)
    finally:
        await sim.close()
        context.children.stop(sim.child)

    cycles = metric_sum(last, "toloka_bridge_polls_total") - metric_sum(
        first, "toloka_bridge_polls_total"
    )
    text_path = context.output_dir / "profile-steady.txt"
    summary = summarize(Session.load(str(session_path)), text_path, running, seconds)
    summary.kind = "steady"
    summary.cycles = int(cycles)
    return summary


async def _wait_for_file(path: os.PathLike[str]) -> None:
    deadline = time.monotonic() + SESSION_WRITE_SECONDS
    while not await asyncio.to_thread(os.path.exists, path):
        if time.monotonic() > deadline:
            raise RuntimeError(f"the profiler wrote no session to {path}")
        await asyncio.sleep(0.2)
    await asyncio.sleep(0.5)
