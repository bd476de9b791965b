"""Configuration: TOML + environment, secrets, and errors that name the key."""

from pathlib import Path

import pytest

from bridge.config import load_config, redacted
from bridge.errors import ConfigError

KEY_ENV = {"TOLOKA_BRIDGE_TOLOKA__API_KEY": "s3cret-key"}


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "bridge.toml"
    path.write_text(text)
    return path


def test_defaults_with_only_the_key_are_valid() -> None:
    """The API key is the only setting without a usable default."""
    config = load_config(None, KEY_ENV)

    assert config.poll.interval_seconds == 2.0
    assert config.kafka.transactions is True
    assert config.toloka.api_key is not None
    assert config.toloka.api_key.reveal() == "s3cret-key"


def test_environment_overrides_the_file(tmp_path: Path) -> None:
    """TOLOKA_BRIDGE_SECTION__KEY beats the TOML file; lists are comma-separated."""
    path = write(tmp_path, '[poll]\ninterval_seconds = 5\n[kafka]\nclient_id = "a"\n')
    env = {
        **KEY_ENV,
        "TOLOKA_BRIDGE_POLL__INTERVAL_SECONDS": "0.5",
        "TOLOKA_BRIDGE_KAFKA__BOOTSTRAP_SERVERS": "k1:9092, k2:9092",
    }
    config = load_config(path, env)

    assert config.poll.interval_seconds == 0.5
    assert config.kafka.client_id == "a"
    assert config.kafka.bootstrap_servers == ["k1:9092", "k2:9092"]


@pytest.mark.parametrize(
    ("text", "env", "message"),
    [
        ('[poll]\ninterval_seconds = "soon"\n', {}, r"poll\.interval_seconds = 'soon'"),
        (
            "[poll]\nintervall_seconds = 1\n",
            {},
            r"poll\.intervall_seconds: unknown key",
        ),
        ("[pol]\nx = 1\n", {}, r"pol: unknown section"),
        ('[poll]\nstart = "yesterday"\n', {}, r"poll\.start = 'yesterday'"),
        (
            "[toloka]\npage_size = 0\n",
            {},
            r"toloka\.page_size = 0: expected `int` >= 1",
        ),
        ('[toloka]\nauth_scheme = "Bearer"\n', {}, r"toloka\.auth_scheme = 'Bearer'"),
        (
            "[kafka]\nreplication_factor = 1\n",
            {},
            r"kafka\.min_insync_replicas = 2: must not exceed",
        ),
        (
            '[kafka]\nsecurity_protocol = "SASL_SSL"\n',
            {},
            r"kafka\.sasl_mechanism: missing",
        ),
        ("", {"TOLOKA_BRIDGE_POLL__LAG_SECONDS": "-1"}, r"TOLOKA_BRIDGE_POLL__LAG"),
    ],
)
def test_bad_values_name_the_key_and_value(
    tmp_path: Path, text: str, env: dict[str, str], message: str
) -> None:
    """Every error says which key, what value and where it came from."""
    with pytest.raises(ConfigError, match=message):
        load_config(write(tmp_path, text), {**KEY_ENV, **env})


def test_missing_api_key_says_how_to_provide_it() -> None:
    """Without a key the error names the variable and the file setting."""
    with pytest.raises(ConfigError, match="TOLOKA_BRIDGE_TOLOKA__API_KEY"):
        load_config(None, {})


def test_secret_in_the_file_is_refused(tmp_path: Path) -> None:
    """A ConfigMap must never hold the key, so the TOML file may not either."""
    path = write(tmp_path, '[toloka]\napi_key = "oops"\n')
    with pytest.raises(ConfigError, match="must not be written in"):
        load_config(path, {})


def test_secrets_come_from_files(tmp_path: Path) -> None:
    """A *_file setting reads the secret, stripped of the trailing newline."""
    key_file = tmp_path / "key"
    key_file.write_text("from-file\n")
    path = write(tmp_path, f'[toloka]\napi_key_file = "{key_file}"\n')

    config = load_config(path, {})

    assert config.toloka.api_key is not None
    assert config.toloka.api_key.reveal() == "from-file"


def test_unreadable_secret_file_is_a_config_error(tmp_path: Path) -> None:
    """A missing secret file is named, with the key that pointed at it."""
    path = write(tmp_path, f'[toloka]\napi_key_file = "{tmp_path}/absent"\n')
    with pytest.raises(ConfigError, match=r"toloka\.api_key_file = .*absent"):
        load_config(path, {})


def test_bad_secret_value_is_not_echoed() -> None:
    """Errors about a secret never show its value."""
    env = {"TOLOKA_BRIDGE_KAFKA__SASL_PASSWORD": "hunter2", **KEY_ENV}
    config = load_config(None, env)

    assert "hunter2" not in repr(config)
    assert "s3cret-key" not in str(redacted(config))
    assert redacted(config)["kafka"]["sasl_password"] == "<redacted>"


def test_missing_file_is_reported(tmp_path: Path) -> None:
    """A config path that does not exist is an error, not silently ignored."""
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.toml", KEY_ENV)
