"""BridgeMetrics: values read back from a fresh registry after synthetic observer calls.

Events and tracked operations come from the real (pure) change detector, so the
metrics see exactly the shapes a poll cycle hands them.
"""

import shutil
import subprocess
from datetime import UTC, datetime, timedelta

import msgspec
import pytest
from prometheus_client import CollectorRegistry, generate_latest

from bridge.config import Config, HttpSettings, KafkaSettings
from bridge.cycle import Cycle, CycleOptions, CycleTally
from bridge.detector import DetectionContext, detect
from bridge.endpoints import Health, render_metrics
from bridge.errors import FencedError, PublishError, QuotaError, ResponseError
from bridge.events import EventSource, OperationEvent
from bridge.metrics import MAX_OPERATION_TYPES, OTHER, BridgeMetrics, poll_outcome
from bridge.operation import Observation
from bridge.publisher import Batch, Publisher
from bridge.state import BridgeState, StateKeys

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
SOURCE = EventSource(environment="test", account="acc", bridge_version="0.0.0")
OPEN = "POOL.OPEN"
TRANSITIONS = "toloka_operations_transitions_total"
FAILURES = "toloka_operations_failures_total"
UNFINISHED = "toloka_operations_unfinished"
PROGRESS = "toloka_operation_progress_ratio"
MEAN_PROGRESS = "toloka_operations_running_progress_mean_ratio"
OLDEST = "toloka_operations_oldest_running_started_timestamp_seconds"
DURATION = "toloka_operation_duration_seconds"
QUEUE_WAIT = "toloka_operation_queue_wait_seconds"
PUBLISHED = "toloka_bridge_events_published_total"
POLLS = "toloka_bridge_polls_total"
LAST_POLL = "toloka_bridge_last_successful_poll_timestamp_seconds"
LAG = "toloka_bridge_detection_lag_seconds"
OVERFLOW = "toloka_bridge_operation_series_overflow"


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def seen(
    operation_id: str,
    status: str,
    *,
    operation_type: str = OPEN,
    progress: int | None = None,
    submitted: float = 0.0,
    started: float | None = None,
    finished: float | None = None,
) -> Observation:
    """An observation with timestamps given as seconds after T0."""
    return Observation(
        operation_id=operation_id,
        operation_type=operation_type,
        status=status,
        progress=progress,
        submitted=at(submitted),
        started=None if started is None else at(started),
        finished=None if finished is None else at(finished),
        raw=msgspec.Raw(b'{"id": "%s"}' % operation_id.encode()),
    )


class Observed:
    """A BridgeMetrics on a fresh registry, fed committed batches like a cycle does."""

    def __init__(
        self, *, series_limit: int = 1000, clock_value: float = 1_000.0
    ) -> None:
        self.registry = CollectorRegistry()
        config = Config(http=HttpSettings(operation_series_limit=series_limit))
        self.metrics = BridgeMetrics(self.registry, config, clock=lambda: clock_value)
        self.state = BridgeState()

    def detect(
        self, observation: Observation, seconds: float, initial_load: bool = False
    ) -> list[OperationEvent]:
        """Run one observation through the detector; keep the result in the state."""
        context = DetectionContext(
            observed_at=at(seconds),
            seen_by="refresh",
            source=SOURCE,
            initial_load=initial_load,
        )
        current = self.state.tracked.get(observation.operation_id)
        detection = detect(current, observation, context)
        self.state.tracked[observation.operation_id] = detection.tracked
        return detection.events

    def commit(
        self, *observations: Observation, seconds: float, delay: float = 0.0
    ) -> None:
        """Detect at `seconds`, then report the batch committed `delay` later."""
        events = [e for item in observations for e in self.detect(item, seconds)]
        self.metrics.batch_committed(events, self.state, at(seconds + delay))

    def read(self, name: str, **labels: str) -> float | None:
        return self.registry.get_sample_value(name, labels)

    def label_values(self, family_name: str, label: str) -> set[str]:
        return {
            sample.labels[label]
            for family in self.registry.collect()
            if family.name == family_name
            for sample in family.samples
        }


