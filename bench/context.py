"""What every scenario of a run shares: the child processes, the broker, the sizes."""

import logging
from pathlib import Path

from bench.procs import Children
from bench.profiles import Profile
from bench.watch import create_topic

log = logging.getLogger(__name__)


class RunContext:
    """The broker, the run directory, the profile and the process group of a run."""

    def __init__(
        self,
        children: Children,
        bootstrap: str,
        run_dir: Path,
        profile: Profile,
        bridge_wrapper: list[str] | None = None,
    ) -> None:
        self.bridge_wrapper = bridge_wrapper
        self.children = children
        self.bootstrap = bootstrap
        self.run_dir = run_dir
        self.profile = profile

    def path(self, name: str) -> Path:
        return self.run_dir / name

    async def create_topic(self, topic: str, partitions: int) -> None:
        await create_topic(self.bootstrap, topic, partitions)
        log.info("created topic %s (%d partitions)", topic, partitions)
