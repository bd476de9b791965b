"""Configuration: a TOML file, overridden by environment variables, checked at start.

Every setting has a key path such as `poll.interval_seconds`. The variable
`TOLOKA_BRIDGE_POLL__INTERVAL_SECONDS` overrides it (section and key joined by a double
underscore; lists are comma-separated). Secrets (`toloka.api_key`,
`kafka.sasl_password`) come only from the environment or from a file named by
`*_file`, never from the TOML file or the command line, and print as `<redacted>`.

`load_config` raises `ConfigError` whose message names the key, where its value came
from and what was expected.
"""

import os
import re
import tomllib
from collections.abc import Mapping
from datetime import datetime, timedelta
from pathlib import Path
from typing import Annotated, Any, Literal

import msgspec

from bridge.errors import ConfigError
from bridge.operation import parse_wire_datetime

ENV_PREFIX = "TOLOKA_BRIDGE_"
SECRET_KEYS = {("toloka", "api_key"), ("kafka", "sasl_password")}
REDACTED = "<redacted>"

Seconds = Annotated[float, msgspec.Meta(gt=0)]
Count = Annotated[int, msgspec.Meta(ge=1)]
Name = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9._-]{1,249}$")]


class Secret:
    """A string that never shows itself in a repr, a log line or printed config."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return f"Secret({REDACTED!r})"

    __str__ = __repr__


class _Section(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Base of every config section: unknown keys are errors."""


class TolokaSettings(_Section):
    """Where the API is and how to talk to it."""

    base_url: str = "https://toloka.dev/api"
    auth_scheme: Literal["ApiKey", "OAuth"] = "ApiKey"
    api_key: Secret | None = None
    api_key_file: str | None = None
    environment: Name = "production"
    account: Name = "default"
    timeout_seconds: Seconds = 30.0
    page_size: Annotated[int, msgspec.Meta(ge=1, le=1000)] = 300
    max_attempts: Count = 6
    backoff_initial_seconds: Seconds = 0.5
    backoff_max_seconds: Seconds = 30.0
    max_retry_after_seconds: Seconds = 300.0
    max_response_bytes: Count = 64 * 1024 * 1024
    max_clock_skew_seconds: Seconds = 300.0


class PollSettings(_Section):
    """How often and how far back the poller reads."""

    interval_seconds: Seconds = 2.0
    lag_seconds: Annotated[float, msgspec.Meta(ge=0)] = 60.0
    start: str = "window"
    start_window_seconds: Annotated[float, msgspec.Meta(ge=0)] = 3600.0
    progress_events: bool = True
    max_events_per_transaction: Count = 2000
    max_lookups_per_cycle: Count = 200
    shutdown_grace_seconds: Seconds = 20.0


class KafkaSettings(_Section):
    """Brokers, topics, delivery and security."""

    bootstrap_servers: Annotated[list[str], msgspec.Meta(min_length=1)] = msgspec.field(
        default_factory=lambda: ["127.0.0.1:9092"]
    )
    client_id: Name = "toloka-bridge"
    events_topic: Name = "toloka.operations.events"
    state_topic: Name = "toloka.operations.state"
    transactional_id: Name = "toloka-bridge"
    transactions: bool = True
    create_topics: bool = True
    events_partitions: Count = 6
    state_partitions: Count = 1
    replication_factor: Count = 3
    min_insync_replicas: Count = 2
    request_timeout_seconds: Seconds = 30.0
    transaction_timeout_seconds: Seconds = 60.0
    connect_timeout_seconds: Seconds = 120.0
    linger_seconds: Annotated[float, msgspec.Meta(ge=0)] = 0.005
    compression: Literal["none", "gzip"] = "none"
    max_operation_bytes: Annotated[int, msgspec.Meta(ge=1024)] = 64 * 1024
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = (
        "PLAINTEXT"
    )
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = None
    sasl_username: str | None = None
    sasl_password: Secret | None = None
    sasl_password_file: str | None = None
    ssl_cafile: str | None = None
    ssl_certfile: str | None = None
    ssl_keyfile: str | None = None
    ssl_check_hostname: bool = True


class HttpSettings(_Section):
    """The endpoints for Prometheus and Kubernetes probes."""

    host: str = "127.0.0.1"
    port: Annotated[int, msgspec.Meta(ge=0, le=65535)] = 9464
    operation_series_limit: Annotated[int, msgspec.Meta(ge=0)] = 1000
    ready_poll_age_seconds: Seconds = 60.0


class LogSettings(_Section):
    """How much to log and in which shape."""

    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    format: Literal["auto", "json", "plain"] = "auto"


class Config(_Section):
    """The whole configuration of one bridge deployment."""

    toloka: TolokaSettings = msgspec.field(default_factory=TolokaSettings)
    poll: PollSettings = msgspec.field(default_factory=PollSettings)
    kafka: KafkaSettings = msgspec.field(default_factory=KafkaSettings)
    http: HttpSettings = msgspec.field(default_factory=HttpSettings)
    log: LogSettings = msgspec.field(default_factory=LogSettings)