def test_known_label_combinations_start_at_zero() -> None:
    """Bounded label sets exist before anything happens, so rate() sees the first."""
    observed = Observed()

    assert observed.read(TRANSITIONS, operation_type=OPEN, to_status="FAIL") == 0
    assert observed.read(FAILURES, operation_type="ANALYTICS") == 0
    assert observed.read(UNFINISHED, operation_type="POOL.CLOSE", status="RUNNING") == 0
    assert observed.read(POLLS, outcome="publish_error") == 0
    assert observed.read(PUBLISHED, kind="progressed") == 0
    assert observed.read("toloka_bridge_invalid_items_total", reason="malformed") == 0
    assert observed.read(LAST_POLL) == 0


def test_build_info_and_transactions_mode_are_exported() -> None:
    """build_info carries the version; the transactions gauge follows the config."""
    registry = CollectorRegistry()
    config = Config()
    kafka = msgspec.structs.replace(config.kafka, transactions=False)
    metrics = BridgeMetrics(registry, msgspec.structs.replace(config, kafka=kafka))

    families = {family.name: family for family in registry.collect()}
    (build,) = families["toloka_bridge_build"].samples
    assert build.name == "toloka_bridge_build_info"
    assert build.value == 1
    assert set(build.labels) == {"version", "python"}
    assert registry.get_sample_value("toloka_bridge_transactions_enabled") == 0

    metrics.transactions_enabled(True)
    assert registry.get_sample_value("toloka_bridge_transactions_enabled") == 1


def test_no_label_is_named_type_and_names_carry_the_project_prefixes() -> None:
    """Prometheus naming: no `type` label; toloka_ prefixes (process_* aside)."""
    observed = Observed()
    observed.commit(seen("a", "RUNNING", progress=10, started=1), seconds=5)

    prefixes = ("toloka_operation_", "toloka_operations_", "toloka_bridge_", "process_")
    for family in observed.registry.collect():
        assert family.name.startswith(prefixes), family.name
        for sample in family.samples:
            assert "type" not in sample.labels, sample


def test_a_lifecycle_counts_each_transition_by_type_and_status() -> None:
    """PENDING, RUNNING and SUCCESS each count once for the operation's type."""
    observed = Observed()
    batch = "TASK.BATCH_CREATE"

    observed.commit(seen("a", "PENDING", operation_type=batch), seconds=1)
    observed.commit(seen("a", "RUNNING", operation_type=batch, started=2), seconds=3)
    done = seen("a", "SUCCESS", operation_type=batch, started=2, finished=9)
    observed.commit(done, seconds=10)

    for status in ("PENDING", "RUNNING", "SUCCESS"):
        assert observed.read(TRANSITIONS, operation_type=batch, to_status=status) == 1
    assert observed.read(TRANSITIONS, operation_type=batch, to_status="FAIL") == 0
    assert observed.read(FAILURES, operation_type=batch) == 0
    assert observed.read(PUBLISHED, kind="succeeded") == 1


def test_a_failure_counts_in_failures_and_in_transitions() -> None:
    """An operation first seen as FAIL counts its inferred steps and one failure."""
    observed = Observed()
    clone = "POOL.CLONE"

    failed = seen("f", "FAIL", operation_type=clone, started=1, finished=4)
    observed.commit(failed, seconds=5)

    assert observed.read(FAILURES, operation_type=clone) == 1
    for status in ("PENDING", "RUNNING", "FAIL"):
        assert observed.read(TRANSITIONS, operation_type=clone, to_status=status) == 1


def test_progress_steps_are_counted_apart_from_transitions() -> None:
    """A progress event is not a transition."""
    observed = Observed()

    for seconds, progress in ((2, 10), (4, 40), (6, 70)):
        running = seen("p", "RUNNING", progress=progress, started=1)
        observed.commit(running, seconds=seconds)

    progress_events = "toloka_operations_progress_events_total"
    assert observed.read(progress_events, operation_type=OPEN) == 2
    assert observed.read(TRANSITIONS, operation_type=OPEN, to_status="RUNNING") == 1
    assert observed.read(PUBLISHED, kind="progressed") == 2


