"""The reliability and security suite at CI scale (see tests/chaos and the README).

Every test runs one scenario of `tests/chaos` against real brokers (the default one,
a dedicated one this module may stop and freeze, and a SASL_SSL one) and fails with
the scenario's failed checks and stream problems. The results table of the run is
written to `.run/chaos/results-ci.md`. `make chaos` runs the long version.
"""

from collections.abc import Iterator

import pytest

from tests.bridge_harness import REPO
from tests.chaos import (
    bad_config,
    broker_faults,
    crashes,
    restart_gap,
    secrets,
    secure_kafka,
    toloka_faults,
)
from tests.chaos.context import CI, ChaosContext
from tests.chaos.results import ScenarioResult
from tests.chaos.runner import write_results

pytestmark = [pytest.mark.kafka, pytest.mark.chaos]

RESULTS: list[ScenarioResult] = []


@pytest.fixture(scope="module")
def chaos(
    kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ChaosContext]:
    """One context for the module: the secure broker starts once, on first use."""
    context = ChaosContext(kafka_bootstrap, tmp_path_factory.mktemp("chaos"), CI)
    try:
        yield context
    finally:
        context.close()
        write_results(RESULTS, REPO / ".run" / "chaos" / "results-ci.md")


def passed(results: list[ScenarioResult]) -> bool:
    RESULTS.extend(results)
    return all(result.passed for result in results)


def failures(results: list[ScenarioResult]) -> list[str]:
    return [f"{r.scenario}: {failure}" for r in results for failure in r.failures]


async def test_sigkill_at_random_moments_loses_and_repeats_nothing(
    chaos: ChaosContext,
) -> None:
    """20 kills, mid-poll, mid-transaction and mid-restore: the stream stays exact."""
    results = [await crashes.run(chaos)]
    assert passed(results), failures(results)


async def test_broker_outages_are_reported_survived_and_repeat_nothing(
    chaos: ChaosContext,
) -> None:
    """Broker stopped or frozen: 503 and metrics say so, recovery, no duplicates."""
    results = await broker_faults.run(chaos)
    assert passed(results), failures(results)


async def test_toloka_faults_get_their_documented_behaviour(
    chaos: ChaosContext,
) -> None:
    """Every Toloka storm is retried, skipped or trimmed as documented; nothing lost."""
    results = await toloka_faults.run_all(chaos)
    assert passed(results), failures(results)


async def test_restart_after_a_gap_publishes_what_happened_meanwhile(
    chaos: ChaosContext,
) -> None:
    """Down longer than the lag: every missed transition, dated by the operation."""
    results = [await restart_gap.run(chaos)]
    assert passed(results), failures(results)


async def test_bad_config_and_environment_exit_with_the_documented_codes(
    chaos: ChaosContext,
) -> None:
    """Wrong broker 5, wrong key 3, unknown keys and bad topics 2; clear messages."""
    results = [await bad_config.run(chaos)]
    assert passed(results), failures(results)


async def test_no_secret_leaks_into_logs_metrics_errors_or_topics(
    chaos: ChaosContext,
) -> None:
    """API key and Kafka password appear nowhere, at DEBUG and under faults."""
    results = [await secrets.run(chaos)]
    assert passed(results), failures(results)


async def test_sasl_ssl_broker_accepts_the_right_credentials_only(
    chaos: ChaosContext,
) -> None:
    """SCRAM-SHA-512 over TLS: events land; wrong password or CA is refused (exit 5)."""
    results = [await secure_kafka.run(chaos)]
    assert passed(results), failures(results)
