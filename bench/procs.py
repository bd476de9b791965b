"""Child processes of a benchmark run: the simulator, bridges, the baseline poller.

Every child runs in its own OS process, so its RSS and CPU time are its own. A
`Child` is stopped by its pid (SIGTERM, then SIGKILL after a grace period), and a
`Children` group stops everything it started when its `with` block exits, whatever
happened inside. Servers bind 127.0.0.1 only.
"""

import asyncio
import contextlib
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from types import TracebackType

import msgspec
import psutil  # type: ignore[import-untyped]

log = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"
API_KEY = "bench-token"
STOP_GRACE_SECONDS = 30.0


class Usage(msgspec.Struct, frozen=True):
    """Resources a process has used so far."""

    rss_bytes: int
    cpu_seconds: float


class Child:
    """One child process with its log file; stopped by pid."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        log_path: Path,
        environment: Mapping[str, str] | None = None,
        capture_stdout: bool = False,
    ) -> None:
        self.name = name
        self.log_path = log_path
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with log_path.open("ab") as log_file:
            self.process = subprocess.Popen(
                list(argv),
                env={**os.environ, **(environment or {})},
                stdout=subprocess.PIPE if capture_stdout else log_file,
                stderr=log_file,
                cwd=REPO,
            )
        self._psutil = psutil.Process(self.process.pid)
        log.info("started %s (pid %d)", name, self.process.pid)

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None

    def usage(self) -> Usage:
        """RSS and user+system CPU time of this process (not its children)."""
        times = self._psutil.cpu_times()
        rss = self._psutil.memory_info().rss
        return Usage(rss_bytes=rss, cpu_seconds=times.user + times.system)

    def read_line(self, timeout_seconds: float) -> str:
        """The first line the child prints on stdout; raises if none comes in time."""
        stdout = self.process.stdout
        if stdout is None:
            raise RuntimeError(f"{self.name} was started without capture_stdout")
        deadline = time.monotonic() + timeout_seconds
        os.set_blocking(stdout.fileno(), False)
        buffer = b""
        while time.monotonic() < deadline:
            chunk = stdout.read()
            if chunk:
                buffer += chunk
                if b"\n" in buffer:
                    return buffer.split(b"\n", 1)[0].decode()
            if not self.alive():
                break
            time.sleep(0.05)
        raise RuntimeError(
            f"{self.name} printed no line within {timeout_seconds:.0f}s "
            f"(exit code {self.process.poll()}); see {self.log_path}"
        )

    def stop(self) -> int | None:
        """SIGTERM, wait, SIGKILL if needed; return the exit code."""
        if self.alive():
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=STOP_GRACE_SECONDS)
            except subprocess.TimeoutExpired:
                log.warning(
                    "%s (pid %d) ignored SIGTERM; killing it", self.name, self.pid
                )
                self.process.kill()
                self.process.wait(timeout=STOP_GRACE_SECONDS)
        if self.process.stdout is not None:
            self.process.stdout.close()
        log.info(
            "stopped %s (pid %d): exit %s", self.name, self.pid, self.process.returncode
        )
        return self.process.returncode


class Children:
    """Starts children and stops all of them, newest first, on exit."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        log_dir.mkdir(parents=True, exist_ok=True)
        self._children: list[Child] = []

    def __enter__(self) -> "Children":
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop_all()

    def start(
        self,
        name: str,
        argv: Sequence[str],
        environment: Mapping[str, str] | None = None,
        capture_stdout: bool = False,
    ) -> Child:
        log_path = self.log_dir / f"{name}.log"
        child = Child(name, argv, log_path, environment, capture_stdout)
        self._children.append(child)
        return child

    def stop(self, child: Child) -> int | None:
        if child in self._children:
            self._children.remove(child)
        return child.stop()

    def stop_all(self) -> None:
        while self._children:
            child = self._children.pop()
            with contextlib.suppress(Exception):
                child.stop()


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((HOST, 0))
        return int(probe.getsockname()[1])


def python_module(module: str, *args: str) -> list[str]:
    return [sys.executable, "-m", module, *args]


@contextlib.contextmanager
def stopped_on_exit(children: Children, child: Child) -> Iterator[Child]:
    """Stop one child when the block exits (the group would stop it later anyway)."""
    try:
        yield child
    finally:
        children.stop(child)


class UsageTrace:
    """CPU and RSS of one child sampled every `every_seconds` (wall-clock times)."""

    def __init__(self, child: Child, every_seconds: float = 0.2) -> None:
        self._child = child
        self._every_seconds = every_seconds
        self.samples: list[tuple[float, Usage]] = []

    def sample(self) -> None:
        if self._child.alive():
            self.samples.append((time.time(), self._child.usage()))

    def cpu_at(self, moment: float) -> float:
        """CPU seconds used by `moment` (the last sample taken at or before it)."""
        before = [usage for at, usage in self.samples if at <= moment]
        usage = before[-1] if before else self.samples[0][1]
        return usage.cpu_seconds

    @property
    def peak_rss_bytes(self) -> int:
        return max((usage.rss_bytes for _, usage in self.samples), default=0)

    async def run(self) -> None:
        """Sample until cancelled."""
        while True:
            self.sample()
            await asyncio.sleep(self._every_seconds)
