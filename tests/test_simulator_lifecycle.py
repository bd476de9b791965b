"""The simulator's engine: lifecycles, load shapes, history, determinism, truth."""

import asyncio
from pathlib import Path
from typing import Any

import httpx

from bridge.simulator import (
    LoadSettings,
    ManualClock,
    SimulatorSettings,
    replay,
    run_simulator,
)
from bridge.simulator.lifecycle import Engine
from bridge.simulator.model import FAIL, PENDING, RUNNING, SUCCESS, encode_operation
from bridge.simulator.truth import TruthLog, read_truth_file
from bridge.simulator.wiretime import parse_wire_time
from bridge.simulator.world import World

T0 = parse_wire_time("2024-05-01T12:00:00")
QUIET = {
    "fail_ratio": 0.0,
    "fail_unstarted_ratio": 0.0,
    "instant_ratio": 0.0,
    "burst_probability": 0.0,
}


def make_engine(
    seed: int = 1, odd_precision_ratio: float = 0.0, **load: Any
) -> tuple[Engine, ManualClock]:
    clock = ManualClock(T0)
    settings = LoadSettings(**{**QUIET, **load})
    world = World(TruthLog(), seed, odd_precision_ratio)
    engine = Engine(world, settings, seed, clock)
    engine.populate()
    return engine, clock


def run_for(
    engine: Engine, clock: ManualClock, seconds: float, tick: float = 0.1
) -> None:
    for _ in range(round(seconds / tick)):
        clock.advance(tick)
        engine.step()


def test_operations_go_pending_running_success_with_rising_progress() -> None:
    """Every op follows PENDING, RUNNING, SUCCESS; progress rises and ends at 100."""
    engine, clock = make_engine(
        rate_per_second=4.0,
        mean_queue_seconds=1.0,
        mean_run_seconds=3.0,
        max_progress_steps=4,
    )
    seen: dict[str, list[tuple[str, int | None]]] = {}
    for _ in range(300):
        run_for(engine, clock, 0.1)
        for op in engine.world.index.operations.values():
            history = seen.setdefault(op.id, [])
            if not history or history[-1] != (op.status, op.progress):
                history.append((op.status, op.progress))

    order = {PENDING: 0, RUNNING: 1, SUCCESS: 2}
    for history in seen.values():
        ranks = [order[status] for status, _ in history]
        assert ranks == sorted(ranks)
        running: list[int] = []
        for status, progress in history:
            if status == RUNNING:
                assert progress is not None, "a RUNNING operation has a progress"
                running.append(progress)
        assert running == sorted(running)
        if history[-1][0] == SUCCESS:
            assert history[-1][1] == 100
    middle = [
        p for h in seen.values() for s, p in h if s == RUNNING and 0 < (p or 0) < 100
    ]
    assert middle, "some operation should report progress between 0 and 100"
    assert sum(1 for h in seen.values() if h[-1][0] == SUCCESS) > 50


def test_instant_operations_start_and_finish_within_a_fraction_of_a_second() -> None:
    """Instant ops pass through RUNNING and finish within instant_max_seconds."""
    engine, clock = make_engine(
        rate_per_second=5.0, instant_ratio=1.0, instant_max_seconds=0.3
    )
    run_for(engine, clock, 20.0)

    finished = [op for op in engine.world.index.operations.values() if op.finished]
    assert len(finished) > 50
    for op in finished:
        assert op.started is not None
        assert op.finished_us is not None
        assert op.finished_us - op.submitted_us <= 300_000
        steps = [
            (r.from_status, r.to_status)
            for r in engine.world.truth.for_operation(op.id)
        ]
        assert steps == [(None, PENDING), (PENDING, RUNNING), (RUNNING, SUCCESS)]


