"""Every setting of the simulator, as msgspec Structs that reject unknown keys.

A TOML file maps onto `SimulatorSettings` (top-level `seed` and `truth_path`, then the
tables `[server]`, `[load]`, `[load.type_weights]` and `[faults]`). The token is not a
setting: it comes from the environment or a file (see `cli.py`) so that settings can
be shown and logged freely.
"""

import tomllib
from pathlib import Path
from typing import Annotated, Literal

import msgspec

from bridge.errors import ConfigError

Probability = Annotated[float, msgspec.Meta(ge=0.0, le=1.0)]
NonNegativeFloat = Annotated[float, msgspec.Meta(ge=0.0)]
PositiveFloat = Annotated[float, msgspec.Meta(gt=0.0)]
PositiveInt = Annotated[int, msgspec.Meta(ge=1)]
NonNegativeInt = Annotated[int, msgspec.Meta(ge=0)]
Port = Annotated[int, msgspec.Meta(ge=0, le=65535)]
AuthScheme = Literal["ApiKey", "OAuth"]
QuotaInterval = Literal["MIN", "HOUR", "DAY"]

DEFAULT_TYPE_WEIGHTS: dict[str, float] = {
    "POOL.OPEN": 12.0,
    "POOL.CLOSE": 12.0,
    "POOL.ARCHIVE": 4.0,
    "POOL.CLONE": 3.0,
    "TRAINING.OPEN": 2.0,
    "TRAINING.CLOSE": 2.0,
    "TRAINING.ARCHIVE": 1.0,
    "TRAINING.CLONE": 1.0,
    "PROJECT.ARCHIVE": 1.0,
    "TASK.BATCH_CREATE": 20.0,
    "TASK_SUITE.BATCH_CREATE": 6.0,
    "USER_BONUS.BATCH_CREATE": 5.0,
    "SOLUTION.AGGREGATE": 3.0,
    "ANALYTICS": 25.0,
    "KNOWN_SOLUTIONS.GENERATE": 1.0,
    "PSEUDO.PSEUDO": 1.0,
}


class ServerSettings(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Where the simulator listens and how strict its API is."""

    host: str = "127.0.0.1"
    port: Port = 8080
    default_limit: PositiveInt = 50
    max_limit: PositiveInt = 300
    auth_schemes: list[AuthScheme] = msgspec.field(
        default_factory=lambda: ["ApiKey", "OAuth"]
    )
    reject_unknown_params: bool = False


class LoadSettings(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """How many operations appear, of which types, and how they move."""

    rate_per_second: NonNegativeFloat = 1.0
    paused: bool = False
    type_weights: dict[str, PositiveFloat] = msgspec.field(
        default_factory=lambda: dict(DEFAULT_TYPE_WEIGHTS)
    )
    mean_queue_seconds: NonNegativeFloat = 2.0
    mean_run_seconds: NonNegativeFloat = 10.0
    fail_ratio: Probability = 0.05
    fail_unstarted_ratio: Probability = 0.02
    instant_ratio: Probability = 0.1
    instant_max_seconds: NonNegativeFloat = 0.3
    burst_probability: Probability = 0.01
    burst_size: PositiveInt = 50
    max_progress_steps: NonNegativeInt = 4
    uuid_ratio: Probability = 0.5
    odd_precision_ratio: Probability = 0.0
    history: NonNegativeInt = 0
    history_window_seconds: PositiveFloat = 3600.0
    running: NonNegativeInt = 0
    tick_seconds: PositiveFloat = 0.05


class FaultSettings(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Injected faults; request faults are probabilities per API request.

    `huge_details_*`, `late_visibility_*` and `hidden_probability` are decided per
    operation (a stable hash of the seed and the id), so changing them at runtime
    applies at once to every operation.
    """

    server_error_probability: Probability = 0.0
    rate_limit_probability: Probability = 0.0
    retry_after_seconds: NonNegativeFloat = 1.0
    rate_limit_no_header_probability: Probability = 0.0
    quota_probability: Probability = 0.0
    quota_interval: QuotaInterval = "DAY"
    slow_probability: Probability = 0.0
    slow_delay_seconds: NonNegativeFloat = 2.0
    malformed_probability: Probability = 0.0
    junk_probability: Probability = 0.0
    junk_items_per_page: PositiveInt = 1
    huge_details_probability: Probability = 0.0
    huge_details_bytes: PositiveInt = 5_000_000
    late_visibility_probability: Probability = 0.0
    late_visibility_delay_seconds: NonNegativeFloat = 30.0
    hidden_probability: Probability = 0.0


class SimulatorSettings(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """All settings of one simulator run."""

    seed: int = 0
    truth_path: str | None = None
    server: ServerSettings = msgspec.field(default_factory=ServerSettings)
    load: LoadSettings = msgspec.field(default_factory=LoadSettings)
    faults: FaultSettings = msgspec.field(default_factory=FaultSettings)


def check_settings(settings: SimulatorSettings) -> SimulatorSettings:
    """Check the rules that span several fields; return the settings unchanged."""
    server = settings.server
    if server.default_limit > server.max_limit:
        raise ConfigError(
            f"server.default_limit ({server.default_limit!r}) must not exceed "
            f"server.max_limit ({server.max_limit!r})"
        )
    if not server.auth_schemes:
        raise ConfigError("server.auth_schemes must name ApiKey, OAuth or both")
    if not settings.load.type_weights:
        raise ConfigError("load.type_weights must name at least one operation type")
    return settings


def settings_from_mapping(data: object) -> SimulatorSettings:
    """Convert parsed TOML (or any mapping) into checked settings."""
    try:
        settings = msgspec.convert(data, SimulatorSettings)
    except msgspec.ValidationError as error:
        raise ConfigError(f"invalid simulator settings: {error}") from error
    return check_settings(settings)


def load_settings(path: Path) -> SimulatorSettings:
    """Read settings from a TOML file; unknown keys and bad values are errors."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise ConfigError(
            f"cannot read simulator config {str(path)!r}: {error}"
        ) from error
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(
            f"simulator config {str(path)!r} is not TOML: {error}"
        ) from error
    return settings_from_mapping(data)


def load_fault_settings(path: Path) -> FaultSettings:
    """Read a TOML file holding only fault settings (the keys of `[faults]`)."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
        return msgspec.convert(data, FaultSettings)
    except OSError as error:
        raise ConfigError(f"cannot read faults file {str(path)!r}: {error}") from error
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"faults file {str(path)!r} is not TOML: {error}") from error
    except msgspec.ValidationError as error:
        raise ConfigError(f"invalid faults in {str(path)!r}: {error}") from error
