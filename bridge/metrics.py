"""Prometheus metrics: what Toloka's operations are doing, and how the bridge is.

`BridgeMetrics` observes the Toloka client (`RequestObserver`), the poll cycles
(`CycleObserver`, `PollObserver`) and the start-up (`state_restored`). Every update
happens on the asyncio side, in the observer calls; the exposition, which runs in a
worker thread, only reads prometheus-client's own metric objects, which lock their
values. Nothing here iterates a mutable dict of the bridge from another thread.

Domain counters and histograms (`toloka_operations_*`, `toloka_operation_*`) count
what happened while the bridge watched: events of the initial load, which replay
history, appear only in `toloka_bridge_events_published_total` and in the current-state
gauges. The current-state gauges are recomputed from the committed `BridgeState` after
every batch and after the restore, so they are right after a restart.

Label values that come from Toloka (operation types, statuses, rejection reasons) are
admitted up to a limit and folded into `other` after it, so a misbehaving API cannot
blow up the series count. The per-operation progress series are capped by
`http.operation_series_limit`; the running operations left without one are counted.

The `_created` series of counters and histograms are dropped by the exposition, see
`bridge.endpoints`.
"""

import heapq
import platform
import time
from collections import Counter as Tally
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from typing import get_args

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info
from prometheus_client.process_collector import ProcessCollector

from bridge import __version__
from bridge.config import Config
from bridge.cycle import CycleTally
from bridge.detector import TrackedOperation, status_rank
from bridge.endpoints import Health
from bridge.errors import (
    AuthError,
    BridgeError,
    FencedError,
    PublishError,
    QuotaError,
    SourceError,
)
from bridge.events import EventKind, OperationEvent
from bridge.operation import (
    FAIL,
    KNOWN_STATUSES,
    PENDING,
    REJECTION_REASONS,
    RUNNING,
    TERMINAL_STATUSES,
)
from bridge.state import BridgeState

OTHER = "other"
KNOWN_OPERATION_TYPES = (
    "POOL.OPEN",
    "POOL.CLOSE",
    "POOL.ARCHIVE",
    "POOL.CLONE",
    "TRAINING.OPEN",
    "TRAINING.CLOSE",
    "TRAINING.ARCHIVE",
    "TRAINING.CLONE",
    "PROJECT.ARCHIVE",
    "TASK.BATCH_CREATE",
    "TASK_SUITE.BATCH_CREATE",
    "USER_BONUS.BATCH_CREATE",
    "SOLUTION.AGGREGATE",
    "ANALYTICS",
    "KNOWN_SOLUTIONS.GENERATE",
    "PSEUDO.PSEUDO",
)
POLL_OUTCOMES = (
    "success",
    "toloka_error",
    "auth_error",
    "quota_exhausted",
    "publish_error",
    "fenced",
    "error",
)
ENDPOINTS = ("search", "get")
COMMON_CODES = ("200", "429", "500", "502", "503", "504", "error")
COMMON_RETRY_REASONS = ("timeout", "network", "malformed", "http_429")
QUOTA_INTERVALS = ("MIN", "HOUR", "DAY", "unknown")
MAX_OPERATION_TYPES = 64
MAX_LABEL_VALUES = 32

OPERATION_SECONDS_BUCKETS: tuple[float, ...] = (1, 5, 15, 30, 60, 150, 300, 600)
OPERATION_SECONDS_BUCKETS += (1800, 3600, 7200, 14400, 28800, 43200, 86400)
LAG_SECONDS_BUCKETS = (0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)
POLL_SECONDS_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900)
REQUEST_SECONDS_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)


class BoundedLabel:
    """Admits label values up to a limit; later new values all become `other`."""

    def __init__(self, known: Iterable[str], limit: int) -> None:
        self._admitted = set(known)
        self._limit = max(limit, len(self._admitted))

    def __call__(self, value: str) -> str:
        if value in self._admitted:
            return value
        if len(self._admitted) >= self._limit:
            return OTHER
        self._admitted.add(value)
        return value


