"""The HTTP endpoints over real HTTP on 127.0.0.1, and the health rules behind them."""

import contextlib
import gzip
import socket
import threading
from collections.abc import AsyncIterator, Iterable

import httpx
import msgspec
import pytest
from prometheus_client import CollectorRegistry, Counter
from prometheus_client.metrics_core import GaugeMetricFamily, Metric

from bridge.config import (
    Config,
    HttpSettings,
    KafkaSettings,
    PollSettings,
    TolokaSettings,
)
from bridge.cycle import CycleTally
from bridge.endpoints import Health, liveness_window_seconds, serve_endpoints
from bridge.errors import ConfigError
from bridge.metrics import BridgeMetrics
from bridge.state import BridgeState

LOCAL = HttpSettings(host="127.0.0.1", port=0)
OPENMETRICS = "application/openmetrics-text; version=1.0.0; charset=utf-8"


class FakeClock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


class ThreadRecorder:
    """A collector that remembers which thread collected it."""

    def __init__(self) -> None:
        self.threads: list[threading.Thread] = []

    def collect(self) -> Iterable[Metric]:
        self.threads.append(threading.current_thread())
        yield GaugeMetricFamily("recorder_collections", "Collections.", value=1)


def health_with(clock: FakeClock) -> Health:
    return Health(liveness_seconds=600, ready_poll_age_seconds=60, clock=clock)


@contextlib.asynccontextmanager
async def served(
    registry: CollectorRegistry, health: Health
) -> AsyncIterator[httpx.AsyncClient]:
    """The endpoints on a free local port, and a client pointed at them."""
    async with (
        serve_endpoints(LOCAL, registry, health) as endpoints,
        httpx.AsyncClient(base_url=endpoints.base_url) as client,
    ):
        yield client


async def test_metrics_serves_the_text_exposition_of_the_registry() -> None:
    """/metrics answers 200 with the classic text format and the bridge's metrics."""
    registry = CollectorRegistry()
    BridgeMetrics(registry, Config())

    async with (
        serve_endpoints(LOCAL, registry, Health()) as endpoints,
        httpx.AsyncClient() as client,
    ):
        response = await client.get(f"{endpoints.base_url}/metrics")

    assert endpoints.host == "127.0.0.1"
    assert endpoints.port > 0
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    assert "# TYPE toloka_operations_transitions_total counter" in response.text
    assert 'toloka_bridge_build_info{python="' in response.text


async def test_metrics_negotiates_openmetrics_and_gzip() -> None:
    """An OpenMetrics Accept header and gzip encoding are honoured."""
    registry = CollectorRegistry()
    BridgeMetrics(registry, Config())
    headers = {"Accept": OPENMETRICS, "Accept-Encoding": "gzip"}

    async with (
        served(registry, Health()) as client,
        client.stream("GET", "/metrics", headers=headers) as response,
    ):
        raw = b"".join([chunk async for chunk in response.aiter_raw()])

    assert response.headers["content-type"].startswith("application/openmetrics-text")
    assert response.headers["content-encoding"] == "gzip"
    text = gzip.decompress(raw).decode()
    assert text.endswith("# EOF\n")
    assert "toloka_bridge_polls_total" in text


async def test_metrics_leaves_out_the_created_series() -> None:
    """Counters and histograms are exposed without their `_created` samples."""
    registry = CollectorRegistry()
    Counter("demo_things", "Things.", registry=registry).inc()

    async with served(registry, Health()) as client:
        text = (await client.get("/metrics")).text
        openmetrics = await client.get("/metrics", headers={"Accept": OPENMETRICS})

    assert "demo_things_total 1.0" in text
    assert "_created" not in text
    assert "_created" not in openmetrics.text
    assert registry.get_sample_value("demo_things_created") is not None


async def test_metrics_are_rendered_off_the_event_loop_thread() -> None:
    """The exposition runs in a worker thread, so a scrape never holds the loop."""
    registry = CollectorRegistry()
    recorder = ThreadRecorder()
    registry.register(recorder)

    async with served(registry, Health()) as client:
        response = await client.get("/metrics")

    assert "recorder_collections 1.0" in response.text
    assert len(recorder.threads) == 1
    assert recorder.threads[0] is not threading.current_thread()
    assert recorder.threads[0].name.startswith("metrics-exposition")