def test_some_operations_fail_without_ever_starting() -> None:
    """With fail_unstarted_ratio=1, ops go PENDING to FAIL with no `started`."""
    engine, clock = make_engine(rate_per_second=5.0, fail_unstarted_ratio=1.0)
    run_for(engine, clock, 20.0)

    failed = [op for op in engine.world.index.operations.values() if op.status == FAIL]
    assert len(failed) > 50
    for op in failed:
        assert op.started is None
        assert op.progress is None
        steps = [
            (r.from_status, r.to_status)
            for r in engine.world.truth.for_operation(op.id)
        ]
        assert steps == [(None, PENDING), (PENDING, FAIL)]


def test_fail_ratio_makes_running_operations_fail() -> None:
    """With fail_ratio=1, every op that ran ends FAIL with `started` set."""
    engine, clock = make_engine(
        rate_per_second=5.0, fail_ratio=1.0, mean_run_seconds=1.0
    )
    run_for(engine, clock, 20.0)

    ended = [op for op in engine.world.index.operations.values() if op.finished]
    assert ended
    assert all(op.status == FAIL and op.started is not None for op in ended)


def test_a_burst_puts_hundreds_of_operations_on_one_submitted_timestamp() -> None:
    """burst_size=400 gives more than a page of ops sharing one `submitted` string."""
    engine, clock = make_engine(
        rate_per_second=1.0,
        burst_probability=1.0,
        burst_size=400,
        odd_precision_ratio=0.5,
    )
    run_for(engine, clock, 3.0)

    by_submitted: dict[str, int] = {}
    for op in engine.world.index.operations.values():
        by_submitted[op.submitted] = by_submitted.get(op.submitted, 0) + 1
    assert max(by_submitted.values()) >= 400


def test_history_and_running_pre_population() -> None:
    """history ops finished inside the window; running ops are RUNNING now."""
    engine, _ = make_engine(
        history=500,
        running=50,
        history_window_seconds=600,
        rate_per_second=0.0,
        fail_unstarted_ratio=0.1,
    )
    ops = list(engine.world.index.operations.values())

    finished = [op for op in ops if op.finished_us is not None]
    running = [op for op in ops if op.status == RUNNING]
    assert len(finished) == 500
    assert len(running) == 50
    assert all(
        op.finished_us is not None
        and T0 - 600_000_000 <= op.submitted_us <= op.finished_us <= T0
        for op in finished
    )
    assert all(op.started_us is not None and op.started_us <= T0 for op in running)
    assert len(replay(engine.world.truth.records)) == 550
    assert len({op.finished for op in finished}) > 400


def test_pre_populated_running_operations_finish_later() -> None:
    """The running ops get scheduled and eventually complete."""
    engine, clock = make_engine(running=30, rate_per_second=0.0, mean_run_seconds=2.0)
    run_for(engine, clock, 60.0, tick=1.0)

    statuses = {op.status for op in engine.world.index.operations.values()}
    assert statuses == {SUCCESS}


def test_same_seed_gives_the_same_operations_and_durations() -> None:
    """Two engines with one seed serve byte-identical ops and identical truth."""
    runs = []
    for seed in (11, 11, 12):
        engine, clock = make_engine(
            seed=seed,
            rate_per_second=3.0,
            history=50,
            running=5,
            burst_probability=0.05,
            burst_size=20,
            instant_ratio=0.2,
            fail_ratio=0.2,
            odd_precision_ratio=0.3,
        )
        run_for(engine, clock, 30.0)
        ops = sorted(engine.world.index.operations.values(), key=lambda op: op.id)
        runs.append(([encode_operation(op) for op in ops], engine.world.truth.records))

    assert runs[0] == runs[1]
    assert runs[0][0] != runs[2][0]
    assert len(runs[0][0]) > 100


def test_timestamps_are_never_in_the_future_and_never_out_of_order() -> None:
    """With odd fraction digits, started >= submitted, finished >= started, <= now."""
    engine, clock = make_engine(
        rate_per_second=5.0,
        odd_precision_ratio=0.5,
        instant_ratio=0.5,
        history=200,
        running=20,
    )
    digits: set[int] = set()
    for _ in range(50):
        run_for(engine, clock, 0.2)
        now = clock.now_us()
        for op in engine.world.index.operations.values():
            stamps = [op.submitted, op.started, op.finished]
            values = [parse_wire_time(s) for s in stamps if s is not None]
            assert values == sorted(values)
            assert values[-1] <= now
            digits.update(len(s.partition(".")[2]) for s in stamps if s is not None)

    assert digits == {0, 3, 5, 6}


