"""The `toloka-bridge` command as a user runs it: a real subprocess each time."""

import json
import os
import subprocess
import sys
from pathlib import Path

from bridge import __version__
from bridge.events import event_schema

KEY = "cli-test-key-5b1e"


def toloka_bridge(
    *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("TOLOKA_BRIDGE")}
    return subprocess.run(
        [sys.executable, "-m", "bridge", *args],
        env={**clean, **(env or {})},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_check_config_prints_the_effective_config_without_secrets(
    tmp_path: Path,
) -> None:
    """Exit 0, JSON on stdout, the file's and the environment's values, key hidden."""
    config = tmp_path / "bridge.toml"
    config.write_text("[poll]\ninterval_seconds = 7\n")
    env = {
        "TOLOKA_BRIDGE_TOLOKA__API_KEY": KEY,
        "TOLOKA_BRIDGE_TOLOKA__ACCOUNT": "acme",
    }

    result = toloka_bridge("check-config", "--config", str(config), env=env)

    assert result.returncode == 0, result.stderr
    effective = json.loads(result.stdout)
    assert effective["poll"]["interval_seconds"] == 7
    assert effective["toloka"]["account"] == "acme"
    assert effective["toloka"]["api_key"] == "<redacted>"
    assert KEY not in result.stdout + result.stderr


def test_bad_config_exits_2_naming_the_key_and_value(tmp_path: Path) -> None:
    """A typo'd value stops everything before it starts, with a useful message."""
    config = tmp_path / "bridge.toml"
    config.write_text('[kafka]\nevents_partitions = "many"\n')
    env = {"TOLOKA_BRIDGE_TOLOKA__API_KEY": KEY}

    result = toloka_bridge("check-config", "--config", str(config), env=env)

    assert result.returncode == 2
    assert "kafka.events_partitions = 'many'" in result.stderr
    assert "expected `int`" in result.stderr


def test_run_with_bad_config_exits_2_before_connecting() -> None:
    """`run` validates first: no broker or API is touched with a bad config."""
    env = {"TOLOKA_BRIDGE_TOLOKA__API_KEY": KEY, "TOLOKA_BRIDGE_POLL__START": "soon"}

    result = toloka_bridge("run", env=env)

    assert result.returncode == 2
    assert "poll.start = 'soon'" in result.stderr


def test_missing_key_exits_2_and_says_how_to_set_it() -> None:
    """Without credentials the message names the variable to set."""
    result = toloka_bridge("check-config")

    assert result.returncode == 2
    assert "TOLOKA_BRIDGE_TOLOKA__API_KEY" in result.stderr


def test_schema_prints_the_event_schema() -> None:
    """`schema` is the same document the code validates against."""
    result = toloka_bridge("schema")

    assert result.returncode == 0
    assert json.loads(result.stdout) == json.loads(json.dumps(event_schema()))


def test_asyncapi_document_names_the_events_channel() -> None:
    """`schema --asyncapi` describes the topic for AsyncAPI tooling."""
    result = toloka_bridge("schema", "--asyncapi")

    document = json.loads(result.stdout)
    assert document["asyncapi"].startswith("3.")
    assert "operationEvents" in document["channels"]


def test_version() -> None:
    """`--version` prints the package version."""
    result = toloka_bridge("--version")

    assert result.stdout.strip() == __version__
