"""The Toloka faults: what each does to the API, what the bridge must do, and the proof.

A `Storm` is one kind of fault with its documented behaviour (the README's table is
written from `behaviour`) and a `verify` that turns the evidence of the storm's window
(metrics before and after, the log lines of the window, the published events) into
checks. Storms whose signatures do not overlap share a window in the CI run.
"""

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from bridge.events import OperationEvent, encode_event
from bridge.simulator.runner import Simulator
from tests.chaos.processes import Samples
from tests.chaos.proxy import ResetProxy

MAX_OPERATION_BYTES = 64 * 1024
MAX_RESPONSE_BYTES = 24_000_000
JUNK_REASONS = (
    "missing_id",
    "missing_type",
    "bad_datetime",
    "absurd_progress",
    "timestamps_out_of_order",
)
SERVER_CODES = ("500", "502", "503", "504")
SLACK = timedelta(seconds=1)


@dataclass
class Evidence:
    """What one window left behind."""

    before: Samples
    after: Samples
    log: str
    began: datetime
    ended: datetime
    sim: Simulator
    proxy: ResetProxy
    published: list[tuple[int, OperationEvent]] = field(default_factory=list)

    def delta(self, name: str, **labels: str) -> float:
        return self.after.total(name, **labels) - self.before.total(name, **labels)

    def retries(self, reason: str) -> float:
        return self.delta("toloka_bridge_api_retries_total", reason=reason)

    def window_events(self) -> list[OperationEvent]:
        """Published events the bridge observed while the window lasted."""
        return [
            event
            for _, event in self.published
            if self.began <= event.observed_at <= self.ended + SLACK
        ]

    def window_operations(self) -> list[Any]:
        """Simulated operations submitted inside the window."""
        began, ended = _micros(self.began), _micros(self.ended)
        return [
            op
            for op in self.sim.world.index.operations.values()
            if began <= op.submitted_us <= ended
        ]


Outcome = tuple[str, bool, str]
Verify = Callable[[Evidence], list[Outcome]]


@dataclass(frozen=True)
class Storm:
    """One fault, its settings, the behaviour the README promises, and the proof."""

    key: str
    title: str
    fault: str
    behaviour: str
    verify: Verify
    faults: dict[str, Any] = field(default_factory=dict)
    proxy_resets: float = 0.0
    proxy_refusal: bool = False
    only_known_operations: bool = False
    undiscoverable: bool = False


def _server_errors(e: Evidence) -> list[Outcome]:
    errors = sum(
        e.delta("toloka_bridge_api_requests_total", code=code) for code in SERVER_CODES
    )
    retried = sum(e.retries(f"http_{code}") for code in SERVER_CODES)
    return [
        (
            "5xx answers were retried",
            errors > 0 and retried > 0,
            f"{errors:.0f} answers, {retried:.0f} retries",
        )
    ]


def _retry_after(e: Evidence) -> list[Outcome]:
    answers = e.delta("toloka_bridge_api_requests_total", code="429")
    retried = e.retries("http_429")
    waited = e.delta("toloka_bridge_rate_limit_wait_seconds_total")
    return [
        (
            "each 429 waited exactly its Retry-After (1 s)",
            answers > 0 and retried > 0 and abs(waited - retried * 1.0) < 0.01,
            f"{answers:.0f} answers, {retried:.0f} retries, {waited:.2f} s waited",
        )
    ]


def _no_header(e: Evidence) -> list[Outcome]:
    retried = e.retries("http_429")
    waited = e.delta("toloka_bridge_rate_limit_wait_seconds_total")
    ceiling = retried * 0.5
    return [
        (
            "429 without Retry-After backed off (each wait at most the backoff max)",
            retried > 0 and 0 < waited <= ceiling,
            f"{retried:.0f} retries, {waited:.2f} s waited, ceiling {ceiling:.1f} s",
        )
    ]