def test_initial_load_events_are_published_but_not_counted_as_transitions() -> None:
    """History replayed on a cold start shows in the state gauges, not in rates."""
    observed = Observed()
    old = seen("old", "SUCCESS", started=1, finished=5)
    live = seen("live", "RUNNING", progress=5, started=50)

    events = observed.detect(old, 100, initial_load=True)
    events += observed.detect(live, 100, initial_load=True)
    observed.metrics.batch_committed(events, observed.state, at(101))

    assert observed.read(PUBLISHED, kind="created") == 2
    assert observed.read(TRANSITIONS, operation_type=OPEN, to_status="SUCCESS") == 0
    assert observed.read(f"{LAG}_count") == 0
    success = {"operation_type": OPEN, "outcome": "SUCCESS"}
    assert observed.read(f"{DURATION}_count", **success) is None
    assert observed.read(UNFINISHED, operation_type=OPEN, status="RUNNING") == 1


def test_queue_wait_and_duration_come_from_the_operation_timestamps() -> None:
    """submitted->started and started->finished, by the operation's own clock."""
    observed = Observed()

    observed.commit(seen("d", "PENDING", submitted=0), seconds=1)
    done = seen("d", "SUCCESS", submitted=0, started=20, finished=620)
    observed.commit(done, seconds=700)

    assert observed.read(f"{QUEUE_WAIT}_count", operation_type=OPEN) == 1
    assert observed.read(f"{QUEUE_WAIT}_sum", operation_type=OPEN) == 20
    success = {"operation_type": OPEN, "outcome": "SUCCESS"}
    assert observed.read(f"{DURATION}_sum", **success) == 600
    assert observed.read(f"{DURATION}_bucket", le="300.0", **success) == 0
    assert observed.read(f"{DURATION}_bucket", le="600.0", **success) == 1


def test_an_operation_that_never_started_has_no_duration() -> None:
    """PENDING straight to FAIL without `started`: a failure, but no timing."""
    observed = Observed()

    observed.commit(seen("n", "PENDING"), seconds=1)
    observed.commit(seen("n", "FAIL", finished=3), seconds=4)

    assert observed.read(FAILURES, operation_type=OPEN) == 1
    failed = {"operation_type": OPEN, "outcome": "FAIL"}
    assert observed.read(f"{DURATION}_count", **failed) is None
    assert observed.read(f"{QUEUE_WAIT}_count", operation_type=OPEN) is None


def test_detection_lag_runs_from_occurred_at_to_commit() -> None:
    """A change that happened at 10 s and was committed at 14 s lags 4 s."""
    observed = Observed()

    observed.commit(seen("l", "PENDING", submitted=10), seconds=12, delay=2)

    assert observed.read(f"{LAG}_count") == 1
    assert observed.read(f"{LAG}_sum") == 4
    last_publish = "toloka_bridge_last_successful_publish_timestamp_seconds"
    assert observed.read(last_publish) == at(14).timestamp()


def test_unfinished_gauge_follows_the_committed_state() -> None:
    """Counts move between statuses and fall back to 0 when operations finish."""
    observed = Observed()

    observed.commit(seen("a", "PENDING"), seen("b", "PENDING"), seconds=1)
    assert observed.read(UNFINISHED, operation_type=OPEN, status="PENDING") == 2

    observed.commit(seen("a", "RUNNING", started=2), seconds=3)
    assert observed.read(UNFINISHED, operation_type=OPEN, status="PENDING") == 1
    assert observed.read(UNFINISHED, operation_type=OPEN, status="RUNNING") == 1

    done = seen("a", "SUCCESS", started=2, finished=4)
    observed.commit(done, seen("b", "FAIL", finished=4), seconds=5)
    assert observed.read(UNFINISHED, operation_type=OPEN, status="PENDING") == 0
    assert observed.read(UNFINISHED, operation_type=OPEN, status="RUNNING") == 0
    assert observed.read("toloka_bridge_tracked_operations") == 2


