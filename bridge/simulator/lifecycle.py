"""The engine: generates load and moves operations through their lifecycles.

Each operation's fate (type, id, parameters, queue time, run time, outcome, progress
steps) is drawn from a seeded RNG when it is created, so the same seed gives the same
operations and durations however the engine is ticked. Transitions wait in a heap
keyed by their due time; `step()` applies everything due by the clock's now, in time
order, and stamps each transition with its due time (never later than now, so no
timestamp is ever in the future). New operations arrive as a Poisson process.

Three RNG streams keep the parts independent: `load` (random arrivals), `history`
(pre-populated operations) and `control` (operations created through the control API).
"""

import asyncio
import bisect
import heapq
import itertools
import logging
import random
from collections.abc import Awaitable, Callable
from typing import NamedTuple

import msgspec

from bridge.simulator import catalog
from bridge.simulator.clock import Clock, seconds_to_us
from bridge.simulator.model import FAIL, RUNNING, SimOperation
from bridge.simulator.plans import Plan, draw_plan, final_progress, fit_into
from bridge.simulator.settings import LoadSettings
from bridge.simulator.wiretime import parse_wire_time
from bridge.simulator.world import TransitionError, World

log = logging.getLogger(__name__)

_START, _PROGRESS, _FINISH = 0, 1, 2