def _day_quota(e: Evidence) -> list[Outcome]:
    counted = e.delta("toloka_bridge_quota_exhausted_total", interval="DAY")
    cycles = e.delta("toloka_bridge_polls_total", outcome="quota_exhausted")
    lines = [
        line
        for line in e.log.splitlines()
        if "quota window DAY" in line and ("WARNING" in line or "ERROR" in line)
    ]
    polled = e.after.value("toloka_bridge_last_successful_poll_timestamp_seconds")
    return [
        (
            "DAY quota counted in toloka_bridge_quota_exhausted_total{interval=DAY}",
            counted > 0 and cycles > 0,
            f"{counted:.0f} quota errors, {cycles:.0f} cycles given up",
        ),
        (
            "DAY quota logged as a WARNING or ERROR",
            bool(lines),
            (lines or ["none"])[0][-200:],
        ),
        (
            "no day of sleep: polls succeeded again right after the storm",
            polled >= e.ended.timestamp(),
            f"last good poll {polled - e.ended.timestamp():+.1f} s after the storm",
        ),
    ]


def _timeouts(e: Evidence) -> list[Outcome]:
    timed_out = e.retries("timeout")
    return [
        (
            "answers slower than toloka.timeout_seconds were retried",
            timed_out > 0,
            f"{timed_out:.0f} retries",
        )
    ]


def _slow(e: Evidence) -> list[Outcome]:
    timed_out = e.retries("timeout")
    polls = e.delta("toloka_bridge_polls_total", outcome="success")
    return [
        (
            "slow answers within the timeout were waited for, not retried",
            timed_out == 0 and polls > 0,
            f"{timed_out:.0f} timeout retries, {polls:.0f} successful polls",
        )
    ]


def _resets(e: Evidence) -> list[Outcome]:
    retried = e.retries("network")
    return [
        (
            "reset and refused connections were retried",
            retried > 0 and e.proxy.resets > 0,
            f"{e.proxy.resets} resets, {e.proxy.refused_periods} refusal periods, "
            f"{retried:.0f} network retries",
        )
    ]


def _malformed(e: Evidence) -> list[Outcome]:
    retried = e.retries("malformed")
    return [
        ("truncated JSON bodies were retried", retried > 0, f"{retried:.0f} retries")
    ]


def _junk(e: Evidence) -> list[Outcome]:
    counts = {
        reason: e.delta("toloka_bridge_invalid_items_total", reason=reason)
        for reason in JUNK_REASONS
    }
    logged = e.log.count("skipped an invalid operation: reason=")
    truth_ids = {r.operation_id for r in e.sim.truth.records}
    phantoms = {ev.operation_id for _, ev in e.published} - truth_ids
    summary = ", ".join(f"{reason} {count:.0f}" for reason, count in counts.items())
    return [
        (
            "every kind of bad item counted in toloka_bridge_invalid_items_total",
            all(count > 0 for count in counts.values()),
            summary,
        ),
        ("bad items logged with their reason", logged > 0, f"{logged} WARNING lines"),
        (
            "no bad item was published",
            not phantoms,
            f"{len(phantoms)} unknown ids published",
        ),
    ]


def _huge(e: Evidence) -> list[Outcome]:
    truncated = [ev for ev in e.window_events() if ev.operation_truncated]
    largest = max((len(encode_event(ev)) for ev in truncated), default=0)
    operation_largest = max((len(ev.operation) for ev in truncated), default=0)
    huge_ids = {
        op.id for op in e.sim.world.index.operations.values() if op.huge_draw < 0.1
    }
    strangers = [ev for ev in truncated if ev.operation_id not in huge_ids]
    return [
        (
            "operations with 5 MB details were published with operation_truncated=true",
            bool(truncated) and not strangers,
            f"{len(truncated)} truncated events, {len(strangers)} of other operations",
        ),
        (
            "truncated operations fit kafka.max_operation_bytes",
            0 < operation_largest <= MAX_OPERATION_BYTES,
            f"largest operation {operation_largest} B, largest event {largest} B",
        ),
    ]


def _oversized(e: Evidence) -> list[Outcome]:
    shrunk = e.log.count("larger than toloka.max_response_bytes")
    polls = e.delta("toloka_bridge_polls_total", outcome="success")
    return [
        (
            "pages over toloka.max_response_bytes were read again in smaller pages",
            shrunk > 0 and polls > 0,
            f"{shrunk} oversized answers, {polls:.0f} successful polls",
        )
    ]


