"""`python -m bench`: run the scenarios of one profile and write the results.

    python -m bench --profile short       # make bench: a few minutes
    python -m bench --profile long        # make bench-long: full sizes, release check

The broker is `$KAFKA_BOOTSTRAP` or 127.0.0.1:`$KAFKA_PORT` (9092), as started by
`dev/with-kafka.sh`. Child logs and scratch files go to `.run/bench/<time>/`
(gitignored); results to `bench/results/` (`--output-dir`). Every process started here
is stopped by its pid when the run ends, however it ends. A scenario that fails is
recorded in the results' `errors` and the run goes on with the next one; the exit code
is then 1.
"""

import argparse
import asyncio
import functools
import logging
import os
import platform
import shlex
import signal
import sys
import time
import traceback
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path

import msgspec
import psutil  # type: ignore[import-untyped]

from bench.catchup import run_catchup
from bench.chart import draw_charts
from bench.context import RunContext
from bench.latency import run_latency
from bench.procs import REPO, Children
from bench.profiles import PROFILES, Profile
from bench.profiling import run_profile
from bench.report import render_markdown, render_readme_block
from bench.results import BenchResults, Machine
from bench.steady import run_steady
from bench.summary import api_model, headline
from dev.readme_block import rewrite_readme

log = logging.getLogger("bench")

SCENARIOS = ("steady", "catchup", "latency", "profile")
DEFAULT_OUTPUT_DIR = REPO / "bench" / "results"


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    for noisy in ("aiokafka", "httpx", "httpcore"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    # A consumer assigned to a topic created a moment ago may be told "not leader"
    # once while the broker's metadata settles; aiokafka retries and logs it as ERROR.
    logging.getLogger("aiokafka.consumer.fetcher").setLevel(logging.CRITICAL)

    if args.render is not None:
        results = msgspec.json.decode(args.render.read_bytes(), type=BenchResults)
        _write(results, args.output_dir, args.render.parent)
        _update_readme(results, args)
        return 0

    profile = PROFILES[args.profile]
    if args.steady_sizes:
        profile = msgspec.structs.replace(profile, steady_sizes=args.steady_sizes)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    run_dir = REPO / ".run" / "bench" / stamp
    args.output_dir.mkdir(parents=True, exist_ok=True)
    try:
        results = asyncio.run(_run(profile, args, run_dir))
    except asyncio.CancelledError:
        log.error("interrupted; every child process was stopped, nothing written")
        return 130
    _write(results, args.output_dir, run_dir)
    _update_readme(results, args)
    return 1 if results.errors else 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--profile", choices=sorted(PROFILES), default="short")
    parser.add_argument(
        "--only",
        action="append",
        choices=SCENARIOS,
        help="run only these scenarios (repeatable; default: all)",
    )
    parser.add_argument(
        "--steady-sizes",
        type=lambda text: [int(part) for part in text.split(",")],
        help="comma-separated running-operation counts (default: the profile's)",
    )
    parser.add_argument("--output-dir", type=Path, default=DEFAULT_OUTPUT_DIR)
    parser.add_argument("--bootstrap", default=_default_bootstrap())
    parser.add_argument(
        "--bridge-wrapper",
        type=shlex.split,
        help="command prefix for every bridge instead of the plain interpreter, e.g. "
        "'python /tmp/patched.py' to measure a candidate change; gets '-m bridge run'",
    )
    parser.add_argument(
        "--no-readme",
        action="store_true",
        help="leave README.md (it is only rewritten after a complete run anyway)",
    )
    parser.add_argument(
        "--render",
        type=Path,
        metavar="JSON",
        help="run nothing: rewrite the Markdown and the chart from a results JSON",
    )
    return parser


def _default_bootstrap() -> str:
    explicit = os.environ.get("KAFKA_BOOTSTRAP")
    return explicit or f"127.0.0.1:{os.environ.get('KAFKA_PORT', '9092')}"


async def _run(
    profile: Profile, args: argparse.Namespace, run_dir: Path
) -> BenchResults:
    _cancel_on_signals()
    began = time.monotonic()
    results = BenchResults(
        profile=profile.name,
        started_at=datetime.now(UTC).isoformat(timespec="seconds"),
        duration_seconds=0.0,
        machine=_machine(),
        bootstrap=args.bootstrap,
    )
    wanted = args.only or list(SCENARIOS)
    with Children(run_dir) as children:
        context = RunContext(
            children, args.bootstrap, run_dir, profile, args.bridge_wrapper
        )
        steps = _steps(context, results, args.output_dir)
        for name, step in steps:
            if name.split(":")[0] in wanted:
                await _attempt(name, step, results)
    results.duration_seconds = time.monotonic() - began
    return results


def _cancel_on_signals() -> None:
    """SIGTERM/SIGHUP cancel the run, so every child is still stopped by its pid."""
    task = asyncio.current_task()
    loop = asyncio.get_running_loop()
    if task is not None:
        for number in (signal.SIGTERM, signal.SIGHUP):
            loop.add_signal_handler(number, task.cancel)


def _steps(
    context: RunContext, results: BenchResults, output_dir: Path
) -> list[tuple[str, Callable[[], Awaitable[None]]]]:
    async def steady(size: int) -> None:
        results.steady.append(await run_steady(context, size))

    async def catchup() -> None:
        results.catchup = await run_catchup(context)

    async def latency() -> None:
        results.latency = await run_latency(context)

    async def profile() -> None:
        text_path = output_dir / "profile-catchup.txt"
        results.profiling = await run_profile(context, text_path)

    steps: list[tuple[str, Callable[[], Awaitable[None]]]] = [
        (f"steady:{size}", functools.partial(steady, size))
        for size in context.profile.steady_sizes
    ]
    steps += [("catchup", catchup), ("latency", latency), ("profile", profile)]
    return steps


async def _attempt(
    name: str, step: Callable[[], Awaitable[None]], results: BenchResults
) -> None:
    log.info("scenario %s: starting", name)
    began = time.monotonic()
    try:
        await step()
    except Exception as error:
        log.error("scenario %s failed: %s", name, error)
        traceback.print_exc()
        results.errors.append(f"{name}: {error!r}")
    log.info("scenario %s: done in %.0f s", name, time.monotonic() - began)


def _update_readme(results: BenchResults, args: argparse.Namespace) -> None:
    """A complete, error-free run into the default place refreshes README.md."""
    partial = args.only or args.steady_sizes or results.errors
    if args.no_readme or partial or args.output_dir != DEFAULT_OUTPUT_DIR:
        return
    rewrite_readme({"bench-results": render_readme_block(results)})
    log.info("rewrote the benchmark table in README.md")


def _machine() -> Machine:
    return Machine(
        cpus=os.cpu_count() or 0,
        memory_bytes=psutil.virtual_memory().total,
        python=platform.python_version(),
        platform=platform.platform(),
        load_average_at_start=[round(x, 2) for x in os.getloadavg()],
    )


def _write(results: BenchResults, output_dir: Path, run_dir: Path) -> None:
    output_dir.mkdir(parents=True, exist_ok=True)
    results.summary = headline(results)
    results.api_model = api_model(results.steady)
    encoded = msgspec.json.format(msgspec.json.encode(results), indent=2)
    (output_dir / "latest.json").write_bytes(encoded + b"\n")
    charts = draw_charts(results, output_dir)
    markdown = render_markdown(results, [path.name for path in charts])
    (output_dir / "latest.md").write_text(markdown, encoding="utf-8")
    log.info("wrote %s (logs in %s)", output_dir / "latest.md", run_dir)
