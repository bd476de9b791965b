"""The bridge as a child process: its log, probes and metrics, read from outside.

`ChaosBridge` wraps the harness's `BridgeProcess` with a fixed HTTP port (so /metrics
and /readyz can be scraped), a log file whose part per run can be read back, and a
`stop` that never leaves the process behind. `run_cli` runs one `toloka-bridge`
command to completion, as an operator would.
"""

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.bridge_harness import REPO, BridgeProcess

STOP_TIMEOUT_SECONDS = 60.0
LINE_POLL_SECONDS = 0.005


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Samples:
    """One /metrics scrape: sample values by name and labels."""

    def __init__(self, text: str) -> None:
        self.text = text
        self._values: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                key = (sample.name, frozenset(sample.labels.items()))
                self._values[key] = sample.value

    def value(self, name: str, **labels: str) -> float:
        """The sample with exactly these labels; 0 when it is absent."""
        return self._values.get((name, frozenset(labels.items())), 0.0)

    def total(self, name: str, **labels: str) -> float:
        """The sum over every sample of `name` carrying at least these labels."""
        wanted = set(labels.items())
        return sum(
            value
            for (sample, sample_labels), value in self._values.items()
            if sample == name and wanted <= sample_labels
        )


class ChaosBridge:
    """`python -m bridge run` with a known HTTP port and a log read per run."""

    def __init__(
        self, environment: Mapping[str, str], log_path: Path, http_port: int = 0
    ) -> None:
        self.http_port = http_port or free_port()
        self.log_path = log_path
        self.environment = {
            **environment,
            "TOLOKA_BRIDGE_HTTP__PORT": str(self.http_port),
        }
        self._process = BridgeProcess(self.environment, log_path)
        self._run_offset = 0
        self.starts = 0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def pid(self) -> int | None:
        process = self._process.process
        return None if process is None else process.pid

    def start(self) -> None:
        self._run_offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        self._process.start()
        self.starts += 1

    def alive(self) -> bool:
        return self._process.alive()

    def returncode(self) -> int | None:
        process = self._process.process
        return None if process is None else process.poll()

    def kill(self) -> None:
        self._process.kill()

    def freeze(self) -> None:
        """SIGSTOP: the process stays exactly where it is until `thaw` or a kill."""
        self._signal(signal.SIGSTOP)

    def thaw(self) -> None:
        self._signal(signal.SIGCONT)

    def _signal(self, number: signal.Signals) -> None:
        process = self._process.process
        if process is not None and process.poll() is None:
            process.send_signal(number)

    async def terminate(self) -> int:
        """SIGTERM and wait (off the event loop, which may serve the simulator)."""
        return await asyncio.to_thread(self._process.terminate)

    async def stop(self) -> None:
        """`ensure_stopped` off the event loop."""
        await asyncio.to_thread(self.ensure_stopped)

    def ensure_stopped(self) -> None:
        """Make sure the process is gone: SIGTERM, then SIGKILL after a grace period."""
        process = self._process.process
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=STOP_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=30)

    def run_log(self) -> str:
        """What the current (or last) run wrote so far."""
        return self._read_log(self._run_offset)

    def full_log(self) -> str:
        return self._read_log(0)

    async def wait_for_line(self, text: str, timeout_seconds: float) -> bool:
        """Wait until the current run logs a line containing `text`, or it exits."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_seconds
        while loop.time() < deadline:
            if text in self.run_log():
                return True
            if not self.alive():
                return text in self.run_log()
            await asyncio.sleep(LINE_POLL_SECONDS)
        return False

    async def metrics(self) -> Samples | None:
        """A scrape of /metrics, or None when the endpoint does not answer."""
        answer = await self._get("/metrics")
        if answer is None or answer.status_code != 200:
            return None
        return Samples(answer.text)

    async def readyz(self) -> tuple[int, str] | None:
        """Status and body of /readyz, or None when the endpoint does not answer."""
        answer = await self._get("/readyz")
        return None if answer is None else (answer.status_code, answer.text)

    async def ready(self) -> bool:
        answer = await self.readyz()
        return answer is not None and answer[0] == 200

    async def _get(self, path: str) -> httpx.Response | None:
        async with httpx.AsyncClient(timeout=5.0) as client:
            with contextlib.suppress(httpx.HTTPError):
                return await client.get(self.base_url + path)
        return None

    def _read_log(self, offset: int) -> str:
        if not self.log_path.exists():
            return ""
        with self.log_path.open("rb") as log:
            log.seek(offset)
            return log.read().decode(errors="replace")


def run_cli(
    args: list[str], environment: Mapping[str, str], timeout_seconds: float = 120.0
) -> subprocess.CompletedProcess[str]:
    """One `python -m bridge ...` to completion, with only the given TOLOKA_BRIDGE_*."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("TOLOKA_BRIDGE")}
    return subprocess.run(
        [sys.executable, "-m", "bridge", *args],
        env={**clean, **environment},
        capture_output=True,
        text=True,
        timeout=timeout_seconds,
        check=False,
        cwd=REPO,
    )
