"""The running bridge: connect to Kafka, restore the state, poll, stop cleanly.

Start-up order matters. The producer starts first: with transactions, its
initialisation fences any older instance and aborts the transaction that one left
open, so the state topic's last stable offset can move past it. Only then is the state
read, to that offset. The poll loop runs until `stopping` is set; the cycle in flight
finishes (or, after the grace period, is cancelled, which aborts its transaction).
"""

import asyncio
import logging
from collections.abc import Callable
from datetime import UTC, datetime

import httpx
from prometheus_client import CollectorRegistry

from bridge.brokers import ensure_topics
from bridge.config import Config
from bridge.endpoints import serve_endpoints
from bridge.errors import BridgeError, UnreachableError
from bridge.metrics import BridgeMetrics
from bridge.poller import Poller, wait_or_stop
from bridge.publisher import Publisher
from bridge.state import BridgeState, StateKeys, restore_state
from bridge.toloka import TolokaClient

logger = logging.getLogger(__name__)

Clock = Callable[[], datetime]
CONNECT_BACKOFF_SECONDS = (1.0, 2.0, 5.0, 10.0)


def utc_now() -> datetime:
    return datetime.now(UTC)


async def run_bridge(
    config: Config,
    stopping: asyncio.Event,
    *,
    registry: CollectorRegistry | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
    clock: Clock = utc_now,
) -> None:
    """Run until `stopping` is set; fatal errors propagate as `BridgeError`s."""
    registry = CollectorRegistry() if registry is None else registry
    metrics = BridgeMetrics(registry, config)
    publisher = Publisher(config.kafka, metrics)

    if not config.kafka.transactions:
        logger.warning(
            "kafka.transactions is false: delivery is at least once; after a crash "
            "consumers may see an event twice and must drop repeated event_ids"
        )
    async with serve_endpoints(config.http, registry, metrics.health) as endpoints:
        logger.info("serving /metrics, /healthz and /readyz on port %d", endpoints.port)
        try:
            state = await connect(config, publisher, metrics, stopping)
            if state is None:
                return
            client = TolokaClient(config.toloka, transport=transport, observer=metrics)
            async with client:
                poller = Poller(config, state, client, publisher, metrics, clock)
                await _poll_until_stopped(poller, stopping, config)
        finally:
            await publisher.stop()
            logger.info("bridge stopped")


async def connect(
    config: Config,
    publisher: Publisher,
    metrics: BridgeMetrics,
    stopping: asyncio.Event,
) -> BridgeState | None:
    """Make sure topics exist, start the producer and restore the state, with retries.

    Returns None when asked to stop before Kafka answered.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + config.kafka.connect_timeout_seconds
    attempt = 0
    while not stopping.is_set():
        try:
            state = await _connect_once(config, publisher)
        except BridgeError as error:
            if not error.retriable:
                raise
            attempt += 1
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise _unreachable(config, error) from error
            delay = min(
                CONNECT_BACKOFF_SECONDS[min(attempt, len(CONNECT_BACKOFF_SECONDS)) - 1],
                remaining,
            )
            logger.warning(
                "Kafka not ready (attempt %d), retrying in %.1fs: %s",
                attempt,
                delay,
                error,
            )
            await wait_or_stop(stopping, delay)
            continue

        metrics.kafka_connected(True)
        metrics.state_restored(state)
        return state
    return None


async def _connect_once(config: Config, publisher: Publisher) -> BridgeState:
    await ensure_topics(config.kafka)
    await publisher.start()
    keys = StateKeys(config.toloka.environment, config.toloka.account)
    return await restore_state(config.kafka, keys)


def _unreachable(config: Config, error: BridgeError) -> UnreachableError:
    servers = ", ".join(config.kafka.bootstrap_servers)
    seconds = config.kafka.connect_timeout_seconds
    return UnreachableError(
        f"Kafka at {servers} did not answer within {seconds:.0f}s: {error}"
    )


async def _poll_until_stopped(
    poller: Poller, stopping: asyncio.Event, config: Config
) -> None:
    """Poll until stopping; give the cycle in flight a grace period to finish."""
    polling = asyncio.create_task(poller.run(stopping), name="poll-loop")
    stop_requested = asyncio.create_task(stopping.wait(), name="stop-request")
    try:
        await asyncio.wait(
            {polling, stop_requested}, return_when=asyncio.FIRST_COMPLETED
        )
        if not polling.done():
            logger.info("stopping: letting the current poll cycle finish")
            await _finish_or_cancel(polling, config.poll.shutdown_grace_seconds)
    finally:
        stop_requested.cancel()
        if not polling.done():
            polling.cancel()

    if not polling.cancelled():
        polling.result()


async def _finish_or_cancel(task: "asyncio.Task[None]", grace_seconds: float) -> None:
    done, _ = await asyncio.wait({task}, timeout=grace_seconds)
    if done:
        return

    logger.warning("poll cycle still running after %.0fs; aborting it", grace_seconds)
    task.cancel()
    await asyncio.wait({task})