class _Definer:
    """Creates metric families in one registry with short calls."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self._registry = registry

    def counter(self, name: str, documentation: str, *labels: str) -> Counter:
        return Counter(name, documentation, labels, registry=self._registry)

    def gauge(self, name: str, documentation: str, *labels: str) -> Gauge:
        return Gauge(name, documentation, labels, registry=self._registry)

    def histogram(
        self, name: str, documentation: str, buckets: Sequence[float], *labels: str
    ) -> Histogram:
        return Histogram(
            name, documentation, labels, buckets=buckets, registry=self._registry
        )


class BridgeMetrics:
    """Every metric the bridge exports, updated from the observer calls."""

    def __init__(
        self,
        registry: CollectorRegistry,
        config: Config,
        *,
        health: Health | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.health = health or Health.for_config(config)
        self._clock = clock
        self._series_limit = config.http.operation_series_limit
        self._types = BoundedLabel(KNOWN_OPERATION_TYPES, MAX_OPERATION_TYPES)
        self._statuses = BoundedLabel(KNOWN_STATUSES, MAX_LABEL_VALUES)
        self._endpoints = BoundedLabel(ENDPOINTS, MAX_LABEL_VALUES)
        self._codes = BoundedLabel(COMMON_CODES, MAX_LABEL_VALUES)
        self._retry_reasons = BoundedLabel(COMMON_RETRY_REASONS, MAX_LABEL_VALUES)
        self._rejections = BoundedLabel(REJECTION_REASONS, MAX_LABEL_VALUES)
        self._unfinished_keys: set[tuple[str, str]] = set()
        self._mean_types: set[str] = set()
        self._oldest_types: set[str] = set()
        self._progress_series: dict[str, str] = {}

        self._define_domain(registry)
        self._define_bridge(registry)
        ProcessCollector(registry=registry)
        self._precreate()
        self.transactions_enabled(config.kafka.transactions)

    # RequestObserver

    def request_finished(self, endpoint: str, status: str, seconds: float) -> None:
        endpoint = self._endpoints(endpoint)
        self._requests.labels(endpoint, self._codes(status)).inc()
        self._request_seconds.labels(endpoint).observe(seconds)

    def retry_scheduled(self, endpoint: str, reason: str, delay_seconds: float) -> None:
        endpoint = self._endpoints(endpoint)
        self._retries.labels(endpoint, self._retry_reasons(reason)).inc()

    def rate_limited(self, delay_seconds: float) -> None:
        self._rate_limit_seconds.inc(max(delay_seconds, 0.0))

    # CycleObserver

    def item_rejected(self, reason: str) -> None:
        self._invalid_items.labels(self._rejections(reason)).inc()

    def observation_stale(self) -> None:
        self._stale.inc()

    def batch_committed(
        self, events: list[OperationEvent], state: BridgeState, committed_at: datetime
    ) -> None:
        """Count the events Kafka took, then recompute the current-state gauges."""
        for event in events:
            self._published.labels(event.kind).inc()
            if not event.initial_load:
                self._count_change(event, state, committed_at)

        self._last_publish.set(committed_at.timestamp())
        self.kafka_connected(True)
        self._refresh_state_gauges(state)

    # PollObserver

    def cycle_finished(
        self, tally: CycleTally, seconds: float, error: BridgeError | None
    ) -> None:
        self._polls.labels(poll_outcome(error)).inc()
        self._poll_seconds.observe(seconds)

        if error is None:
            self._last_poll.set(self._clock())
            self.health.poll_succeeded()
        elif isinstance(error, QuotaError):
            interval = error.interval if error.interval in QUOTA_INTERVALS else None
            self._quota_exhausted.labels(interval or "unknown").inc()
        elif isinstance(error, PublishError):
            self._publish_errors.inc()
            self.kafka_connected(False)

    def operations_vanished(self, count: int) -> None:
        self._vanished.inc(count)

    def heartbeat(self) -> None:
        self.health.beat()

    # Start-up and the publisher

    def state_restored(self, state: BridgeState) -> None:
        """The state topic was read to its end: gauges start from what it says."""
        self._refresh_state_gauges(state)
        self.kafka_connected(True)
        self.health.state_restored()

    def kafka_connected(self, connected: bool) -> None:
        self._kafka_connected.set(1 if connected else 0)
        self.health.kafka_connected(connected)

    def transactions_enabled(self, on: bool) -> None:
        self._transactions.set(1 if on else 0)

    def transaction_aborted(self) -> None:
        self._aborted.inc()

    # Events

    def _count_change(
        self, event: OperationEvent, state: BridgeState, committed_at: datetime
    ) -> None:
        operation_type = self._types(event.operation_type)
        if event.kind == "progressed":
            self._progress_events.labels(operation_type).inc()
            return

        self._transitions.labels(operation_type, self._statuses(event.status)).inc()
        lag_seconds = (committed_at - event.occurred_at).total_seconds()
        self._detection_lag.observe(max(lag_seconds, 0.0))
        if event.status == FAIL:
            self._failures.labels(operation_type).inc()

        tracked = state.tracked.get(event.operation_id)
        if tracked is not None:
            self._observe_timing(event, tracked, operation_type)

    def _observe_timing(
        self, event: OperationEvent, tracked: TrackedOperation, operation_type: str
    ) -> None:
        """Queue wait when an operation starts, duration when it ends."""
        started, finished = tracked.started, tracked.finished
        if started is None:
            return

        if event.previous_status == PENDING and status_rank(event.status) == 1:
            wait_seconds = (started - tracked.submitted).total_seconds()
            self._queue_wait.labels(operation_type).observe(max(wait_seconds, 0.0))
        elif event.status in TERMINAL_STATUSES and finished is not None:
            run_seconds = (finished - started).total_seconds()
            outcome = self._duration.labels(operation_type, event.status)
            outcome.observe(max(run_seconds, 0.0))

    # Current state

    def _refresh_state_gauges(self, state: BridgeState) -> None:
        unfinished = [op for op in state.tracked.values() if not op.is_terminal]
        running = [op for op in unfinished if status_rank(op.status) == 1]

        self._tracked.set(len(state.tracked))
        self._set_unfinished(unfinished)
        self._set_running_aggregates(running)
        self._set_progress_series(running)

    def _set_unfinished(self, unfinished: list[TrackedOperation]) -> None:
        counts = Tally(
            (self._types(op.operation_type), self._statuses(op.status))
            for op in unfinished
        )
        self._unfinished_keys.update(counts)
        for key in self._unfinished_keys:
            self._unfinished.labels(*key).set(counts.get(key, 0))

    def _set_running_aggregates(self, running: list[TrackedOperation]) -> None:
        """Mean progress and oldest start per type, only for types running now."""
        ratios: dict[str, list[float]] = {}
        starts: dict[str, datetime] = {}
        for operation in running:
            operation_type = self._types(operation.operation_type)
            started = operation.started or operation.submitted
            starts[operation_type] = min(started, starts.get(operation_type, started))
            ratio = _ratio(operation.progress)
            if ratio is not None:
                ratios.setdefault(operation_type, []).append(ratio)

        means = {name: sum(values) / len(values) for name, values in ratios.items()}
        oldest = {name: started.timestamp() for name, started in starts.items()}
        self._mean_types = _replace_series(self._progress_mean, self._mean_types, means)
        self._oldest_types = _replace_series(
            self._oldest_started, self._oldest_types, oldest
        )

    def _set_progress_series(self, running: list[TrackedOperation]) -> None:
        """One series per running operation with a progress, up to the limit."""
        candidates = {op.operation_id: op for op in running if op.progress is not None}
        kept = [i for i in self._progress_series if i in candidates]
        room = max(self._series_limit - len(kept), 0)
        newcomers = heapq.nsmallest(
            room,
            (op for i, op in candidates.items() if i not in self._progress_series),
            key=lambda op: (op.started or op.submitted, op.operation_id),
        )
        chosen = kept[: self._series_limit] + [op.operation_id for op in newcomers]

        for operation_id in set(self._progress_series) - set(chosen):
            operation_type = self._progress_series.pop(operation_id)
            self._progress.remove(operation_type, operation_id)
        for operation_id in chosen:
            operation = candidates[operation_id]
            operation_type = self._types(operation.operation_type)
            self._progress_series[operation_id] = operation_type
            ratio = _ratio(operation.progress) or 0.0
            self._progress.labels(operation_type, operation_id).set(ratio)
        self._series_overflow.set(len(candidates) - len(chosen))

    # Definitions

    def _define_domain(self, registry: CollectorRegistry) -> None:
        define = _Definer(registry)
        self._transitions = define.counter(
            "toloka_operations_transitions",
            "Status transitions of operations, from published events (initial load "
            "excluded); a first sight is a transition to PENDING.",
            "operation_type",
            "to_status",
        )
        self._progress_events = define.counter(
            "toloka_operations_progress_events",
            "Published progress steps of running operations (initial load excluded).",
            "operation_type",
        )
        self._failures = define.counter(
            "toloka_operations_failures",
            "Operations that ended in FAIL (initial load excluded).",
            "operation_type",
        )
        self._unfinished = define.gauge(
            "toloka_operations_unfinished",
            "Operations not finished yet, by status, from the committed state.",
            "operation_type",
            "status",
        )
        self._duration = define.histogram(
            "toloka_operation_duration_seconds",
            "Time from started to finished of operations that ended while watched.",
            OPERATION_SECONDS_BUCKETS,
            "operation_type",
            "outcome",
        )
        self._queue_wait = define.histogram(
            "toloka_operation_queue_wait_seconds",
            "Time from submitted to started of operations that started while watched.",
            OPERATION_SECONDS_BUCKETS,
            "operation_type",
        )
        self._progress = define.gauge(
            "toloka_operation_progress_ratio",
            "Progress (0-1) of one running operation; removed when it finishes; at "
            "most http.operation_series_limit series.",
            "operation_type",
            "operation_id",
        )
        self._progress_mean = define.gauge(
            "toloka_operations_running_progress_mean_ratio",
            "Mean progress (0-1) of the running operations of a type that report one.",
            "operation_type",
        )
        self._oldest_started = define.gauge(
            "toloka_operations_oldest_running_started_timestamp_seconds",
            "Unix time when the longest-running operation of a type started.",
            "operation_type",
        )

    def _define_bridge(self, registry: CollectorRegistry) -> None:
        define = _Definer(registry)
        build = Info(
            "toloka_bridge_build", "Bridge and Python version.", registry=registry
        )
        build.info({"version": __version__, "python": platform.python_version()})
        self._polls = define.counter(
            "toloka_bridge_polls", "Poll cycles by outcome.", "outcome"
        )
        self._poll_seconds = define.histogram(
            "toloka_bridge_poll_duration_seconds",
            "Duration of whole poll cycles, publishing included.",
            POLL_SECONDS_BUCKETS,
        )
        self._requests = define.counter(
            "toloka_bridge_api_requests",
            "Toloka API request attempts by endpoint and HTTP status code ('error' "
            "when no answer came).",
            "endpoint",
            "code",
        )
        self._request_seconds = define.histogram(
            "toloka_bridge_api_request_duration_seconds",
            "Duration of single Toloka API request attempts.",
            REQUEST_SECONDS_BUCKETS,
            "endpoint",
        )
        self._retries = define.counter(
            "toloka_bridge_api_retries",
            "Toloka API requests scheduled for another attempt, by reason.",
            "endpoint",
            "reason",
        )
        self._rate_limit_seconds = define.counter(
            "toloka_bridge_rate_limit_wait_seconds",
            "Seconds spent waiting before retrying requests Toloka answered with 429.",
        )
        self._quota_exhausted = define.counter(
            "toloka_bridge_quota_exhausted",
            "Cycles given up because a 429 asked to wait longer than "
            "toloka.max_retry_after_seconds, by quota window.",
            "interval",
        )
        self._published = define.counter(
            "toloka_bridge_events_published", "Events committed to Kafka.", "kind"
        )
        self._publish_errors = define.counter(
            "toloka_bridge_publish_errors", "Batches Kafka did not take."
        )
        self._aborted = define.counter(
            "toloka_bridge_aborted_transactions",
            "Kafka transactions the publisher aborted.",
        )
        self._invalid_items = define.counter(
            "toloka_bridge_invalid_items",
            "Operations from Toloka skipped as unusable, by reason.",
            "reason",
        )
        self._stale = define.counter(
            "toloka_bridge_stale_observations",
            "Observations older than what was already published, ignored.",
        )
        self._vanished = define.counter(
            "toloka_bridge_vanished_operations",
            "Unfinished operations that Toloka no longer knows, forgotten.",
        )
        self._tracked = define.gauge(
            "toloka_bridge_tracked_operations",
            "Operations in the committed state (unfinished and recently finished).",
        )
        self._series_overflow = define.gauge(
            "toloka_bridge_operation_series_overflow",
            "Running operations left without a progress series by "
            "http.operation_series_limit.",
        )
        self._last_poll = define.gauge(
            "toloka_bridge_last_successful_poll_timestamp_seconds",
            "Unix time when a poll cycle last succeeded; 0 before the first.",
        )
        self._last_publish = define.gauge(
            "toloka_bridge_last_successful_publish_timestamp_seconds",
            "Unix time when Kafka last committed a batch; 0 before the first.",
        )
        self._detection_lag = define.histogram(
            "toloka_bridge_detection_lag_seconds",
            "Time from a status change (by the operation's own timestamps) to its "
            "commit in Kafka; initial load and progress steps excluded.",
            LAG_SECONDS_BUCKETS,
        )
        self._transactions = define.gauge(
            "toloka_bridge_transactions_enabled",
            "1 when events and state commit in Kafka transactions, 0 if at least once.",
        )
        self._kafka_connected = define.gauge(
            "toloka_bridge_kafka_connected",
            "1 when the last interaction with Kafka succeeded.",
        )

    def _precreate(self) -> None:
        """Known label combinations start at 0, so rate() sees their first change."""
        for operation_type in KNOWN_OPERATION_TYPES:
            self._progress_events.labels(operation_type)
            self._failures.labels(operation_type)
            for status in KNOWN_STATUSES:
                self._transitions.labels(operation_type, status)
            for status in (PENDING, RUNNING):
                self._unfinished_keys.add((operation_type, status))
                self._unfinished.labels(operation_type, status)

        for outcome in POLL_OUTCOMES:
            self._polls.labels(outcome)
        for endpoint in ENDPOINTS:
            for code in COMMON_CODES:
                self._requests.labels(endpoint, code)
            for reason in COMMON_RETRY_REASONS:
                self._retries.labels(endpoint, reason)
        for interval in QUOTA_INTERVALS:
            self._quota_exhausted.labels(interval)
        for kind in get_args(EventKind):
            self._published.labels(kind)
        for reason in REJECTION_REASONS:
            self._invalid_items.labels(reason)


def poll_outcome(error: BridgeError | None) -> str:
    """The `outcome` label of a finished poll cycle."""
    if error is None:
        return "success"
    for error_class, outcome in _OUTCOMES:
        if isinstance(error, error_class):
            return outcome
    return "error"


def _replace_series(
    gauge: Gauge, present: set[str], values: dict[str, float]
) -> set[str]:
    """Set one series per key of `values`, remove the other present ones."""
    for label in present - values.keys():
        gauge.remove(label)
    for label, value in values.items():
        gauge.labels(label).set(value)
    return set(values)


def _ratio(progress: int | None) -> float | None:
    if progress is None:
        return None
    return min(max(progress / 100.0, 0.0), 1.0)


_OUTCOMES: tuple[tuple[type[BridgeError], str], ...] = (
    (FencedError, "fenced"),
    (PublishError, "publish_error"),
    (AuthError, "auth_error"),
    (QuotaError, "quota_exhausted"),
    (SourceError, "toloka_error"),
)