def test_state_restored_sets_the_current_gauges_after_a_restart() -> None:
    """A new process learns the current counts and progress from the restored state."""
    before = Observed()
    before.commit(seen("p1", "PENDING", operation_type="ANALYTICS"), seconds=1)
    first = seen("r1", "RUNNING", progress=30, started=2)
    second = seen("r2", "RUNNING", progress=50, started=3)
    before.commit(first, second, seconds=4)
    before.commit(seen("s1", "SUCCESS", started=1, finished=3), seconds=4)
    restored = BridgeState(tracked=dict(before.state.tracked))

    after = Observed()
    after.metrics.state_restored(restored)

    assert after.read(UNFINISHED, operation_type="ANALYTICS", status="PENDING") == 1
    assert after.read(UNFINISHED, operation_type=OPEN, status="RUNNING") == 2
    assert after.read(PROGRESS, operation_type=OPEN, operation_id="r2") == 0.5
    assert after.read(MEAN_PROGRESS, operation_type=OPEN) == 0.4
    assert after.read("toloka_bridge_tracked_operations") == 4
    assert after.read(TRANSITIONS, operation_type=OPEN, to_status="RUNNING") == 0
    assert after.read("toloka_bridge_kafka_connected") == 1


def test_progress_series_is_removed_when_the_operation_finishes() -> None:
    """Per-operation series exist only while the operation runs."""
    observed = Observed()

    observed.commit(seen("x", "RUNNING", progress=25, started=1), seconds=2)
    assert observed.read(PROGRESS, operation_type=OPEN, operation_id="x") == 0.25

    observed.commit(seen("x", "RUNNING", progress=80, started=1), seconds=3)
    assert observed.read(PROGRESS, operation_type=OPEN, operation_id="x") == 0.8

    done = seen("x", "SUCCESS", progress=100, started=1, finished=4)
    observed.commit(done, seconds=5)
    assert observed.read(PROGRESS, operation_type=OPEN, operation_id="x") is None
    assert b'operation_id="x"' not in generate_latest(observed.registry)


def test_progress_series_are_capped_and_the_overflow_is_counted() -> None:
    """Over the limit the oldest running operations keep their series."""
    observed = Observed(series_limit=2)
    running = [
        seen(f"op{i}", "RUNNING", progress=10 * i, started=i) for i in range(1, 5)
    ]

    observed.commit(*running, seconds=10)

    assert observed.label_values(PROGRESS, "operation_id") == {"op1", "op2"}
    assert observed.read(OVERFLOW) == 2
    assert observed.read(MEAN_PROGRESS, operation_type=OPEN) == 0.25

    observed.commit(seen("op1", "SUCCESS", started=1, finished=11), seconds=12)

    assert observed.label_values(PROGRESS, "operation_id") == {"op2", "op3"}
    assert observed.read(PROGRESS, operation_type=OPEN, operation_id="op3") == 0.3
    assert observed.read(OVERFLOW) == 1


def test_operations_forgotten_without_an_event_lose_their_series() -> None:
    """A vanished operation leaves the state with no event; its series goes too."""
    observed = Observed()
    observed.commit(seen("gone", "RUNNING", progress=40, started=1), seconds=2)

    del observed.state.tracked["gone"]
    observed.metrics.operations_vanished(1)
    observed.metrics.batch_committed([], observed.state, at(3))

    assert observed.read(PROGRESS, operation_type=OPEN, operation_id="gone") is None
    assert observed.read(UNFINISHED, operation_type=OPEN, status="RUNNING") == 0
    assert observed.read("toloka_bridge_vanished_operations_total") == 1


def test_oldest_start_and_mean_progress_exist_only_while_a_type_runs() -> None:
    """Per-type aggregates: the earliest start; gone when nothing of the type runs."""
    observed = Observed()

    late, early = seen("a", "RUNNING", started=5), seen("b", "RUNNING", started=2)
    observed.commit(late, early, seconds=6)
    assert observed.read(OLDEST, operation_type=OPEN) == at(2).timestamp()
    assert observed.read(MEAN_PROGRESS, operation_type=OPEN) is None

    first = seen("a", "SUCCESS", started=5, finished=7)
    second = seen("b", "SUCCESS", started=2, finished=7)
    observed.commit(first, second, seconds=8)
    assert observed.read(OLDEST, operation_type=OPEN) is None


