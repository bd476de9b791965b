"""Run the bridge with a pyinstrument profiler that signals switch on and off.

    python -m bench.profiled_bridge OUTPUT.pyisession [--now]

then `-m bridge run` semantics: the bridge runs in this process, configured by its
environment as usual. SIGUSR1 starts sampling the main thread, SIGUSR2 stops it and
writes the session to OUTPUT; with `--now` sampling starts at once and the session is
written at exit (unless SIGUSR2 wrote it before). This lets a benchmark profile the
steady state only, after the initial load, which `python -m pyinstrument` cannot.
"""

import os
import signal
import sys
from pathlib import Path
from types import FrameType

from pyinstrument import Profiler

SAMPLE_SECONDS = 0.001


class SwitchedProfiler:
    """A profiler started and stopped from signal handlers (main thread)."""

    def __init__(self, output: Path) -> None:
        self._output = output
        self._profiler = Profiler(interval=SAMPLE_SECONDS, async_mode="disabled")
        self._running = False
        self.written = False

    def start(self, signum: int = 0, frame: FrameType | None = None) -> None:
        if not self._running:
            self._profiler.start()
            self._running = True

    def stop(self, signum: int = 0, frame: FrameType | None = None) -> None:
        if self._running:
            session = self._profiler.stop()
            self._running = False
            partial = self._output.with_suffix(".partial")
            session.save(str(partial))
            os.replace(partial, self._output)
            self.written = True


def main(argv: list[str]) -> int:
    output = Path(argv[0])
    switch = SwitchedProfiler(output)
    signal.signal(signal.SIGUSR1, switch.start)
    signal.signal(signal.SIGUSR2, switch.stop)
    if "--now" in argv[1:]:
        switch.start()

    from bridge.cli import main as bridge_main

    try:
        return bridge_main(["run"])
    finally:
        if not switch.written:
            switch.stop()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