def _late(e: Evidence) -> list[Outcome]:
    late = [op for op in e.window_operations() if op.late_draw < 0.5]
    published = {ev.operation_id for _, ev in e.published}
    missing = [op.id for op in late if op.id not in published]
    return [
        (
            "rows visible up to 3 s late (lag 5 s) were all published",
            bool(late) and not missing,
            f"{len(late)} late rows, {len(missing)} missing",
        )
    ]


def _vanishing(e: Evidence) -> list[Outcome]:
    gets = e.delta("toloka_bridge_api_requests_total", endpoint="get")
    hidden = {
        op.id for op in e.sim.world.index.operations.values() if op.hidden_draw < 0.4
    }
    by_lookup = [
        ev
        for _, ev in e.published
        if ev.seen_by == "lookup" and ev.operation_id in hidden
    ]
    vanished = e.delta("toloka_bridge_vanished_operations_total")
    return [
        (
            "operations hidden from search after being seen were followed by GET",
            gets > 0 and bool(by_lookup),
            f"{gets:.0f} GETs, {len(by_lookup)} transitions seen by lookup",
        ),
        ("none of them was given up as vanished", vanished == 0, f"{vanished:.0f}"),
    ]


def _never_visible(e: Evidence) -> list[Outcome]:
    hidden = [op for op in e.window_operations() if op.hidden_draw < 0.3]
    published = {ev.operation_id for _, ev in e.published}
    found = [op for op in hidden if op.id in published]
    return [
        (
            "operations hidden for their whole life are undiscoverable, not lost",
            True,
            f"{len(hidden)} hidden from birth; {len(found)} still found after the "
            f"storm (unfinished, or finished within the lag), "
            f"{len(hidden) - len(found)} never seen",
        )
    ]