def test_unknown_operation_types_are_admitted_up_to_a_limit_then_folded() -> None:
    """New Toloka types get their own label; a flood of them ends up in `other`."""
    observed = Observed()
    flood = [
        seen(f"t{i}", "PENDING", operation_type=f"NEW.TYPE_{i}")
        for i in range(MAX_OPERATION_TYPES)
    ]

    observed.commit(*flood, seconds=1)

    types = observed.label_values("toloka_operations_transitions", "operation_type")
    assert "NEW.TYPE_0" in types
    assert OTHER in types
    assert len(types) == MAX_OPERATION_TYPES + 1


def test_cycle_outcomes_are_counted_and_a_success_stamps_the_last_poll() -> None:
    """Each cycle counts once by outcome; only a success moves the timestamp."""
    observed = Observed(clock_value=1_234.5)
    metrics = observed.metrics

    metrics.cycle_finished(CycleTally(), 0.2, ResponseError("boom", 503))
    assert observed.read(LAST_POLL) == 0
    metrics.cycle_finished(CycleTally(), 0.3, None)

    assert observed.read(POLLS, outcome="toloka_error") == 1
    assert observed.read(POLLS, outcome="success") == 1
    assert observed.read("toloka_bridge_poll_duration_seconds_count") == 2
    assert observed.read(LAST_POLL) == 1_234.5


def test_quota_exhaustion_is_counted_by_window() -> None:
    """A QuotaError names its window; an unknown window is `unknown`."""
    observed = Observed()

    observed.metrics.cycle_finished(CycleTally(), 1.0, QuotaError("w", 3600, "HOUR"))
    observed.metrics.cycle_finished(CycleTally(), 1.0, QuotaError("w", 900, None))

    quota = "toloka_bridge_quota_exhausted_total"
    assert observed.read(quota, interval="HOUR") == 1
    assert observed.read(quota, interval="unknown") == 1
    assert observed.read(POLLS, outcome="quota_exhausted") == 2


def test_a_publish_error_marks_kafka_unreachable_until_the_next_commit() -> None:
    """Publish errors (fencing included) count; the next commit reconnects."""
    observed = Observed()
    metrics = observed.metrics
    metrics.kafka_connected(True)

    metrics.cycle_finished(CycleTally(), 1.0, PublishError("no broker"))
    metrics.cycle_finished(CycleTally(), 1.0, FencedError("fenced"))

    assert observed.read("toloka_bridge_publish_errors_total") == 2
    assert observed.read(POLLS, outcome="fenced") == 1
    assert observed.read("toloka_bridge_kafka_connected") == 0
    assert "Kafka not reachable" in metrics.health.ready()[1]

    metrics.batch_committed([], BridgeState(), at(1))
    assert observed.read("toloka_bridge_kafka_connected") == 1


def test_request_reports_count_requests_retries_and_rate_limit_waits() -> None:
    """Client reports become requests by code, retries by reason, wait seconds."""
    observed = Observed()
    metrics = observed.metrics

    metrics.request_finished("search", "429", 0.05)
    metrics.retry_scheduled("search", "http_429", 2.5)
    metrics.rate_limited(2.5)
    metrics.request_finished("search", "200", 0.1)
    metrics.request_finished("get", "error", 30.0)
    metrics.retry_scheduled("get", "timeout", 0.4)

    requests, retries = (
        "toloka_bridge_api_requests_total",
        "toloka_bridge_api_retries_total",
    )
    assert observed.read(requests, endpoint="search", code="429") == 1
    assert observed.read(requests, endpoint="search", code="200") == 1
    assert observed.read(requests, endpoint="get", code="error") == 1
    assert observed.read(retries, endpoint="search", reason="http_429") == 1
    assert observed.read(retries, endpoint="get", reason="timeout") == 1
    assert observed.read("toloka_bridge_rate_limit_wait_seconds_total") == 2.5
    durations = "toloka_bridge_api_request_duration_seconds_count"
    assert observed.read(durations, endpoint="search") == 2