def load_config(
    path: str | Path | None, environ: Mapping[str, str] | None = None
) -> Config:
    """Read the file, apply the environment, resolve secrets and check everything."""
    environ = os.environ if environ is None else environ
    document, origins = _read_toml(path)
    _reject_secrets_in_file(document, path)
    _merge_environment(document, origins, environ)

    config = _convert(document, origins)
    config = _resolve_secrets(config)
    _check_consistency(config)
    return config


def start_moment(config: Config, now: datetime) -> datetime | None:
    """Where a cold start begins reading; None means from the beginning of time."""
    start = config.poll.start
    if start == "all":
        return None
    if start == "window":
        return now - timedelta(seconds=config.poll.start_window_seconds)
    return parse_wire_datetime(start)


def redacted(config: Config) -> dict[str, Any]:
    """The effective configuration as plain data, secrets replaced by a marker."""
    return msgspec.to_builtins(config, enc_hook=_encode_secret)  # type: ignore[no-any-return]


def _read_toml(path: str | Path | None) -> tuple[dict[str, Any], dict[str, str]]:
    if path is None:
        return {}, {}

    try:
        with open(path, "rb") as handle:
            document = tomllib.load(handle)
    except FileNotFoundError as error:
        raise ConfigError(f"config file {str(path)!r} does not exist") from error
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(
            f"config file {str(path)!r} is not valid TOML: {error}"
        ) from error

    origins = {key: str(path) for key in _key_paths(document)}
    return document, origins


def _key_paths(document: dict[str, Any], prefix: str = "") -> list[str]:
    paths = []
    for key, value in document.items():
        path = f"{prefix}{key}"
        paths.append(path)
        if isinstance(value, dict):
            paths.extend(_key_paths(value, f"{path}."))
    return paths


def _reject_secrets_in_file(document: dict[str, Any], path: str | Path | None) -> None:
    for section, key in SECRET_KEYS:
        if key in document.get(section, {}):
            env_name = _env_name(section, key)
            raise ConfigError(
                f"{section}.{key} must not be written in {str(path)!r}: secrets "
                f"come from the environment ({env_name}) or from {section}.{key}_file"
            )


def _merge_environment(
    document: dict[str, Any], origins: dict[str, str], environ: Mapping[str, str]
) -> None:
    pattern = re.compile(re.escape(ENV_PREFIX) + r"([A-Z0-9_]+?)__([A-Z0-9_]+)")
    for name in sorted(environ):
        match = pattern.fullmatch(name)
        if match is None:
            continue

        section, key = match.group(1).lower(), match.group(2).lower()
        value: Any = environ[name]
        if _is_list_setting(section, key):
            value = [item.strip() for item in value.split(",") if item.strip()]

        target = document.setdefault(section, {})
        if not isinstance(target, dict):
            raise ConfigError(
                f"{name} sets a key inside {section!r}, which is not a table"
            )
        target[key] = value
        origins[f"{section}.{key}"] = name


def _is_list_setting(section: str, key: str) -> bool:
    section_type = _SECTION_TYPES.get(section)
    if section_type is None:
        return False
    field_types = {
        field.name: field.type for field in msgspec.structs.fields(section_type)
    }
    return "list[" in repr(field_types.get(key))


def _convert(document: dict[str, Any], origins: dict[str, str]) -> Config:
    try:
        return msgspec.convert(document, Config, strict=False, dec_hook=_decode_secret)
    except msgspec.ValidationError as error:
        raise ConfigError(_explain(str(error), document, origins)) from None


def _explain(message: str, document: dict[str, Any], origins: dict[str, str]) -> str:
    """Turn msgspec's `... - at `$.a.b`` into a message naming key, value and source."""
    match = re.search(r"(.*) - at `\$\.([\w.\[\]]+)`", message)
    if match is None:
        unknown = re.search(r"Object contains unknown field `(\w+)`", message)
        if unknown:
            section = unknown.group(1)
            sources = {v for k, v in origins.items() if k.split(".")[0] == section}
            expected = ", ".join(sorted(_SECTION_TYPES))
            return (
                f"{section}: unknown section (from {', '.join(sorted(sources))}); "
                f"expected one of {expected}"
            )
        return f"invalid configuration: {message}"

    problem, key_path = match.groups()
    unknown = re.fullmatch(r"Object contains unknown field `(\w+)`", problem)
    if unknown:
        key_path = f"{key_path}.{unknown.group(1)}"
        return f"{key_path}: unknown key (from {origins.get(key_path, 'defaults')})"

    problem = problem[:1].lower() + problem[1:]
    source = origins.get(key_path.split("[")[0], "defaults")
    section, _, key = key_path.partition(".")
    if (section, key) in SECRET_KEYS:
        return f"{key_path}: {problem} (from {source})"
    value = _lookup(document, key_path)
    return f"{key_path} = {value!r}: {problem} (from {source})"


