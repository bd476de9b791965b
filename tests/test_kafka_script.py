"""`dev/kafka/kafka.sh` itself: up twice, down twice, status, and bad settings."""

import os
import subprocess
from pathlib import Path

from tests.test_kafka_harness import confluent_topic_partitions, unused_local_port

KAFKA_SH = Path(__file__).resolve().parent.parent / "dev" / "kafka" / "kafka.sh"
SCRIPT_TIMEOUT_SECONDS = 120


def kafka_sh(command: str, **environment: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(KAFKA_SH), command],
        env={**os.environ, **environment},
        capture_output=True,
        text=True,
        timeout=SCRIPT_TIMEOUT_SECONDS,
        check=False,
    )


def test_up_and_down_twice_on_a_port_of_its_own() -> None:
    port = str(unused_local_port())
    controller = str(unused_local_port())
    ports = {"KAFKA_PORT": port, "KAFKA_CONTROLLER_PORT": controller}
    try:
        first = kafka_sh("up", **ports)
        second = kafka_sh("up", **ports)
        status = kafka_sh("status", **ports)
        topics = confluent_topic_partitions(f"127.0.0.1:{port}")
    finally:
        stopped = kafka_sh("down", **ports)
    again = kafka_sh("down", **ports)
    after = kafka_sh("status", **ports)

    assert first.returncode == 0, first.stderr
    assert f"ready on 127.0.0.1:{port}" in first.stdout
    assert second.returncode == 0
    assert "nothing to do" in second.stdout
    assert status.returncode == 0
    assert "running: pid" in status.stdout
    assert topics == {}, "a fresh broker has no topics"
    assert stopped.returncode == 0
    assert "stopped broker pid" in stopped.stdout
    assert again.returncode == 0
    assert "nothing to stop" in again.stdout
    assert after.returncode == 3


def test_a_bad_port_is_refused_with_its_name() -> None:
    result = kafka_sh("up", KAFKA_PORT="nine")

    assert result.returncode == 1
    assert "PORT must be a whole number, got 'nine'" in result.stderr


def test_an_unknown_subcommand_prints_the_usage() -> None:
    result = kafka_sh("restart")

    assert result.returncode == 64
    assert "usage:" in result.stderr