async def test_healthz_turns_503_when_the_heartbeat_is_too_old() -> None:
    """Alive within the liveness window, stalled after it, alive again on a beat."""
    clock = FakeClock()
    health = health_with(clock)

    async with served(CollectorRegistry(), health) as client:
        fresh = await client.get("/healthz")
        clock.now += 601
        stalled = await client.get("/healthz")
        health.beat()
        revived = await client.get("/healthz")

    assert (fresh.status_code, fresh.text) == (200, "ok: last heartbeat 0.0 s ago\n")
    assert stalled.status_code == 503
    assert stalled.text == "stalled: last heartbeat 601 s ago, limit 600 s\n"
    assert revived.status_code == 200
    assert stalled.headers["content-type"].startswith("text/plain")


async def test_readyz_lists_what_is_missing_until_the_bridge_is_ready() -> None:
    """Not ready before restore, Kafka and a poll; ready after; not ready when stale."""
    clock = FakeClock()
    metrics = BridgeMetrics(CollectorRegistry(), Config(), health=health_with(clock))

    async with served(CollectorRegistry(), metrics.health) as client:
        starting = await client.get("/readyz")
        metrics.state_restored(BridgeState())
        restored = await client.get("/readyz")
        metrics.cycle_finished(CycleTally(), 0.1, None)
        ready = await client.get("/readyz")
        clock.now += 61
        stale = await client.get("/readyz")

    assert starting.status_code == 503
    assert starting.headers["content-type"].startswith("application/json")
    assert starting.json()["reasons"] == [
        "state not restored yet",
        "Kafka not reachable",
        "no successful poll yet",
    ]
    assert restored.json() == {"ready": False, "reasons": ["no successful poll yet"]}
    assert (ready.status_code, ready.json()) == (200, {"ready": True, "reasons": []})
    assert stale.status_code == 503
    assert stale.json()["reasons"] == ["last successful poll 61 s ago, more than 60 s"]


async def test_a_port_in_use_is_a_config_error_naming_the_key() -> None:
    """Binding a taken port fails with a message that names http.port."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        settings = HttpSettings(host="127.0.0.1", port=port)

        with pytest.raises(ConfigError, match=rf"http.port = {port}: cannot listen"):
            async with serve_endpoints(settings, CollectorRegistry(), Health()):
                pass


async def test_the_port_is_released_when_the_block_exits() -> None:
    """After the block, nothing listens on the port any more."""
    async with serve_endpoints(LOCAL, CollectorRegistry(), Health()) as endpoints:
        pass

    async with httpx.AsyncClient(base_url=endpoints.base_url) as client:
        with pytest.raises(httpx.ConnectError):
            await client.get("/healthz")


def test_liveness_window_covers_one_request_with_all_its_retries() -> None:
    """A request that times out and waits out every Retry-After is no stall."""
    toloka = TolokaSettings(
        max_attempts=4, timeout_seconds=30, max_retry_after_seconds=300
    )
    kafka = KafkaSettings(transaction_timeout_seconds=60, request_timeout_seconds=30)
    config = Config(toloka=toloka, kafka=kafka)

    window = liveness_window_seconds(config)

    longest_request = 4 * 30 + 3 * 300
    assert window >= longest_request + 60
    assert window >= 600


def test_liveness_window_has_a_floor_of_ten_intervals_and_ten_minutes() -> None:
    """Quick settings still give the loop 10 minutes, slow polls ten intervals."""
    toloka = TolokaSettings(max_attempts=1, timeout_seconds=1)
    kafka = KafkaSettings(
        transaction_timeout_seconds=1,
        request_timeout_seconds=1,
        connect_timeout_seconds=1,
    )
    quick = Config(toloka=toloka, kafka=kafka)
    slow = msgspec.structs.replace(quick, poll=PollSettings(interval_seconds=120))

    assert liveness_window_seconds(quick) == 600
    assert liveness_window_seconds(slow) == 1200


def test_health_for_config_takes_the_ready_age_from_the_settings() -> None:
    """http.ready_poll_age_seconds decides how old the last poll may be."""
    config = Config(http=HttpSettings(ready_poll_age_seconds=5))
    clock = FakeClock()
    health = Health.for_config(config, clock)
    health.state_restored()
    health.kafka_connected(True)
    health.poll_succeeded()

    clock.now += 6

    assert health.ready(clock.now) == (
        False,
        ["last successful poll 6 s ago, more than 5 s"],
    )
    assert health.liveness_seconds == liveness_window_seconds(config)