def _lookup(document: dict[str, Any], key_path: str) -> Any:
    value: Any = document
    for part in re.findall(r"\w+|\[\d+\]", key_path):
        if part.startswith("["):
            value = value[int(part[1:-1])]
        else:
            value = value.get(part) if isinstance(value, dict) else None
    return value


def _decode_secret(kind: type, value: Any) -> Any:
    if kind is Secret and isinstance(value, str):
        return Secret(value)
    raise NotImplementedError(f"cannot build {kind!r} from {type(value).__name__}")


def _encode_secret(value: Any) -> Any:
    if isinstance(value, Secret):
        return REDACTED
    raise NotImplementedError(f"cannot encode {type(value).__name__}")


def _resolve_secrets(config: Config) -> Config:
    toloka = config.toloka
    if toloka.api_key is None and toloka.api_key_file is not None:
        key = _read_secret_file("toloka.api_key_file", toloka.api_key_file)
        toloka = msgspec.structs.replace(toloka, api_key=key)

    kafka = config.kafka
    if kafka.sasl_password is None and kafka.sasl_password_file is not None:
        password = _read_secret_file(
            "kafka.sasl_password_file", kafka.sasl_password_file
        )
        kafka = msgspec.structs.replace(kafka, sasl_password=password)

    return msgspec.structs.replace(config, toloka=toloka, kafka=kafka)


def _read_secret_file(key_path: str, path: str) -> Secret:
    try:
        text = Path(path).read_text(encoding="utf-8").strip()
    except OSError as error:
        raise ConfigError(
            f"{key_path} = {path!r}: cannot read it ({error.strerror})"
        ) from None
    if not text:
        raise ConfigError(f"{key_path} = {path!r}: the file is empty")
    return Secret(text)


def _check_consistency(config: Config) -> None:
    """Rules that involve more than one key or a format msgspec cannot express."""
    _check_start(config.poll.start)
    _check_url(config.toloka.base_url)
    _check_kafka(config.kafka)

    if config.toloka.api_key is None:
        raise ConfigError(
            "toloka.api_key: missing; set the environment variable "
            f"{_env_name('toloka', 'api_key')} or toloka.api_key_file"
        )
    toloka = config.toloka
    if toloka.backoff_initial_seconds > toloka.backoff_max_seconds:
        raise ConfigError(
            f"toloka.backoff_initial_seconds = {toloka.backoff_initial_seconds!r}: "
            "must not exceed toloka.backoff_max_seconds "
            f"({toloka.backoff_max_seconds!r})"
        )


def _check_start(start: str) -> None:
    if start in ("window", "all"):
        return
    try:
        parse_wire_datetime(start)
    except ValueError:
        raise ConfigError(
            f"poll.start = {start!r}: expected 'window', 'all' or a UTC timestamp "
            "such as '2026-01-31T00:00:00'"
        ) from None


def _check_url(url: str) -> None:
    if not re.fullmatch(r"https?://[^\s/?#]+(/[^\s?#]*)?", url):
        raise ConfigError(
            f"toloka.base_url = {url!r}: expected an http(s) URL without query"
        )


def _check_kafka(kafka: KafkaSettings) -> None:
    if kafka.min_insync_replicas > kafka.replication_factor:
        raise ConfigError(
            f"kafka.min_insync_replicas = {kafka.min_insync_replicas!r}: must not "
            f"exceed kafka.replication_factor ({kafka.replication_factor!r})"
        )
    if kafka.events_topic == kafka.state_topic:
        raise ConfigError(
            f"kafka.state_topic = {kafka.state_topic!r}: "
            "must differ from kafka.events_topic"
        )
    if kafka.security_protocol.startswith("SASL"):
        _check_sasl(kafka)
    elif kafka.sasl_mechanism is not None:
        raise ConfigError(
            f"kafka.sasl_mechanism = {kafka.sasl_mechanism!r}: needs security_protocol "
            f"SASL_PLAINTEXT or SASL_SSL, not {kafka.security_protocol!r}"
        )


def _check_sasl(kafka: KafkaSettings) -> None:
    protocol = kafka.security_protocol
    if kafka.sasl_mechanism is None:
        raise ConfigError(f"kafka.sasl_mechanism: missing; required by {protocol}")
    if not kafka.sasl_username:
        raise ConfigError(f"kafka.sasl_username: missing; required by {protocol}")
    if kafka.sasl_password is None:
        raise ConfigError(
            f"kafka.sasl_password: missing; required by {protocol}; set "
            f"{_env_name('kafka', 'sasl_password')} or kafka.sasl_password_file"
        )


def _env_name(section: str, key: str) -> str:
    return f"{ENV_PREFIX}{section.upper()}__{key.upper()}"


_SECTION_TYPES: dict[str, type[_Section]] = {
    "toloka": TolokaSettings,
    "poll": PollSettings,
    "kafka": KafkaSettings,
    "http": HttpSettings,
    "log": LogSettings,
}
