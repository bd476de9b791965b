"""Scenario 6: no secret leaks, whatever goes wrong.

Two distinctive secrets, a Toloka API key and a Kafka SASL password (the secure
broker's), are given to a bridge that runs at DEBUG with Toloka faults on (5xx, 429,
malformed bodies, bad items, timeouts). Around it: `check-config`, a start with a
wrong key (exit 3), a start with a wrong Kafka password (exit 5), and a start against
a hostile API that echoes the Authorization header back in its error messages. Then
every artifact is searched for every secret, raw and base64-encoded: the bridge logs,
CLI outputs, each /metrics, /readyz and /healthz answer, the process command line, and
every record of the events and state topics, aborted transactions included.
"""

import asyncio
import base64
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from aiohttp import web

from bridge.simulator.runner import Simulator, run_simulator
from bridge.simulator.settings import FaultSettings, LoadSettings, SimulatorSettings
from tests.bridge_harness import Verdict, bridge_environment, unique_name
from tests.chaos.brokers import SecureBroker
from tests.chaos.context import ChaosContext, distinctive_secret
from tests.chaos.processes import ChaosBridge, run_cli
from tests.chaos.results import ScenarioResult
from tests.chaos.secure_kafka import secure_environment, secure_options
from tests.chaos.streams import settle_and_judge
from tests.chaos.topics import read_records

EVENTS_PARTITIONS = 3
SETTLE_TIMEOUT_SECONDS = 120.0
READY_TIMEOUT_SECONDS = 60.0
SCRAPE_INTERVAL_SECONDS = 0.5
FAULTS = FaultSettings(
    server_error_probability=0.15,
    rate_limit_probability=0.1,
    retry_after_seconds=1.0,
    malformed_probability=0.1,
    junk_probability=0.3,
    slow_probability=0.05,
    slow_delay_seconds=1.5,
)


class Artifacts:
    """Everything the runs left behind, by kind, to be searched for secrets."""

    def __init__(self) -> None:
        self.texts: dict[str, list[bytes]] = {}

    def add(self, kind: str, content: str | bytes | None) -> None:
        if content is None:
            return
        data = content.encode() if isinstance(content, str) else content
        self.texts.setdefault(kind, []).append(data)

    def leaks(self, secrets: list[str]) -> dict[str, int]:
        """Per kind, how many pieces contain a secret (raw or base64)."""
        forms = [form for s in secrets for form in _forms(s)]
        return {
            kind: sum(1 for piece in pieces if any(f in piece for f in forms))
            for kind, pieces in self.texts.items()
        }


def _forms(secret: str) -> list[bytes]:
    raw = secret.encode()
    return [raw, base64.b64encode(raw), base64.b64encode(b"ApiKey " + raw)]


async def run(context: ChaosContext) -> ScenarioResult:
    result = ScenarioResult(scenario="6. Secrets: DEBUG logs, faults, errors, topics")
    started = time.monotonic()
    broker = await context.secure_broker()
    api_key = distinctive_secret("api-key")
    wrong_key = distinctive_secret("wrong-api-key")
    wrong_password = distinctive_secret("wrong-kafka-password")
    artifacts = Artifacts()
    name = unique_name("chaos-secrets")
    directory = context.directory(name)
    load = LoadSettings(
        rate_per_second=10.0, mean_queue_seconds=0.5, mean_run_seconds=1.5
    )
    settings = SimulatorSettings(seed=91, load=load, faults=FAULTS)
    async with run_simulator(settings, token=api_key) as sim:
        environment = _environment(
            sim.base_url, broker, name, api_key, context.kafka_password
        )
        verdict = await _faulty_run(
            context, sim, environment, directory, artifacts, broker, name
        )
        artifacts.add("CLI output", _cli_output(["check-config"], environment))
        wrong = {**environment, "TOLOKA_BRIDGE_TOLOKA__API_KEY": wrong_key}
        artifacts.add("CLI output", await _cli_output_async(["run"], wrong))
        refused = {
            **environment,
            "TOLOKA_BRIDGE_KAFKA__SASL_PASSWORD": wrong_password,
            "TOLOKA_BRIDGE_KAFKA__CONNECT_TIMEOUT_SECONDS": "3",
        }
        artifacts.add("CLI output", await _cli_output_async(["run"], refused))

    async with _echoing_api() as echo_url:
        echoing = {**environment, "TOLOKA_BRIDGE_TOLOKA__BASE_URL": echo_url}
        echoed = await _cli_output_async(["run"], echoing)
        artifacts.add("CLI output", echoed)
    result.check(
        "a hostile API's echo of the key was shown redacted",
        "ApiKey <redacted>" in echoed,
        _first_line_with(echoed, "<redacted>"),
    )

    await _collect_topics(artifacts, broker, name)
    for number, output in enumerate(artifacts.texts["CLI output"], start=1):
        (directory / f"cli-{number}.txt").write_bytes(output)
    result.add_verdict(verdict)
    secrets = [api_key, context.kafka_password, wrong_key, wrong_password]
    leaks = artifacts.leaks(secrets)
    for kind, pieces in sorted(artifacts.texts.items()):
        size = sum(len(piece) for piece in pieces)
        result.check(
            f"no secret in {kind}",
            leaks[kind] == 0,
            f"{leaks[kind]} of {len(pieces)} pieces ({size} bytes) contain one",
        )
    result.note(f"logs: {directory}")
    result.seconds = time.monotonic() - started
    return result


