"""Brokers the chaos scenarios own: one to break, one that insists on SASL over TLS.

`DedicatedBroker` drives `dev/kafka/kafka.sh` on its own port and data directory (never
the default broker on 9092), so a scenario can stop it, kill it, freeze it with SIGSTOP
and start it again with its data. `SecureBroker` drives `dev/kafka/secure.sh`. Both
refuse a port where some other broker already runs, and stop only what they started,
by the pid their script recorded.
"""

import os
import signal
import socket
import subprocess
import time
from pathlib import Path

from tests.bridge_harness import REPO

KAFKA_SH = REPO / "dev" / "kafka" / "kafka.sh"
SECURE_SH = REPO / "dev" / "kafka" / "secure.sh"
DEDICATED_PORT = int(os.environ.get("CHAOS_BROKER_PORT", "29692"))
SECURE_PORT = int(os.environ.get("CHAOS_SECURE_BROKER_PORT", "29792"))
SCRIPT_TIMEOUT_SECONDS = 180.0


class BrokerError(RuntimeError):
    """A broker script failed; the message carries its output."""


def port_open(port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(0.5)
        return probe.connect_ex(("127.0.0.1", port)) == 0


def _run_script(script: Path, command: str, environment: dict[str, str]) -> str:
    result = subprocess.run(
        [str(script), command],
        env={**os.environ, **environment},
        capture_output=True,
        text=True,
        timeout=SCRIPT_TIMEOUT_SECONDS,
        check=False,
        cwd=REPO,
    )
    output = result.stdout + result.stderr
    if result.returncode != 0:
        raise BrokerError(
            f"{script.name} {command} exited {result.returncode}: {output}"
        )
    return output


def _refuse_taken(*ports: int) -> None:
    for port in ports:
        if port_open(port):
            raise BrokerError(
                f"127.0.0.1:{port} is taken by a process this suite did not start; "
                "set CHAOS_BROKER_PORT / CHAOS_SECURE_BROKER_PORT to free ports"
            )


class DedicatedBroker:
    """A plaintext broker of kafka.sh that this suite may stop, kill and freeze."""

    def __init__(self, data_dir: Path, port: int = DEDICATED_PORT) -> None:
        self.port = port
        self.data_dir = data_dir
        self.bootstrap = f"127.0.0.1:{port}"
        self._pid_file = REPO / ".run" / f"kafka-{port}" / "kafka.pid"
        self._started = False
        self._frozen = False

    def up(self, keep_data: bool = False) -> None:
        """Start it (fresh, or with the data of the previous run); wait until ready."""
        _refuse_taken(self.port, self.port + 1)
        self._started = True
        _run_script(KAFKA_SH, "up", self._environment(keep_data))

    def down(self) -> None:
        """Stop it gracefully (SIGTERM by its pid, as kafka.sh does)."""
        if not self._started:
            return
        self.thaw()
        _run_script(KAFKA_SH, "down", self._environment(keep_data=True))

    def kill(self) -> None:
        """SIGKILL the broker process and wait until it is gone."""
        pid = self.pid()
        self._frozen = False
        os.kill(pid, signal.SIGKILL)
        _wait_gone(pid)

    def freeze(self) -> None:
        """SIGSTOP: connections stay open, nothing answers (a long GC pause, a hang)."""
        os.kill(self.pid(), signal.SIGSTOP)
        self._frozen = True

    def thaw(self) -> None:
        if self._frozen:
            os.kill(self.pid(), signal.SIGCONT)
            self._frozen = False

    def pid(self) -> int:
        return int(self._pid_file.read_text().strip())

    def _environment(self, keep_data: bool) -> dict[str, str]:
        return {
            "KAFKA_PORT": str(self.port),
            "KAFKA_DATA_DIR": str(self.data_dir),
            "KAFKA_KEEP_DATA": "1" if keep_data else "0",
        }


class SecureBroker:
    """The SASL_SSL (SCRAM-SHA-512) broker of secure.sh, with a chosen password."""

    def __init__(self, password_file: Path, port: int = SECURE_PORT) -> None:
        self.port = port
        self.bootstrap = f"127.0.0.1:{port}"
        self.password_file = password_file
        self.user = "bridge"
        run_dir = REPO / ".run" / f"kafka-secure-{port}"
        self.ca_file = run_dir / "client" / "ca.pem"
        self._started = False

    @property
    def password(self) -> str:
        return self.password_file.read_text().strip()

    def up(self) -> None:
        _refuse_taken(self.port, self.port + 1)
        self._started = True
        _run_script(SECURE_SH, "up", self._environment())

    def down(self) -> None:
        if self._started:
            _run_script(SECURE_SH, "down", self._environment())
            self._started = False

    def _environment(self) -> dict[str, str]:
        return {
            "SECURE_KAFKA_PORT": str(self.port),
            "SECURE_KAFKA_USER": self.user,
            "SECURE_KAFKA_PASSWORD_FILE": str(self.password_file),
        }


def _wait_gone(pid: int, timeout_seconds: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_seconds
    while time.monotonic() < deadline:
        if not _running(pid):
            return
        time.sleep(0.05)
    raise BrokerError(f"broker pid {pid} survived SIGKILL for {timeout_seconds:.0f} s")


def _running(pid: int) -> bool:
    """Whether `pid` exists and is not a zombie waiting for its parent."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return False
    return state != "Z"
