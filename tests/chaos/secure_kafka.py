"""Scenario 7: a broker that only speaks SASL_SSL with SCRAM-SHA-512.

The secure broker of `dev/kafka/secure.sh` (a throwaway CA, a SCRAM user made at
storage-format time) serves a bridge with the right user, password and CA: its events
must land, read back over the same kind of connection, exactly. Then the CLI is run
with a wrong password, with no trust in the CA, and as a plaintext client: each must
be refused with a message that says why, exit 5 (Kafka unreachable at start, after
`kafka.connect_timeout_seconds`), and never show a password.
"""

import asyncio
import time

import msgspec

from bridge.simulator.runner import run_simulator
from bridge.simulator.settings import LoadSettings, SimulatorSettings
from tests.bridge_harness import bridge_environment, unique_name
from tests.chaos.brokers import SecureBroker
from tests.chaos.context import ChaosContext, distinctive_secret
from tests.chaos.processes import ChaosBridge, run_cli
from tests.chaos.results import ScenarioResult
from tests.chaos.streams import settle_and_judge
from tests.chaos.topics import kafka_options

EVENTS_PARTITIONS = 3
READY_TIMEOUT_SECONDS = 60.0
SETTLE_TIMEOUT_SECONDS = 90.0
REFUSED_CONNECT_TIMEOUT = "4"


class Refusal(msgspec.Struct, frozen=True, kw_only=True):
    """A connection the broker must refuse, and the words that must explain it."""

    name: str
    overrides: dict[str, str]
    reason: str


def secure_environment(broker: SecureBroker) -> dict[str, str]:
    """The bridge settings for the secure broker; the password comes from a file."""
    return {
        "TOLOKA_BRIDGE_KAFKA__SECURITY_PROTOCOL": "SASL_SSL",
        "TOLOKA_BRIDGE_KAFKA__SASL_MECHANISM": "SCRAM-SHA-512",
        "TOLOKA_BRIDGE_KAFKA__SASL_USERNAME": broker.user,
        "TOLOKA_BRIDGE_KAFKA__SASL_PASSWORD_FILE": str(broker.password_file),
        "TOLOKA_BRIDGE_KAFKA__SSL_CAFILE": str(broker.ca_file),
    }


def secure_options(broker: SecureBroker) -> dict[str, object]:
    return kafka_options(
        broker.bootstrap,
        user=broker.user,
        password=broker.password,
        ca_file=str(broker.ca_file),
    )


async def run(context: ChaosContext) -> ScenarioResult:
    result = ScenarioResult(
        scenario="7. SASL_SSL SCRAM-SHA-512: right and wrong credentials"
    )
    started = time.monotonic()
    broker = await context.secure_broker()
    name = unique_name("chaos-sasl")
    load = LoadSettings(
        rate_per_second=8.0, mean_queue_seconds=0.5, mean_run_seconds=1.5
    )
    async with run_simulator(SimulatorSettings(seed=81, load=load)) as sim:
        environment = {
            **bridge_environment(sim.base_url, broker.bootstrap, name),
            **secure_environment(broker),
        }
        bridge = ChaosBridge(environment, context.directory(name) / "bridge.log")
        try:
            bridge.start()
            ready = await _wait_ready(bridge)
            result.check("the bridge with the right credentials became ready", ready)
            await asyncio.sleep(context.scale.secure_run_seconds)
            verdict, published, _ = await settle_and_judge(
                sim,
                secure_options(broker),
                f"{name}.events",
                EVENTS_PARTITIONS,
                SETTLE_TIMEOUT_SECONDS,
            )
            exit_code = await bridge.terminate()
        finally:
            await bridge.stop()

        result.add_verdict(verdict)
        result.check(
            "events landed over SASL_SSL",
            len(published) > 0,
            f"{len(published)} events",
        )
        result.check("clean shutdown (exit 0)", exit_code == 0, exit_code)
        log = bridge.full_log()
        result.check(
            "the password is not in the bridge's log", broker.password not in log
        )
        for refusal in _refusals(broker):
            await _refused(result, refusal, environment, broker)
    result.seconds = time.monotonic() - started
    return result


def _refusals(broker: SecureBroker) -> list[Refusal]:
    wrong_password = distinctive_secret("wrong-kafka-password")
    return [
        Refusal(
            name="wrong password",
            overrides={"TOLOKA_BRIDGE_KAFKA__SASL_PASSWORD": wrong_password},
            reason="Authentication failed",
        ),
        Refusal(
            name="CA not trusted",
            overrides={"TOLOKA_BRIDGE_KAFKA__SSL_CAFILE": ""},
            reason="CERTIFICATE_VERIFY_FAILED",
        ),
        Refusal(
            name="plaintext client",
            overrides={
                "TOLOKA_BRIDGE_KAFKA__SECURITY_PROTOCOL": "PLAINTEXT",
                "TOLOKA_BRIDGE_KAFKA__SASL_MECHANISM": "",
                "TOLOKA_BRIDGE_KAFKA__SASL_USERNAME": "",
                "TOLOKA_BRIDGE_KAFKA__SASL_PASSWORD_FILE": "",
                "TOLOKA_BRIDGE_KAFKA__SSL_CAFILE": "",
            },
            reason="did not answer within",
        ),
    ]


async def _refused(
    result: ScenarioResult,
    refusal: Refusal,
    environment: dict[str, str],
    broker: SecureBroker,
) -> None:
    merged = {**environment, **refusal.overrides}
    merged = {key: value for key, value in merged.items() if value != ""}
    if "TOLOKA_BRIDGE_KAFKA__SASL_PASSWORD" in refusal.overrides:
        merged.pop("TOLOKA_BRIDGE_KAFKA__SASL_PASSWORD_FILE", None)
    merged["TOLOKA_BRIDGE_KAFKA__CONNECT_TIMEOUT_SECONDS"] = REFUSED_CONNECT_TIMEOUT
    completed = await asyncio.to_thread(run_cli, ["run"], merged)
    output = completed.stdout + completed.stderr
    secrets = [broker.password, *refusal.overrides.values()]
    leaked = [s for s in secrets if len(s) > 8 and s in output]
    result.check(
        f"{refusal.name}: refused with exit 5",
        completed.returncode == 5,
        f"exit {completed.returncode}",
    )
    result.check(
        f"{refusal.name}: the output says why",
        refusal.reason in output and "Traceback" not in output,
        _line_with(output, refusal.reason),
    )
    result.check(f"{refusal.name}: no password in the output", not leaked)


def _line_with(output: str, text: str) -> str:
    for line in output.splitlines():
        if text in line:
            return line.strip()[-300:]
    return f"no line contains {text!r}; last: {output.strip().splitlines()[-1:]!r}"


async def _wait_ready(bridge: ChaosBridge) -> bool:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + READY_TIMEOUT_SECONDS
    while loop.time() < deadline:
        if await bridge.ready():
            return True
        if not bridge.alive():
            return False
        await asyncio.sleep(0.2)
    return False