def _environment(
    base_url: str, broker: SecureBroker, name: str, api_key: str, password: str
) -> dict[str, str]:
    environment = {
        **bridge_environment(base_url, broker.bootstrap, name),
        **secure_environment(broker),
        "TOLOKA_BRIDGE_TOLOKA__API_KEY": api_key,
        "TOLOKA_BRIDGE_TOLOKA__TIMEOUT_SECONDS": "1",
        "TOLOKA_BRIDGE_KAFKA__SASL_PASSWORD": password,
        "TOLOKA_BRIDGE_LOG__LEVEL": "DEBUG",
    }
    environment.pop("TOLOKA_BRIDGE_KAFKA__SASL_PASSWORD_FILE")
    return environment


async def _faulty_run(
    context: ChaosContext,
    sim: Simulator,
    environment: dict[str, str],
    directory: Path,
    artifacts: Artifacts,
    broker: SecureBroker,
    name: str,
) -> Verdict:
    """Run the bridge at DEBUG under faults, scraping its endpoints all along."""
    bridge = ChaosBridge(environment, directory / "bridge.log")
    try:
        bridge.start()
        artifacts.add("process command line", _command_line(bridge.pid))
        loop = asyncio.get_running_loop()
        deadline = (
            loop.time() + context.scale.secrets_run_seconds + READY_TIMEOUT_SECONDS
        )
        ready_since: float | None = None
        while loop.time() < deadline:
            await _scrape(bridge, artifacts)
            if ready_since is None and await bridge.ready():
                ready_since = loop.time()
            if (
                ready_since
                and loop.time() - ready_since > context.scale.secrets_run_seconds
            ):
                break
            await asyncio.sleep(SCRAPE_INTERVAL_SECONDS)
        sim.faults.settings = FaultSettings()
        verdict, _, _ = await settle_and_judge(
            sim,
            secure_options(broker),
            f"{name}.events",
            EVENTS_PARTITIONS,
            SETTLE_TIMEOUT_SECONDS,
        )
        await _scrape(bridge, artifacts)
        await bridge.terminate()
    finally:
        await bridge.stop()
    artifacts.add("bridge log", bridge.full_log())
    return verdict


async def _scrape(bridge: ChaosBridge, artifacts: Artifacts) -> None:
    samples = await bridge.metrics()
    artifacts.add("/metrics", None if samples is None else samples.text)
    readiness = await bridge.readyz()
    artifacts.add("/readyz", None if readiness is None else readiness[1])
    health = await bridge._get("/healthz")
    artifacts.add("/healthz", None if health is None else health.text)


def _first_line_with(text: str, marker: str) -> str:
    lines = [line for line in text.splitlines() if marker in line]
    return lines[0][-250:] if lines else "none"


def _command_line(pid: int | None) -> bytes | None:
    if pid is None:
        return None
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None


def _cli_output(args: list[str], environment: dict[str, str]) -> str:
    completed = run_cli(args, environment, timeout_seconds=60)
    return completed.stdout + completed.stderr


async def _cli_output_async(args: list[str], environment: dict[str, str]) -> str:
    return await asyncio.to_thread(_cli_output, args, environment)


@asynccontextmanager
async def _echoing_api() -> AsyncIterator[str]:
    """A hostile API: errors that quote the Authorization header, then a 401."""
    answered = 0

    async def handler(request: web.Request) -> web.Response:
        nonlocal answered
        answered += 1
        header = request.headers.get("Authorization", "")
        status = 500 if answered <= 3 else 401
        body = {
            "request_id": f"echo-{answered}",
            "code": "INTERNAL_ERROR" if status == 500 else "AUTHENTICATION_ERROR",
            "message": f"cannot serve {request.path_qs} for {header}",
            "payload": {"authorization": header},
        }
        return web.json_response(body, status=status)

    app = web.Application()
    app.router.add_route("GET", "/{tail:.*}", handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    try:
        yield f"http://{host}:{port}/api"
    finally:
        await runner.cleanup()


async def _collect_topics(
    artifacts: Artifacts, broker: SecureBroker, name: str
) -> None:
    options = secure_options(broker)
    for topic, partitions in (
        (f"{name}.events", EVENTS_PARTITIONS),
        (f"{name}.state", 1),
    ):
        records = await read_records(options, topic, partitions, "read_uncommitted")
        for _, (key, value, headers) in records:
            artifacts.add(f"{topic.rsplit('.', 1)[1]} topic records", key)
            artifacts.add(f"{topic.rsplit('.', 1)[1]} topic records", value)
            for header_name, header_value in headers:
                artifacts.add(f"{topic.rsplit('.', 1)[1]} topic records", header_name)
                artifacts.add(f"{topic.rsplit('.', 1)[1]} topic records", header_value)