def test_rejected_items_stale_observations_and_aborts_are_counted() -> None:
    """Skipped items by reason, stale reads and aborted transactions."""
    observed = Observed()

    observed.metrics.item_rejected("bad_datetime")
    observed.metrics.item_rejected("bad_datetime")
    observed.metrics.observation_stale()
    observed.metrics.transaction_aborted()

    invalid = "toloka_bridge_invalid_items_total"
    assert observed.read(invalid, reason="bad_datetime") == 2
    assert observed.read("toloka_bridge_stale_observations_total") == 1
    assert observed.read("toloka_bridge_aborted_transactions_total") == 1


def test_observer_calls_feed_the_health_checks() -> None:
    """Restore, a connection and a successful poll make the bridge ready."""
    now = [100.0]
    health = Health(liveness_seconds=600, clock=lambda: now[0])
    metrics = BridgeMetrics(CollectorRegistry(), Config(), health=health)
    assert metrics.health.ready() == (
        False,
        ["state not restored yet", "Kafka not reachable", "no successful poll yet"],
    )

    metrics.state_restored(BridgeState())
    metrics.cycle_finished(CycleTally(), 0.1, None)
    assert metrics.health.ready() == (True, [])

    now[0] += 700
    assert not metrics.health.alive()
    metrics.heartbeat()
    assert metrics.health.alive()


def test_poll_outcome_names_every_branch_of_the_error_tree() -> None:
    """Subclasses map to their own outcome before their parents."""
    assert poll_outcome(None) == "success"
    assert poll_outcome(FencedError("x")) == "fenced"
    assert poll_outcome(PublishError("x")) == "publish_error"
    assert poll_outcome(QuotaError("x", 1.0, None)) == "quota_exhausted"
    assert poll_outcome(ResponseError("x")) == "toloka_error"


class RecordingPublisher(Publisher):
    """Takes every batch, as a Kafka that always answers would; never connects."""

    def __init__(self) -> None:
        super().__init__(KafkaSettings())
        self.batches: list[Batch] = []

    async def publish(self, batch: Batch) -> dict[int, int]:
        self.batches.append(batch)
        return {}


async def test_a_real_cycle_reports_its_committed_batch_to_the_metrics() -> None:
    """Cycle -> batch_committed carries the events and the state after the commit."""
    observed = Observed()
    options = CycleOptions(
        source=SOURCE,
        keys=StateKeys("test", "acc"),
        initial_load=False,
        progress_events=True,
        max_operation_bytes=65536,
        max_events_per_batch=100,
    )
    publisher = RecordingPublisher()
    cycle = Cycle(observed.state, options, publisher, observed.metrics, lambda: at(20))

    cycle.observe(seen("c", "RUNNING", progress=60, started=3), "refresh", at(10))
    await cycle.flush()

    assert len(publisher.batches) == 1
    assert observed.read(TRANSITIONS, operation_type=OPEN, to_status="RUNNING") == 1
    assert observed.read(PROGRESS, operation_type=OPEN, operation_id="c") == 0.6
    assert observed.read(f"{LAG}_sum") == (20 - 0) + (20 - 3)


@pytest.mark.prometheus
def test_promtool_check_metrics_finds_nothing_to_complain_about() -> None:
    """The exposition of a populated registry passes promtool's linter."""
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.fail(
            "promtool is missing: install it with "
            "`apt-get update && apt-get install -y prometheus`",
            pytrace=False,
        )
    observed = Observed()
    observed.commit(seen("a", "RUNNING", progress=10, started=1), seconds=2)
    observed.commit(seen("b", "FAIL", started=1, finished=2), seconds=3)
    observed.metrics.cycle_finished(CycleTally(), 0.5, None)
    observed.metrics.request_finished("search", "200", 0.1)

    exposition = render_metrics(observed.registry).body
    result = subprocess.run(
        [promtool, "check", "metrics"],
        input=exposition,
        capture_output=True,
        check=False,
    )

    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == b"", result.stdout
