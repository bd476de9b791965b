"""Scenario 2b: the broker freezes the instant the bridge has sent a commit.

A freeze at a random moment rarely lands inside the few milliseconds of a commit round
trip, yet that is the one moment a no-loss producer cannot judge by itself: the broker
has the commit request and will apply it when it wakes up, while the client times out
and believes the transaction failed. A bridge that then simply publishes the same
batch again shows every event of that batch twice to read_committed consumers.

To hit the moment every time, the bridge runs in this process and the test watches
its Kafka connection: right after the bytes of an EndTxn(commit) request are written
to the socket, the broker process gets SIGSTOP; after longer than the bridge's
transaction timeout it gets SIGCONT and processes the request. Nothing in the bridge
is replaced: the freeze is real, only its timing is chosen.
"""

import asyncio
import contextlib
import time
from collections.abc import Iterator
from typing import Any

from aiokafka.conn import AIOKafkaConnection
from aiokafka.protocol.transaction import EndTxnRequest
from prometheus_client import CollectorRegistry

from bridge.simulator.runner import run_simulator
from bridge.simulator.settings import LoadSettings, SimulatorSettings
from tests.bridge_harness import (
    bridge_config,
    bridge_environment,
    running_bridge,
    unique_name,
)
from tests.chaos.brokers import DedicatedBroker
from tests.chaos.context import ChaosContext
from tests.chaos.results import ScenarioResult
from tests.chaos.streams import settle_and_judge
from tests.chaos.topics import kafka_options

EVENTS_PARTITIONS = 3
FREEZE_SECONDS = 8.0
ARM_TIMEOUT_SECONDS = 30.0
SETTLE_TIMEOUT_SECONDS = 120.0


class CommitFreezer:
    """SIGSTOPs the broker right after a commit request has left the client."""

    def __init__(self, broker: DedicatedBroker) -> None:
        self._broker = broker
        self._armed = False
        self.frozen = asyncio.Event()

    def arm(self) -> None:
        self.frozen.clear()
        self._armed = True

    def observe(self, request: Any) -> None:
        """Called after each request is written; freezes on the armed commit."""
        if self._armed and isinstance(request, EndTxnRequest) and _is_commit(request):
            self._armed = False
            self._broker.freeze()
            self.frozen.set()

    @contextlib.contextmanager
    def watching(self) -> Iterator[None]:
        """Route every aiokafka request of this process past `observe`."""
        original = AIOKafkaConnection.send
        freezer = self

        def send(connection: Any, request: Any, expect_response: bool = True) -> Any:
            answer = original(connection, request, expect_response)
            freezer.observe(request)
            return answer

        AIOKafkaConnection.send = send
        try:
            yield
        finally:
            AIOKafkaConnection.send = original


def _is_commit(request: EndTxnRequest) -> bool:
    return bool(request._transaction_result)


async def run(
    context: ChaosContext, broker: DedicatedBroker, freezes: int
) -> ScenarioResult:
    result = ScenarioResult(
        scenario=f"2b. Broker frozen with a commit in flight (x{freezes})"
    )
    started = time.monotonic()
    name = unique_name("chaos-commit")
    load = LoadSettings(
        rate_per_second=20.0, mean_queue_seconds=0.3, mean_run_seconds=1.5
    )
    freezer = CommitFreezer(broker)
    async with run_simulator(SimulatorSettings(seed=43, load=load)) as sim:
        environment = bridge_environment(
            sim.base_url,
            broker.bootstrap,
            name,
            TOLOKA_BRIDGE_KAFKA__REQUEST_TIMEOUT_SECONDS="3",
            TOLOKA_BRIDGE_KAFKA__TRANSACTION_TIMEOUT_SECONDS="5",
        )
        config = bridge_config(environment)
        frozen = 0
        with freezer.watching():
            async with running_bridge(config, CollectorRegistry()):
                for _ in range(freezes):
                    await asyncio.sleep(2.0)
                    freezer.arm()
                    try:
                        await asyncio.wait_for(
                            freezer.frozen.wait(), ARM_TIMEOUT_SECONDS
                        )
                    except TimeoutError:
                        break
                    frozen += 1
                    await asyncio.sleep(FREEZE_SECONDS)
                    broker.thaw()
                verdict, _, _ = await settle_and_judge(
                    sim,
                    kafka_options(broker.bootstrap),
                    f"{name}.events",
                    EVENTS_PARTITIONS,
                    SETTLE_TIMEOUT_SECONDS,
                )

    result.add_verdict(verdict)
    result.check(
        "the broker froze right after a commit request, each time",
        frozen == freezes,
        f"{frozen} of {freezes}",
    )
    result.seconds = time.monotonic() - started
    return result
