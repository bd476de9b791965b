"""Simulator settings: TOML loading, validation, and the command-line overrides."""

import argparse
from pathlib import Path

import pytest

from bridge.errors import ConfigError
from bridge.simulator import cli
from bridge.simulator.settings import (
    FaultSettings,
    SimulatorSettings,
    load_fault_settings,
    load_settings,
)


def parse_args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    return parser.parse_args(argv)


def test_a_full_toml_file_loads_into_settings(tmp_path: Path) -> None:
    """Top-level keys and the [server], [load], [faults] tables map onto Structs."""
    path = tmp_path / "sim.toml"
    path.write_text(
        'seed = 7\ntruth_path = "t.jsonl"\n'
        '[server]\nport = 9000\nmax_limit = 500\nauth_schemes = ["ApiKey"]\n'
        "[load]\nrate_per_second = 2.5\nhistory = 10\n"
        '[load.type_weights]\n"POOL.OPEN" = 1.0\n"X.NEW" = 2.0\n'
        "[faults]\nserver_error_probability = 0.1\n"
    )

    settings = load_settings(path)

    assert settings.seed == 7
    assert settings.server.port == 9000
    assert settings.server.auth_schemes == ["ApiKey"]
    assert settings.load.type_weights == {"POOL.OPEN": 1.0, "X.NEW": 2.0}
    assert settings.faults.server_error_probability == 0.1
    assert settings.load.mean_run_seconds == SimulatorSettings().load.mean_run_seconds


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[server]\nprot = 1\n", r"unknown field `prot`.*\$\.server"),
        ("[faults]\nhidden_probability = 1.5\n", r"\$\.faults\.hidden_probability"),
        ("[load]\nrate_per_second = -1\n", r"\$\.load\.rate_per_second"),
        ("[server]\ndefault_limit = 400\n", r"default_limit \(400\)"),
        ('[server]\nauth_schemes = ["Basic"]\n', r"\$\.server\.auth_schemes"),
        ("[load.type_weights]\n", "type_weights must name"),
        ("seed = \n", "is not TOML"),
    ],
)
def test_bad_settings_name_the_key(tmp_path: Path, text: str, message: str) -> None:
    """Unknown keys, out-of-range values and broken TOML are ConfigErrors."""
    path = tmp_path / "bad.toml"
    path.write_text(text)

    with pytest.raises(ConfigError, match=message):
        load_settings(path)


def test_a_faults_file_holds_only_fault_keys(tmp_path: Path) -> None:
    """--faults FILE takes the keys of [faults] at its top level."""
    path = tmp_path / "faults.toml"
    path.write_text("junk_probability = 0.5\nquota_interval = 'HOUR'\n")

    assert load_fault_settings(path) == FaultSettings(
        junk_probability=0.5, quota_interval="HOUR"
    )
    path.write_text("quota_interval = 'WEEK'\n")
    with pytest.raises(ConfigError, match=r"quota_interval"):
        load_fault_settings(path)


def test_flags_override_the_config_file(tmp_path: Path) -> None:
    """Command-line flags win over the file; fault flags set single faults."""
    config = tmp_path / "sim.toml"
    config.write_text("seed = 1\n[server]\nport = 9000\n[load]\nrate_per_second = 9\n")
    faults = tmp_path / "faults.toml"
    faults.write_text("junk_probability = 0.25\nmalformed_probability = 0.5\n")

    args = parse_args(
        "--config",
        str(config),
        "--port",
        "0",
        "--seed",
        "4",
        "--rate",
        "1.5",
        "--history",
        "10",
        "--running",
        "3",
        "--max-limit",
        "500",
        "--truth",
        "t.jsonl",
        "--faults",
        str(faults),
        "--fault-malformed-probability",
        "0.1",
        "--fault-retry-after-seconds",
        "3",
    )
    settings = cli.settings_from_args(args)

    assert (settings.seed, settings.server.port, settings.server.max_limit) == (
        4,
        0,
        500,
    )
    assert (settings.load.rate_per_second, settings.load.history) == (1.5, 10)
    assert settings.load.running == 3
    assert settings.truth_path == "t.jsonl"
    assert settings.faults.junk_probability == 0.25
    assert settings.faults.malformed_probability == 0.1
    assert settings.faults.retry_after_seconds == 3.0


def test_flag_values_are_validated_like_the_file() -> None:
    """A probability above 1 on the command line is a ConfigError naming the key."""
    args = parse_args("--fault-hidden-probability", "3")

    with pytest.raises(ConfigError, match=r"\$\.faults\.hidden_probability"):
        cli.settings_from_args(args)


def test_token_comes_from_file_then_environment_then_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """--token-file wins; else TOLOKA_BRIDGE_SIMULATOR_TOKEN; else sim-token."""
    token_file = tmp_path / "token"
    token_file.write_text("from-file\n")
    monkeypatch.delenv(cli.TOKEN_ENV, raising=False)

    assert cli.read_token(None) == "sim-token"
    monkeypatch.setenv(cli.TOKEN_ENV, "from-env")
    assert cli.read_token(None) == "from-env"
    assert cli.read_token(token_file) == "from-file"


def test_an_empty_or_missing_token_file_is_a_config_error(tmp_path: Path) -> None:
    """An unusable token file stops the start with a clear error."""
    empty = tmp_path / "empty"
    empty.write_text("  \n")

    with pytest.raises(ConfigError, match="is empty"):
        cli.read_token(empty)
    with pytest.raises(ConfigError, match="cannot read token file"):
        cli.read_token(tmp_path / "absent")
