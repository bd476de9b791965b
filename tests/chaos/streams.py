"""Ending a run and judging it: let every operation finish, wait for Kafka, compare.

A scenario pauses the simulator's arrivals, waits until every operation it made has
finished, waits until the events topic holds at least as many distinct transitions as
the truth (or the time is up), and then judges the stream with
`tests.bridge_harness.judge`.
Operations a scenario declares undiscoverable (hidden from every search for their
whole life) are left out of the truth, and counted separately, only if nothing of
them was published: anything published is judged in full.
"""

import asyncio
from collections.abc import Callable, Collection

from bridge.events import OperationEvent
from bridge.simulator.runner import Simulator
from bridge.simulator.truth import TruthRecord, replay
from tests.bridge_harness import Verdict, judge
from tests.chaos.topics import Options, read_events

TERMINAL = frozenset({"SUCCESS", "FAIL"})
PUBLISH_POLL_SECONDS = 1.0

Published = list[tuple[int, OperationEvent]]


async def finish_everything(sim: Simulator, timeout_seconds: float) -> bool:
    """Stop new arrivals and wait until every operation has finished."""
    sim.engine.set_load(paused=True, transitions_paused=False)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_seconds
    while loop.time() < deadline:
        if all(s in TERMINAL for s in replay(sim.truth.records).values()):
            return True
        await asyncio.sleep(0.2)
    return False


def transition_count(published: Published) -> int:
    """Distinct transitions: a repeated event must not stand in for a missing one."""
    return len({e.event_id for _, e in published if e.kind != "progressed"})


async def wait_for_stream(
    options: Options,
    topic: str,
    partitions: int,
    expected: Callable[[Published], int],
    timeout_seconds: float,
) -> Published:
    """Read the events topic until it holds the expected transitions or time is up."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_seconds
    published = await read_events(options, topic, partitions)
    while transition_count(published) < expected(published):
        if loop.time() >= deadline:
            break
        await asyncio.sleep(PUBLISH_POLL_SECONDS)
        published = await read_events(options, topic, partitions)
    return published


def expected_truth(
    sim: Simulator, published: Published, undiscoverable: Collection[str] = ()
) -> tuple[list[TruthRecord], int]:
    """The truth to judge against, and how many undiscoverable operations it skips."""
    seen = {event.operation_id for _, event in published}
    left_out = {op for op in undiscoverable if op not in seen}
    records = [r for r in sim.truth.records if r.operation_id not in left_out]
    return records, len(left_out)


async def settle_and_judge(
    sim: Simulator,
    options: Options,
    topic: str,
    partitions: int,
    timeout_seconds: float,
    undiscoverable: Collection[str] = (),
) -> tuple[Verdict, Published, int]:
    """Finish every operation, wait for the stream, judge it."""
    await finish_everything(sim, timeout_seconds)

    def expected(published: Published) -> int:
        return len(expected_truth(sim, published, undiscoverable)[0])

    published = await wait_for_stream(
        options, topic, partitions, expected, timeout_seconds
    )
    records, left_out = expected_truth(sim, published, undiscoverable)
    return judge(records, published), published, left_out
