"""HTTP endpoints for Prometheus and Kubernetes: /metrics, /healthz, /readyz.

`/metrics` renders prometheus-client's own exposition (the classic text format, or
OpenMetrics when the scraper asks for it; gzip when accepted) in a dedicated worker
thread, so a scrape never holds the event loop, however many per-operation series
exist. The `_created` series of counters and histograms are dropped: the classic text
format turns each into a separate gauge series (doubling the series of every
pre-created counter), no panel or alert of ours reads them, and `rate()` copes with
counter resets without them.

`/healthz` says whether the poll loop is alive: it answered a heartbeat recently. The
answer itself proves the event loop runs, since the handler runs on it. `/readyz`
says whether the bridge does its job: the state is restored, Kafka is reachable and a
poll succeeded recently; a 503 lists what is missing.
"""

import asyncio
import contextlib
import gzip
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Self

import msgspec
from aiohttp import hdrs, web
from prometheus_client.exposition import choose_encoder, gzip_accepted
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from bridge.config import Config, HttpSettings
from bridge.errors import ConfigError

logger = logging.getLogger(__name__)

MIN_LIVENESS_SECONDS = 600.0
LIVENESS_INTERVALS = 10
SHUTDOWN_TIMEOUT_SECONDS = 5.0


class Health:
    """What the probes answer, fed by the metrics' observer calls.

    Times come from a monotonic clock; the creation counts as the first heartbeat,
    so the window also bounds the restore that runs before the loop starts.
    """

    def __init__(
        self,
        liveness_seconds: float = MIN_LIVENESS_SECONDS,
        ready_poll_age_seconds: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.liveness_seconds = liveness_seconds
        self.ready_poll_age_seconds = ready_poll_age_seconds
        self.clock = clock
        self._last_beat = clock()
        self._last_poll: float | None = None
        self._restored = False
        self._kafka_connected = False

    @classmethod
    def for_config(
        cls, config: Config, clock: Callable[[], float] = time.monotonic
    ) -> Self:
        window_seconds = liveness_window_seconds(config)
        return cls(window_seconds, config.http.ready_poll_age_seconds, clock)

    def beat(self) -> None:
        self._last_beat = self.clock()

    def poll_succeeded(self) -> None:
        self._last_poll = self.clock()
        self.beat()

    def state_restored(self) -> None:
        self._restored = True
        self.beat()

    def kafka_connected(self, connected: bool) -> None:
        self._kafka_connected = connected

    def heartbeat_age_seconds(self, now: float | None = None) -> float:
        return (self.clock() if now is None else now) - self._last_beat

    def alive(self, now: float | None = None) -> bool:
        return self.heartbeat_age_seconds(now) <= self.liveness_seconds

    def ready(self, now: float | None = None) -> tuple[bool, list[str]]:
        """Whether the bridge does its job, and if not, every reason why."""
        now = self.clock() if now is None else now
        reasons = []
        if not self._restored:
            reasons.append("state not restored yet")
        if not self._kafka_connected:
            reasons.append("Kafka not reachable")
        if self._last_poll is None:
            reasons.append("no successful poll yet")
        elif now - self._last_poll > self.ready_poll_age_seconds:
            reasons.append(
                f"last successful poll {now - self._last_poll:.0f} s ago, "
                f"more than {self.ready_poll_age_seconds:g} s"
            )
        return not reasons, reasons


def liveness_window_seconds(config: Config) -> float:
    """The longest the loop may legitimately go without a heartbeat.

    The loop beats after every page and every wait. Between two beats lie at most
    one publish (a transaction, or a producer start) and one request with all its
    attempts: each attempt may time out and each wait may last up to
    `max_retry_after_seconds`. Before the loop starts, connecting to Kafka may take
    `connect_timeout_seconds`. Ten poll intervals and 10 minutes are the floor.
    """
    toloka, kafka = config.toloka, config.kafka
    longest_wait = max(toloka.max_retry_after_seconds, toloka.backoff_max_seconds)
    one_request = (
        toloka.max_attempts * toloka.timeout_seconds
        + (toloka.max_attempts - 1) * longest_wait
    )
    one_publish = kafka.transaction_timeout_seconds + kafka.request_timeout_seconds
    start_up = kafka.connect_timeout_seconds + kafka.request_timeout_seconds
    return max(
        MIN_LIVENESS_SECONDS,
        LIVENESS_INTERVALS * config.poll.interval_seconds,
        one_request + one_publish,
        start_up,
    )


class ReadyReport(msgspec.Struct, frozen=True):
    """The body of /readyz."""

    ready: bool
    reasons: list[str]


class Exposition(msgspec.Struct, frozen=True):
    """One rendered /metrics answer."""

    body: bytes
    content_type: str
    gzipped: bool = False


class WithoutCreated:
    """A view of a collector whose families lack the `_created` samples."""

    def __init__(self, source: Collector) -> None:
        self._source = source

    def collect(self) -> Iterable[Metric]:
        for family in self._source.collect():
            created = f"{family.name}_created"
            family.samples = [s for s in family.samples if s.name != created]
            yield family


def render_metrics(
    registry: Collector, accept: str = "", gzip_ok: bool = False
) -> Exposition:
    """The exposition in the format the Accept header asks for."""
    encode, content_type = choose_encoder(accept)
    body = encode(WithoutCreated(registry))
    if gzip_ok:
        return Exposition(gzip.compress(body, compresslevel=6), content_type, True)
    return Exposition(body, content_type)


class Endpoints(msgspec.Struct, frozen=True):
    """The running server: where it listens (the real port when 0 was asked)."""

    host: str
    port: int

    @property
    def base_url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"


@contextlib.asynccontextmanager
async def serve_endpoints(
    settings: HttpSettings, registry: Collector, health: Health
) -> AsyncIterator[Endpoints]:
    """Serve the endpoints until the block exits."""
    executor = ThreadPoolExecutor(1, thread_name_prefix="metrics-exposition")
    routes = _Routes(registry, health, executor)
    runner = web.AppRunner(
        routes.application(),
        access_log=None,
        shutdown_timeout=SHUTDOWN_TIMEOUT_SECONDS,
    )
    try:
        await runner.setup()
        endpoints = await _listen(runner, settings)
        logger.debug("endpoints listening on %s", endpoints.base_url)
        yield endpoints
    finally:
        await runner.cleanup()
        executor.shutdown(wait=True)


async def _listen(runner: web.AppRunner, settings: HttpSettings) -> Endpoints:
    site = web.TCPSite(runner, settings.host, settings.port)
    try:
        await site.start()
    except OSError as error:
        raise ConfigError(
            f"http.port = {settings.port!r}: cannot listen on "
            f"{settings.host}:{settings.port} ({error.strerror or error})"
        ) from error

    host, port = runner.addresses[0][:2]
    return Endpoints(host=str(host), port=int(port))


class _Routes:
    """The three handlers; the exposition runs in the given executor."""

    def __init__(
        self, registry: Collector, health: Health, executor: ThreadPoolExecutor
    ) -> None:
        self._registry = registry
        self._health = health
        self._executor = executor

    def application(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/metrics", self.metrics)
        app.router.add_get("/healthz", self.healthz)
        app.router.add_get("/readyz", self.readyz)
        return app

    async def metrics(self, request: web.Request) -> web.Response:
        accept = request.headers.get(hdrs.ACCEPT, "")
        gzip_ok = gzip_accepted(request.headers.get(hdrs.ACCEPT_ENCODING, ""))
        loop = asyncio.get_running_loop()
        exposition = await loop.run_in_executor(
            self._executor, render_metrics, self._registry, accept, gzip_ok
        )

        headers = {hdrs.CONTENT_TYPE: exposition.content_type}
        if exposition.gzipped:
            headers[hdrs.CONTENT_ENCODING] = "gzip"
        return web.Response(body=exposition.body, headers=headers)

    async def healthz(self, request: web.Request) -> web.Response:
        health = self._health
        now = health.clock()
        age_seconds = health.heartbeat_age_seconds(now)
        if health.alive(now):
            return web.Response(text=f"ok: last heartbeat {age_seconds:.1f} s ago\n")

        text = (
            f"stalled: last heartbeat {age_seconds:.0f} s ago, "
            f"limit {health.liveness_seconds:g} s\n"
        )
        return web.Response(status=503, text=text)

    async def readyz(self, request: web.Request) -> web.Response:
        ready, reasons = self._health.ready()
        body = msgspec.json.encode(ReadyReport(ready, reasons))
        return web.Response(
            status=200 if ready else 503,
            body=body + b"\n",
            content_type="application/json",
        )
