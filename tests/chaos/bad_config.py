"""Scenario 5: bad configuration and a bad environment, through the real CLI.

Each case runs `python -m bridge run` as a subprocess and checks the documented exit
code (2 configuration or topics, 3 Toloka refused the credentials, 5 Kafka unreachable
at start), a message that names the problem, and no Python traceback. The failed
starts share topics and a simulator with a last, correct start, which must then
publish everything exactly: a failed start leaves nothing broken behind.
"""

import asyncio
import re
import time
from collections.abc import Mapping
from pathlib import Path

import msgspec
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from bridge.simulator.runner import run_simulator
from bridge.simulator.settings import LoadSettings, SimulatorSettings
from tests.bridge_harness import bridge_environment, unique_name
from tests.chaos.context import ChaosContext, distinctive_secret
from tests.chaos.processes import ChaosBridge, free_port, run_cli
from tests.chaos.results import ScenarioResult
from tests.chaos.streams import settle_and_judge
from tests.chaos.topics import kafka_options

EVENTS_PARTITIONS = 3
CONNECT_TIMEOUT_SECONDS = 3
SETTLE_TIMEOUT_SECONDS = 90.0
READY_TIMEOUT_SECONDS = 60.0


class Case(msgspec.Struct, frozen=True, kw_only=True):
    """One bad start: what is wrong, and what the operator must see."""

    name: str
    exit_code: int
    message: str
    environment: dict[str, str]
    config_file: str | None = None
    secret: str | None = None
    at_least_seconds: float = 0.0


async def run(context: ChaosContext) -> ScenarioResult:
    result = ScenarioResult(
        scenario="5. Bad config and environment: 7 cases + a good start"
    )
    started = time.monotonic()
    name = unique_name("chaos-config")
    directory = context.directory(name)
    load = LoadSettings(
        rate_per_second=8.0, mean_queue_seconds=0.5, mean_run_seconds=1.5
    )
    async with run_simulator(SimulatorSettings(seed=71, load=load)) as sim:
        base = bridge_environment(sim.base_url, context.bootstrap, name)
        await _create_misfit_topics(context.bootstrap, name)
        for case in _cases(base, name, directory):
            await _run_case(result, case)

        bridge = ChaosBridge(base, directory / "bridge.log")
        try:
            bridge.start()
            await _wait_ready(bridge)
            await asyncio.sleep(3.0)
            verdict, _, _ = await settle_and_judge(
                sim,
                kafka_options(context.bootstrap),
                f"{name}.events",
                EVENTS_PARTITIONS,
                SETTLE_TIMEOUT_SECONDS,
            )
            exit_code = await bridge.terminate()
        finally:
            await bridge.stop()

    result.add_verdict(verdict)
    result.check(
        "the good start after the failed ones stops with exit 0",
        exit_code == 0,
        exit_code,
    )
    result.seconds = time.monotonic() - started
    return result


def _cases(base: Mapping[str, str], name: str, directory: Path) -> list[Case]:
    wrong_key = distinctive_secret("wrong-api-key")
    unknown_key_file = directory / "unknown-key.toml"
    unknown_key_file.write_text("[poll]\nintervall_seconds = 5\n")
    secret_file = directory / "secret-in-file.toml"
    key_in_file = distinctive_secret("key-in-file")
    secret_file.write_text(f'[toloka]\napi_key = "{key_in_file}"\n')
    closed_port = free_port()
    return [
        Case(
            name="wrong broker address",
            exit_code=5,
            message=f"did not answer within {CONNECT_TIMEOUT_SECONDS}s",
            environment={
                **base,
                "TOLOKA_BRIDGE_KAFKA__BOOTSTRAP_SERVERS": f"127.0.0.1:{closed_port}",
                "TOLOKA_BRIDGE_KAFKA__CONNECT_TIMEOUT_SECONDS": str(
                    CONNECT_TIMEOUT_SECONDS
                ),
            },
            at_least_seconds=CONNECT_TIMEOUT_SECONDS,
        ),
        Case(
            name="wrong Toloka API key",
            exit_code=3,
            message="Toloka refused the credentials",
            environment={**base, "TOLOKA_BRIDGE_TOLOKA__API_KEY": wrong_key},
            secret=wrong_key,
        ),
        Case(
            name="unknown key in the TOML file",
            exit_code=2,
            message="poll.intervall_seconds: unknown key",
            environment=dict(base),
            config_file=str(unknown_key_file),
        ),
        Case(
            name="unknown key in the environment",
            exit_code=2,
            message=(
                "kafka.bootstrap: unknown key (from TOLOKA_BRIDGE_KAFKA__BOOTSTRAP)"
            ),
            environment={**base, "TOLOKA_BRIDGE_KAFKA__BOOTSTRAP": "127.0.0.1:9092"},
        ),
        Case(
            name="secret written in the TOML file",
            exit_code=2,
            message="toloka.api_key must not be written in",
            environment=dict(base),
            config_file=str(secret_file),
            secret=key_in_file,
        ),
        Case(
            name="state topic not compacted",
            exit_code=2,
            message="cleanup.policy='delete', expected 'compact'",
            environment={
                **base,
                "TOLOKA_BRIDGE_KAFKA__STATE_TOPIC": f"{name}.loose-state",
            },
        ),
        Case(
            name="events topic with the wrong partition count",
            exit_code=2,
            message="has 1 partitions, the configuration says 3",
            environment={
                **base,
                "TOLOKA_BRIDGE_KAFKA__EVENTS_TOPIC": f"{name}.narrow-events",
            },
        ),
    ]


async def _create_misfit_topics(bootstrap: str, name: str) -> None:
    """A state topic that is not compacted and an events topic with 1 partition."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics(
            [
                NewTopic(
                    f"{name}.loose-state",
                    1,
                    1,
                    topic_configs={"cleanup.policy": "delete"},
                ),
                NewTopic(f"{name}.narrow-events", 1, 1),
            ]
        )
    finally:
        await admin.close()


async def _run_case(result: ScenarioResult, case: Case) -> None:
    args = ["run"] + (["--config", case.config_file] if case.config_file else [])
    began = time.monotonic()
    completed = await asyncio.to_thread(run_cli, args, case.environment)
    seconds = time.monotonic() - began
    output = completed.stdout + completed.stderr
    last_line = _last_line(output)
    result.check(
        f"{case.name}: exit {case.exit_code}",
        completed.returncode == case.exit_code,
        f"exit {completed.returncode} after {seconds:.1f} s",
    )
    result.check(
        f"{case.name}: the error says so",
        case.message in output and "Traceback" not in output,
        last_line,
    )
    if case.at_least_seconds:
        result.check(
            f"{case.name}: kept trying for kafka.connect_timeout_seconds",
            seconds >= case.at_least_seconds,
            f"gave up after {seconds:.1f} s, timeout {case.at_least_seconds:.0f} s",
        )
    if case.secret is not None:
        result.check(
            f"{case.name}: the secret is not in the output", case.secret not in output
        )


def _last_line(output: str) -> str:
    lines = [line for line in output.splitlines() if line.strip()]
    text = lines[-1] if lines else "(no output)"
    return re.sub(r"\s+", " ", text)[-300:]


async def _wait_ready(bridge: ChaosBridge) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + READY_TIMEOUT_SECONDS
    while loop.time() < deadline and not await bridge.ready():
        if not bridge.alive():
            raise RuntimeError(f"the bridge exited: {bridge.run_log()[-2000:]}")
        await asyncio.sleep(0.2)
