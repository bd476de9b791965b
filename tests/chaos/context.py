"""What every scenario gets: the default broker, a work directory, a scale, secrets.

`Scale` holds the knobs that make a run short (CI, a few minutes for the whole suite)
or long (`make chaos`). `ChaosContext` starts the secure broker on first use and stops
it in `close`, so two scenarios can share it.
"""

import asyncio
import uuid
from pathlib import Path

import msgspec

from tests.chaos.brokers import SecureBroker


class Scale(msgspec.Struct, frozen=True, kw_only=True):
    """How hard and how long each scenario pushes."""

    name: str
    crash_kills: int
    crash_history: int
    crash_burst: int
    crash_rate_per_second: float
    broker_outage_seconds: float
    broker_freezes: int
    broker_kills: int
    commit_freezes: int
    storm_seconds: float
    storms_in_one_run: bool
    gap_seconds: float
    gap_lag_seconds: float
    gap_rounds: int
    secrets_run_seconds: float
    secure_run_seconds: float


CI = Scale(
    name="ci",
    crash_kills=20,
    crash_history=2500,
    crash_burst=300,
    crash_rate_per_second=15.0,
    broker_outage_seconds=10.0,
    broker_freezes=1,
    broker_kills=0,
    commit_freezes=2,
    storm_seconds=5.0,
    storms_in_one_run=True,
    gap_seconds=12.0,
    gap_lag_seconds=4.0,
    gap_rounds=1,
    secrets_run_seconds=6.0,
    secure_run_seconds=5.0,
)

LONG = Scale(
    name="long",
    crash_kills=40,
    crash_history=8000,
    crash_burst=800,
    crash_rate_per_second=25.0,
    broker_outage_seconds=40.0,
    broker_freezes=8,
    broker_kills=2,
    commit_freezes=10,
    storm_seconds=20.0,
    storms_in_one_run=False,
    gap_seconds=75.0,
    gap_lag_seconds=10.0,
    gap_rounds=3,
    secrets_run_seconds=40.0,
    secure_run_seconds=30.0,
)

SCALES = {scale.name: scale for scale in (CI, LONG)}


def distinctive_secret(kind: str) -> str:
    """A secret no log line could contain by accident."""
    return f"{kind}-{uuid.uuid4().hex}"


class ChaosContext:
    """Shared by the scenarios of one suite run."""

    def __init__(self, bootstrap: str, workdir: Path, scale: Scale) -> None:
        self.bootstrap = bootstrap
        self.workdir = workdir
        self.scale = scale
        self.kafka_password = distinctive_secret("kafka-password")
        self._secure: SecureBroker | None = None
        workdir.mkdir(parents=True, exist_ok=True)

    def directory(self, name: str) -> Path:
        """A fresh directory for one scenario's logs and files."""
        path = self.workdir / name
        path.mkdir(parents=True, exist_ok=True)
        return path

    async def secure_broker(self) -> SecureBroker:
        """The SASL_SSL broker, started with `kafka_password` on first use."""
        if self._secure is None:
            password_file = self.workdir / "kafka.password"
            password_file.write_text(self.kafka_password + "\n")
            password_file.chmod(0o600)
            broker = SecureBroker(password_file)
            self._secure = broker
            await asyncio.to_thread(broker.up)
        return self._secure

    def close(self) -> None:
        """Stop what this context started."""
        if self._secure is not None:
            self._secure.down()
            self._secure = None