STORMS = (
    Storm(
        key="server_errors",
        title="5xx storm",
        fault="50% of requests answer 500/502/503/504",
        behaviour=(
            "retried with full-jitter exponential backoff up to "
            "`toloka.max_attempts`; a request that still fails ends the cycle, "
            "which is repeated after the loop's backoff; nothing is skipped"
        ),
        verify=_server_errors,
        faults={"server_error_probability": 0.5},
    ),
    Storm(
        key="malformed",
        title="malformed JSON",
        fault="20% of 200 answers have a truncated body",
        behaviour=(
            "retried like a 5xx (`reason=malformed`); a body that does not decode "
            "is never half-used"
        ),
        verify=_malformed,
        faults={"malformed_probability": 0.2},
    ),
    Storm(
        key="junk",
        title="bad items",
        fault=(
            "60% of pages carry 2 bad items: no id, no type, a bad datetime, "
            "progress 250, finished before submitted"
        ),
        behaviour=(
            "each bad item is skipped, counted in "
            "`toloka_bridge_invalid_items_total{reason}` and logged at WARNING with "
            "its id; the rest of the page is used; nothing of it is published"
        ),
        verify=_junk,
        faults={"junk_probability": 0.6, "junk_items_per_page": 2},
    ),
    Storm(
        key="late",
        title="late-visible rows",
        fault="50% of new operations appear in search 3 s after they were submitted",
        behaviour=(
            "caught by the re-read of the `poll.lag_seconds` window (5 s here) and "
            "published with their own timestamps; the lag must exceed the API's "
            "visibility delay"
        ),
        verify=_late,
        faults={
            "late_visibility_probability": 0.5,
            "late_visibility_delay_seconds": 3.0,
        },
    ),
    Storm(
        key="retry_after",
        title="429 with Retry-After",
        fault="30% of requests answer 429 with `Retry-After: 1`",
        behaviour=(
            "waits exactly `Retry-After` (counted in "
            "`toloka_bridge_rate_limit_wait_seconds_total`), then retries"
        ),
        verify=_retry_after,
        faults={"rate_limit_probability": 0.3, "retry_after_seconds": 1.0},
    ),
    Storm(
        key="slow",
        title="slow answers",
        fault="50% of requests answer after 0.4 s (timeout 1 s)",
        behaviour="waited for; nothing is retried",
        verify=_slow,
        faults={"slow_probability": 0.5, "slow_delay_seconds": 0.4},
    ),
    Storm(
        key="no_header",
        title="429 without Retry-After",
        fault="30% of requests answer 429 without `Retry-After`",
        behaviour=(
            "full-jitter exponential backoff (at most `toloka.backoff_max_seconds` "
            "per wait), then retries"
        ),
        verify=_no_header,
        faults={"rate_limit_no_header_probability": 0.3},
    ),
    Storm(
        key="timeouts",
        title="timeouts",
        fault="20% of requests answer after 2.5 s (timeout 1 s)",
        behaviour=(
            "abandoned after `toloka.timeout_seconds`, retried (`reason=timeout`)"
        ),
        verify=_timeouts,
        faults={"slow_probability": 0.2, "slow_delay_seconds": 2.5},
    ),
    Storm(
        key="resets",
        title="connection resets",
        fault=(
            "a TCP proxy resets 20% of requests or answers (RST) and refuses "
            "connections for 2 s"
        ),
        behaviour="retried as network errors (`reason=network`)",
        verify=_resets,
        proxy_resets=0.2,
        proxy_refusal=True,
    ),
    Storm(
        key="day_quota",
        title="DAY quota",
        fault="10% of requests answer 429 naming the DAY quota (`payload.interval`)",
        behaviour=(
            "a wait over `toloka.max_retry_after_seconds` is not slept: the cycle "
            "ends at once with a WARNING naming the quota window, counted in "
            "`toloka_bridge_quota_exhausted_total{interval}`; the loop tries again "
            "after its backoff (at most 30 s)"
        ),
        verify=_day_quota,
        faults={"quota_probability": 0.1, "quota_interval": "DAY"},
    ),
    Storm(
        key="huge",
        title="5 MB details",
        fault="10% of finished operations carry 5 MB of `details`",
        behaviour=(
            "published with `details` (then `parameters`) dropped and "
            "`operation_truncated=true`, under `kafka.max_operation_bytes` (64 KiB)"
        ),
        verify=_huge,
        faults={"huge_details_probability": 0.1, "huge_details_bytes": 5_000_000},
    ),
    Storm(
        key="oversized",
        title="oversized pages",
        fault=(
            "15% of finished operations carry 5 MB of `details`, so pages exceed "
            "`toloka.max_response_bytes` (24 MB here)"
        ),
        behaviour=(
            "the scan asks for the same position again with half the page size "
            "until the answer fits; only one operation larger than the limit on its "
            "own stops the bridge (exit 1, naming the setting)"
        ),
        verify=_oversized,
        # At 40% a 300-item page was 600 MB, which the simulator could not build
        # within toloka.timeout_seconds on a busy CI machine: timeouts, not oversize.
        faults={"huge_details_probability": 0.15, "huge_details_bytes": 5_000_000},
    ),
    Storm(
        key="vanishing",
        title="operations vanish from search",
        fault=(
            "40% of the operations already seen disappear from every search "
            "(GET by id still answers)"
        ),
        behaviour=(
            "an unfinished operation missing from the status lists is read by id "
            "every cycle (up to `poll.max_lookups_per_cycle`) until it finishes; its "
            "transitions are published with `seen_by=lookup`"
        ),
        verify=_vanishing,
        faults={"hidden_probability": 0.4},
        only_known_operations=True,
    ),
    Storm(
        key="never_visible",
        title="operations hidden from birth",
        fault="30% of new operations appear in no search while the storm lasts",
        behaviour=(
            "no list-based poller can discover them: those still unfinished when "
            "they reappear are published (first sight, steps inferred); those that "
            "finished out of sight more than `poll.lag_seconds` before reappearing "
            "are not published and are reported as undiscoverable, not as lost"
        ),
        verify=_never_visible,
        faults={"hidden_probability": 0.3},
        undiscoverable=True,
    ),
)

STORMS_BY_KEY = {storm.key: storm for storm in STORMS}

CI_WINDOWS = (
    ("server_errors", "malformed", "junk", "late"),
    ("retry_after", "slow"),
    ("no_header", "resets"),
    ("timeouts",),
    ("day_quota",),
    ("huge",),
    ("oversized",),
    ("vanishing",),
    ("never_visible",),
)


def _micros(moment: datetime) -> int:
    return int(moment.timestamp() * 1_000_000)
