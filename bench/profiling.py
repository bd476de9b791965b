"""One catch-up with the bridge under pyinstrument, to see where its CPU goes.

The bridge runs as `python -m pyinstrument -r pyisession -o FILE -m bridge run`
(statistical sampling, 1 ms), catches up over H finished operations, and is stopped
with SIGTERM once a consumer saw every event; it exits cleanly, so pyinstrument writes
the session. From the session this module writes the call tree as text and sums the
time per function: self time (where the interpreter actually was) and inclusive time
(counted once per stack even under recursion).
"""

import logging
import sys
import time
from collections import defaultdict
from pathlib import Path

from pyinstrument.frame import Frame
from pyinstrument.renderers import ConsoleRenderer
from pyinstrument.session import Session

from bench.catchup import traced
from bench.context import RunContext
from bench.results import ProfileSummary
from bench.services import SimulatorLoad, bridge_spec, start_bridge, start_simulator
from bench.watch import TopicWatcher

log = logging.getLogger(__name__)

Times = defaultdict[str, float]
PROFILE_TIMEOUT_SECONDS = 1800.0
TOP_FUNCTIONS = 25
INCLUSIVE_FLOOR = 0.002
"""Functions below this share of the whole profile are left out of the JSON."""
IDLE_FUNCTIONS = frozenset({"epoll.poll", "select", "poll", "kqueue.control"})


async def run_profile(context: RunContext, text_path: Path) -> ProfileSummary:
    history = context.profile.profile_history
    sim = await start_simulator(
        context.children, "sim-profile", SimulatorLoad(history=history)
    )
    try:
        expected = (await sim.stats()).truth_records
        overrides = {"TOLOKA_BRIDGE_POLL__START": "all"}
        spec = bridge_spec("profile", sim.base_url, context.bootstrap, overrides)
        await context.create_topic(spec.events_topic, spec.partitions)
        session_path = context.path("catchup.pyisession")
        wrapper = [
            sys.executable,
            "-m",
            "pyinstrument",
            "-i",
            "0.001",
            "-r",
            "pyisession",
            "-o",
            str(session_path),
        ]
        began = time.monotonic()
        watcher = TopicWatcher(context.bootstrap, spec.events_topic, spec.partitions)
        async with watcher:
            bridge = start_bridge(context.children, spec, wrapper)
            try:
                async with traced(bridge.child):
                    if not await watcher.wait_for_count(
                        expected, PROFILE_TIMEOUT_SECONDS
                    ):
                        raise RuntimeError("profiled bridge did not catch up in time")
            finally:
                await bridge.close()
                context.children.stop(bridge.child)
        seconds = time.monotonic() - began
    finally:
        await sim.close()
        context.children.stop(sim.child)

    return summarize(Session.load(str(session_path)), text_path, history, seconds)


def summarize(
    session: Session, text_path: Path, operations: int, seconds: float
) -> ProfileSummary:
    """Write the call tree; rank functions by self and by inclusive time."""
    tree = ConsoleRenderer(unicode=False, color=False, show_all=False)
    text_path.write_text(tree.render(session), encoding="utf-8")

    root = session.root_frame(trim_stem=False)
    total = root.time if root is not None else 0.0
    self_time: Times = defaultdict(float)
    inclusive: Times = defaultdict(float)
    by_package: Times = defaultdict(float)
    if root is not None:
        _walk(root, self_time, inclusive, frozenset())
        _walk_packages(root, by_package, "startup")
    return ProfileSummary(
        operations=operations,
        seconds=seconds,
        text_path=str(text_path),
        self_time=[(name, round(t, 3)) for name, t in _top(self_time, TOP_FUNCTIONS)],
        inclusive_time=[
            (name, round(t, 3))
            for name, t in _top(inclusive, len(inclusive))
            if t >= INCLUSIVE_FLOOR * total
        ],
        self_time_by_package=[
            (name, round(t, 3)) for name, t in _top(by_package, len(by_package))
        ],
    )


def _top(times: Times, count: int) -> list[tuple[str, float]]:
    ranked = sorted(times.items(), key=lambda item: item[1], reverse=True)
    return ranked[:count]


def _walk(
    frame: Frame,
    self_time: Times,
    inclusive: Times,
    above: frozenset[str],
) -> None:
    """Sum self time (synthetic `[self]` children count for their parent) and
    inclusive time (once per stack, so recursion is not counted twice)."""
    name = _name(frame)
    real = [child for child in frame.children if not child.is_synthetic]
    own = frame.time - sum(child.time for child in real)
    self_time[name] += max(own, 0.0)
    if name not in above:
        inclusive[name] += frame.time
    for child in real:
        _walk(child, self_time, inclusive, above | {name})


def _walk_packages(frame: Frame, by_package: Times, inherited: str) -> None:
    """Self time by the package whose code ran; built-ins count for their caller."""
    package = _package(frame, inherited)
    real = [child for child in frame.children if not child.is_synthetic]
    by_package[package] += max(frame.time - sum(child.time for child in real), 0.0)
    for child in real:
        _walk_packages(child, by_package, package)


def _package(frame: Frame, inherited: str) -> str:
    if frame.function in IDLE_FUNCTIONS:
        return "idle (waiting for I/O)"
    path = frame.file_path_short or ""
    if path.startswith("<frozen"):
        return "startup (imports)"
    if path.startswith("<"):
        return inherited
    return path.split("/")[0].removesuffix(".py")


def _name(frame: Frame) -> str:
    location = f"{frame.file_path_short}:{frame.line_no}"
    if frame.function in IDLE_FUNCTIONS:
        return f"{frame.function} (idle: waiting for I/O)"
    return f"{frame.function} {location}"