def test_truth_file_holds_every_transition_as_it_happens(tmp_path: Path) -> None:
    """Each record is a JSON line in the file, equal to the in-memory truth."""
    path = tmp_path / "truth.jsonl"
    truth = TruthLog(path)
    clock = ManualClock(T0)
    engine = Engine(World(truth, 1, 0.0), LoadSettings(rate_per_second=5.0), 1, clock)
    engine.populate()
    run_for(engine, clock, 10.0)

    assert read_truth_file(path) == truth.records
    truth.close()
    assert len(truth.records) > 50


def test_each_truth_record_carries_the_served_timestamp() -> None:
    """`at` is exactly the served submitted/started/finished string."""
    engine, clock = make_engine(
        rate_per_second=5.0, odd_precision_ratio=0.5, history=30
    )
    run_for(engine, clock, 10.0)

    fields = {
        PENDING: "submitted",
        RUNNING: "started",
        SUCCESS: "finished",
        FAIL: "finished",
    }
    for record in engine.world.truth.records:
        op = engine.world.get(record.operation_id)
        assert op is not None
        assert record.at == getattr(op, fields[record.to_status])
        assert record.operation_type == op.type


def test_pausing_stops_arrivals_and_transitions() -> None:
    """Paused arrivals add nothing; paused transitions move nothing until resumed."""
    engine, clock = make_engine(rate_per_second=5.0, mean_queue_seconds=1.0)
    run_for(engine, clock, 2.0)
    engine.set_load(paused=True, transitions_paused=True)
    before = {op.id: op.status for op in engine.world.index.operations.values()}

    run_for(engine, clock, 10.0)
    frozen = {op.id: op.status for op in engine.world.index.operations.values()}
    engine.set_load(transitions_paused=False)
    run_for(engine, clock, 30.0)

    assert frozen == before
    assert PENDING not in {op.status for op in engine.world.index.operations.values()}
    assert len(engine.world) == len(before)


async def test_truth_replay_matches_every_served_status_after_a_random_run() -> None:
    """Replaying the truth gives the status each op is served with, over HTTP."""
    settings = SimulatorSettings(
        seed=5,
        load=LoadSettings(
            rate_per_second=20.0,
            history=300,
            running=40,
            burst_probability=0.05,
            burst_size=30,
            instant_ratio=0.2,
            mean_run_seconds=2.0,
            fail_ratio=0.2,
            fail_unstarted_ratio=0.05,
            odd_precision_ratio=0.3,
        ),
    )
    clock = ManualClock(T0)
    headers = {"Authorization": "ApiKey sim-token"}
    async with (
        run_simulator(settings, clock=clock, run_engine=False) as sim,
        httpx.AsyncClient(base_url=sim.base_url, headers=headers) as client,
    ):
        for _ in range(100):
            sim.advance(0.1)
        served: dict[str, str] = {}
        params = {"sort": "id", "limit": "300"}
        while True:
            page = (await client.get("/v1/operations", params=params)).json()
            served.update((item["id"], item["status"]) for item in page["items"])
            if not page["has_more"]:
                break
            params["id_gt"] = page["items"][-1]["id"]
        one = next(iter(served))
        single = (await client.get(f"/v1/operations/{one}")).json()

    assert replay(sim.truth.records) == served
    assert single["status"] == served[one]
    assert len(served) > 500


async def test_the_engine_task_ticks_on_its_own() -> None:
    """With run_engine, the asyncio task applies what the clock makes due."""
    clock = ManualClock(T0)
    load = LoadSettings(rate_per_second=10.0, tick_seconds=0.005)
    async with run_simulator(SimulatorSettings(load=load), clock=clock) as sim:
        clock.advance(5.0)
        for _ in range(400):
            if len(sim.world) > 0:
                break
            await asyncio.sleep(0.005)

    assert len(sim.world) > 10
