"""An operation's fate, drawn once when it is created.

`draw_plan` takes the queue time, run time, outcome and progress steps from a seeded
RNG in a fixed order, so the same seed always gives the same lives.
"""

import random

import msgspec

from bridge.simulator.clock import seconds_to_us
from bridge.simulator.model import FAIL, SUCCESS
from bridge.simulator.settings import LoadSettings


class Plan(msgspec.Struct):
    """How one operation's life will go, drawn when it is created."""

    outcome: str
    starts: bool
    queue_seconds: float
    run_seconds: float
    progress: list[tuple[float, int]]


def draw_plan(rng: random.Random, load: LoadSettings) -> Plan:
    """Draw one operation's fate: outcome, queue and run time, progress steps."""
    instant = rng.random() < load.instant_ratio
    if rng.random() < load.fail_unstarted_ratio:
        return Plan(FAIL, False, _duration(rng, load.mean_queue_seconds), 0.0, [])

    outcome = FAIL if rng.random() < load.fail_ratio else SUCCESS
    if instant:
        half = load.instant_max_seconds / 2
        return Plan(outcome, True, rng.uniform(0, half), rng.uniform(0, half), [])

    queue_seconds = _duration(rng, load.mean_queue_seconds)
    run_seconds = _duration(rng, load.mean_run_seconds)
    steps = rng.randint(0, load.max_progress_steps)
    offsets = sorted(rng.random() * run_seconds for _ in range(steps))
    values = sorted(rng.randint(1, 99) for _ in range(steps))
    return Plan(
        outcome,
        True,
        queue_seconds,
        run_seconds,
        list(zip(offsets, values, strict=True)),
    )


def _duration(rng: random.Random, mean_seconds: float) -> float:
    if mean_seconds <= 0:
        return 0.0
    return rng.expovariate(1.0 / mean_seconds)


def fit_into(plan: Plan, available_us: int, share: float) -> tuple[int, int]:
    """Queue and run time in microseconds, shrunk to end within `available_us`.

    A plan too long for the time available is shrunk to end at a random `share` of
    it, so that shrunk operations do not all finish at the same instant.
    """
    queue_us = seconds_to_us(plan.queue_seconds)
    run_us = seconds_to_us(plan.run_seconds) if plan.starts else 0
    total = queue_us + run_us
    if total <= available_us:
        return queue_us, run_us
    scale = available_us * share / total
    return int(queue_us * scale), int(run_us * scale)


def final_progress(plan: Plan) -> int | None:
    if plan.outcome == SUCCESS:
        return 100
    if not plan.starts:
        return None
    return plan.progress[-1][1] if plan.progress else 0