class ControlError(ValueError):
    """A control request cannot be carried out; `status` is the HTTP status."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


class LoadState(msgspec.Struct, kw_only=True):
    """What the random load is doing now."""

    paused: bool
    transitions_paused: bool
    rate_per_second: float


class _Event(NamedTuple):
    due_us: int
    seq: int
    kind: int
    op_id: str
    token: int
    value: int
    status: str


class Engine:
    """Creates operations and applies their scheduled transitions."""

    def __init__(
        self, world: World, load: LoadSettings, seed: int, clock: Clock
    ) -> None:
        self.world = world
        self.load = msgspec.structs.replace(load)
        self._clock = clock
        self._rng = random.Random(f"{seed}:load")
        self._history_rng = random.Random(f"{seed}:history")
        self._control_rng = random.Random(f"{seed}:control")
        self._heap: list[_Event] = []
        self._seq = itertools.count()
        self._tokens: dict[str, int] = {}
        self._token_counter = itertools.count(1)
        self._transitions_paused = False
        self._not_before_us = 0
        self._next_arrival_us: int | None = None
        self._types = list(load.type_weights)
        self._cumulative_weights = list(
            itertools.accumulate(load.type_weights.values())
        )
        self._schedule_next_arrival(clock.now_us())

    def populate(self) -> None:
        """Add the `history` finished and `running` RUNNING operations."""
        now_us = self._clock.now_us()
        taken: set[str] = set()
        history = [
            self._historic_operation(now_us, taken) for _ in range(self.load.history)
        ]
        running = [
            self._running_operation(now_us, taken) for _ in range(self.load.running)
        ]
        self.world.add(history)
        self.world.add([op for op, _ in running])
        for op, plan in running:
            self._schedule_remaining(op, plan, now_us)
        log.info("pre-populated %d finished and %d running", len(history), len(running))

    def step(self) -> int:
        """Apply every arrival and transition due by now; return how many."""
        now_us = self._clock.now_us()
        done = 0
        while True:
            arrival = self._next_arrival_us
            event_due = self._heap[0].due_us if self._heap else None
            if self._transitions_paused:
                event_due = None
            if (
                arrival is not None
                and arrival <= now_us
                and (event_due is None or arrival <= event_due)
            ):
                self._arrive(arrival)
            elif event_due is not None and event_due <= now_us:
                self._apply(heapq.heappop(self._heap))
            else:
                return done
            done += 1

    async def run(
        self, sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
    ) -> None:
        """Tick forever (until cancelled), every `load.tick_seconds`."""
        while True:
            self.step()
            await sleep(self.load.tick_seconds)

    def load_state(self) -> LoadState:
        """The current pause flags and arrival rate."""
        return LoadState(
            paused=self.load.paused,
            transitions_paused=self._transitions_paused,
            rate_per_second=self.load.rate_per_second,
        )

    def set_load(
        self,
        paused: bool | None = None,
        transitions_paused: bool | None = None,
        rate_per_second: float | None = None,
    ) -> LoadState:
        """Pause or resume arrivals and/or transitions, or change the arrival rate."""
        now_us = self._clock.now_us()
        if rate_per_second is not None:
            if rate_per_second < 0:
                raise ControlError(400, "VALIDATION_ERROR", "rate must be >= 0")
            self.load.rate_per_second = rate_per_second
        if paused is not None:
            self.load.paused = paused
        if transitions_paused is not None:
            if self._transitions_paused and not transitions_paused:
                self._not_before_us = now_us
            self._transitions_paused = transitions_paused
        if rate_per_second is not None or paused is not None:
            self._schedule_next_arrival(now_us)
        return self.load_state()

    def create(
        self,
        op_type: str,
        count: int = 1,
        op_id: str | None = None,
        submitted: str | None = None,
        scheduled: bool = False,
    ) -> list[SimOperation]:
        """Create operations on request (control API); PENDING until moved."""
        now_us = self._clock.now_us()
        if op_id is not None and count != 1:
            raise ControlError(400, "VALIDATION_ERROR", "an id needs count = 1")
        if op_id is not None and self.world.get(op_id) is not None:
            raise ControlError(409, "CONFLICT_STATE", f"id {op_id!r} already exists")
        shared = None if submitted is None else _past_wire_time(submitted, now_us)

        ops, plans = [], []
        taken: set[str] = set()
        for _ in range(count):
            new_id = op_id or self._fresh_id(self._control_rng, taken)
            content_seed = self._control_rng.getrandbits(63)
            stamp = shared or self.world.stamp(new_id, "submitted", now_us)
            ops.append(self.world.new_operation(new_id, op_type, content_seed, stamp))
            plans.append(draw_plan(self._control_rng, self.load))
        self.world.add(ops)
        if scheduled:
            for op, plan in zip(ops, plans, strict=True):
                self._schedule(op, plan, now_us)
        return ops

    def control_transition(
        self, op_id: str, status: str | None, progress: int | None
    ) -> SimOperation:
        """Move one operation by hand; it leaves the engine's schedule."""
        op = self.world.get(op_id)
        if op is None:
            raise ControlError(404, "DOES_NOT_EXIST", f"no operation {op_id!r}")
        if progress is not None and not 0 <= progress <= 100:
            raise ControlError(400, "VALIDATION_ERROR", "progress must be 0-100")
        if (status is None or status == op.status) and progress is None:
            raise ControlError(400, "VALIDATION_ERROR", "give a new status or progress")

        self._tokens.pop(op_id, None)
        try:
            if status is None or status == op.status:
                self.world.set_progress(op, progress or 0)
            else:
                self.world.transition(op, status, self._clock.now_us(), progress)
        except TransitionError as error:
            raise ControlError(409, "CONFLICT_STATE", str(error)) from None
        return op

    def _arrive(self, due_us: int) -> None:
        rng = self._rng
        size = self.load.burst_size if rng.random() < self.load.burst_probability else 1
        taken: set[str] = set()
        ops, plans = [], []
        shared: tuple[str, int] | None = None
        for _ in range(size):
            op_type, op_id, content_seed = self._draw_identity(rng, taken)
            shared = shared or self.world.stamp(op_id, "submitted", due_us)
            ops.append(self.world.new_operation(op_id, op_type, content_seed, shared))
            plans.append(draw_plan(rng, self.load))
        self.world.add(ops)
        for op, plan in zip(ops, plans, strict=True):
            self._schedule(op, plan, due_us)
        self._next_arrival_us = None
        self._schedule_next_arrival(due_us)

    def _schedule_next_arrival(self, from_us: int) -> None:
        rate = self.load.rate_per_second
        if self.load.paused or rate <= 0:
            self._next_arrival_us = None
            return
        gap = seconds_to_us(self._rng.expovariate(rate))
        self._next_arrival_us = from_us + max(gap, 1)

    def _schedule(self, op: SimOperation, plan: Plan, created_us: int) -> None:
        token = next(self._token_counter)
        self._tokens[op.id] = token
        start_us = created_us + seconds_to_us(plan.queue_seconds)
        if not plan.starts:
            self._push(start_us, _FINISH, op.id, token, 0, FAIL)
            return

        self._push(start_us, _START, op.id, token, 0, RUNNING)
        for offset_seconds, value in plan.progress:
            due = start_us + seconds_to_us(offset_seconds)
            self._push(due, _PROGRESS, op.id, token, value, RUNNING)
        end_us = start_us + seconds_to_us(plan.run_seconds)
        self._push(end_us, _FINISH, op.id, token, 0, plan.outcome)

    def _schedule_remaining(self, op: SimOperation, plan: Plan, now_us: int) -> None:
        """Schedule the rest of a pre-populated RUNNING operation."""
        token = next(self._token_counter)
        self._tokens[op.id] = token
        for offset_seconds, value in plan.progress:
            due = now_us + seconds_to_us(offset_seconds)
            self._push(due, _PROGRESS, op.id, token, value, RUNNING)
        end_us = now_us + seconds_to_us(plan.run_seconds)
        self._push(end_us, _FINISH, op.id, token, 0, plan.outcome)

    def _push(
        self, due_us: int, kind: int, op_id: str, token: int, value: int, status: str
    ) -> None:
        event = _Event(due_us, next(self._seq), kind, op_id, token, value, status)
        heapq.heappush(self._heap, event)

    def _apply(self, event: _Event) -> None:
        if self._tokens.get(event.op_id) != event.token:
            return
        op = self.world.get(event.op_id)
        if op is None:
            raise RuntimeError(f"scheduled operation {event.op_id!r} is missing")

        at_us = max(event.due_us, self._not_before_us)
        if event.kind == _PROGRESS:
            if op.status == RUNNING and event.value > (op.progress or 0):
                self.world.set_progress(op, event.value)
            return
        if event.kind == _FINISH:
            del self._tokens[op.id]
        self.world.transition(op, event.status, at_us)

    def _draw_identity(
        self, rng: random.Random, taken: set[str]
    ) -> tuple[str, str, int]:
        total = self._cumulative_weights[-1]
        op_type = self._types[
            bisect.bisect(self._cumulative_weights, rng.random() * total)
        ]
        return op_type, self._fresh_id(rng, taken), rng.getrandbits(63)

    def _fresh_id(self, rng: random.Random, taken: set[str]) -> str:
        while True:
            op_id = catalog.new_operation_id(rng, self.load.uuid_ratio)
            if op_id not in taken and self.world.get(op_id) is None:
                taken.add(op_id)
                return op_id

    def _historic_operation(self, now_us: int, taken: set[str]) -> SimOperation:
        rng = self._history_rng
        op_type, op_id, content_seed = self._draw_identity(rng, taken)
        window_us = seconds_to_us(self.load.history_window_seconds)
        submitted_us = now_us - int(rng.random() * window_us) - 1
        plan = draw_plan(rng, self.load)

        stamp = self.world.stamp(op_id, "submitted", submitted_us)
        op = self.world.new_operation(op_id, op_type, content_seed, stamp)
        queue_us, run_us = fit_into(plan, now_us - submitted_us, rng.random())
        started_us = submitted_us + queue_us if plan.starts else None
        finished_us = submitted_us + queue_us + run_us
        self.world.settle(
            op, plan.outcome, started_us, finished_us, final_progress(plan)
        )
        return op

    def _running_operation(
        self, now_us: int, taken: set[str]
    ) -> tuple[SimOperation, Plan]:
        rng = self._history_rng
        op_type, op_id, content_seed = self._draw_identity(rng, taken)
        plan = draw_plan(rng, self.load)
        elapsed_seconds = rng.random() * max(self.load.mean_run_seconds, 1.0)
        queue_seconds = rng.expovariate(1.0) * self.load.mean_queue_seconds
        started_us = now_us - seconds_to_us(elapsed_seconds)
        submitted_us = started_us - seconds_to_us(queue_seconds)

        stamp = self.world.stamp(op_id, "submitted", submitted_us)
        op = self.world.new_operation(op_id, op_type, content_seed, stamp)
        done = elapsed_seconds / (elapsed_seconds + plan.run_seconds + 1e-9)
        progress = min(98, int(done * 100))
        self.world.settle(op, RUNNING, started_us, None, progress)
        steps = min(rng.randint(0, self.load.max_progress_steps), 99 - progress)
        offsets = sorted(rng.random() * plan.run_seconds for _ in range(steps))
        values = sorted(rng.randint(progress + 1, 99) for _ in range(steps))
        remaining = Plan(
            plan.outcome,
            True,
            0.0,
            plan.run_seconds,
            list(zip(offsets, values, strict=True)),
        )
        return op, remaining


def _past_wire_time(text: str, now_us: int) -> tuple[str, int]:
    try:
        value = parse_wire_time(text)
    except ValueError as error:
        raise ControlError(400, "VALIDATION_ERROR", str(error)) from None
    if value > now_us:
        raise ControlError(400, "VALIDATION_ERROR", f"{text!r} is in the future")
    return text, value
