"""Run chaos scenarios and write their results table.

    python -m tests.chaos.runner [--scale ci|long] [--only NAME ...] [--output FILE]

Every scenario runs even when an earlier one failed; the table (Markdown) and the
details of every check go to `--output` (default `.run/chaos/results-<scale>.md`).
The exit code is 0 only when every scenario passed. `dev/chaos.py` calls `run_suite`
and copies the table into the README.
"""

import argparse
import asyncio
import sys
import time
import traceback
from collections.abc import Awaitable, Callable
from pathlib import Path

from tests.bridge_harness import REPO
from tests.chaos import (
    bad_config,
    broker_faults,
    crashes,
    restart_gap,
    secrets,
    secure_kafka,
    toloka_faults,
)
from tests.chaos.context import SCALES, ChaosContext, Scale
from tests.chaos.results import ScenarioResult, render_details, render_table
from tests.conftest import broker_problem, configured_bootstrap

Scenario = Callable[[ChaosContext], Awaitable[list[ScenarioResult]]]


def _single(run: Callable[[ChaosContext], Awaitable[ScenarioResult]]) -> Scenario:
    async def as_list(context: ChaosContext) -> list[ScenarioResult]:
        return [await run(context)]

    return as_list


SCENARIOS: dict[str, Scenario] = {
    "crashes": _single(crashes.run),
    "broker_faults": broker_faults.run,
    "toloka_faults": toloka_faults.run_all,
    "restart_gap": _single(restart_gap.run),
    "bad_config": _single(bad_config.run),
    "secrets": _single(secrets.run),
    "secure_kafka": _single(secure_kafka.run),
}


async def run_suite(
    scale: Scale, bootstrap: str, workdir: Path, only: list[str] | None = None
) -> list[ScenarioResult]:
    """Run the chosen scenarios in order; a crash of one becomes a failed row."""
    context = ChaosContext(bootstrap, workdir, scale)
    results: list[ScenarioResult] = []
    try:
        for name, scenario in SCENARIOS.items():
            if only and name not in only:
                continue
            print(f"chaos: running {name} ({scale.name})", file=sys.stderr, flush=True)
            results.extend(await _guarded(name, scenario, context))
    finally:
        context.close()
    return results


async def _guarded(
    name: str, scenario: Scenario, context: ChaosContext
) -> list[ScenarioResult]:
    started = time.monotonic()
    try:
        return await scenario(context)
    except Exception as error:
        failed = ScenarioResult(scenario=name, seconds=time.monotonic() - started)
        failed.check("scenario ran to the end", False, repr(error))
        failed.notes.append(traceback.format_exc()[-3000:])
        return [failed]


def write_results(results: list[ScenarioResult], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    text = render_table(results) + "\n## Details\n\n" + render_details(results)
    path.write_text(text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.chaos.runner")
    parser.add_argument("--scale", choices=sorted(SCALES), default="ci")
    parser.add_argument("--only", nargs="*", choices=sorted(SCENARIOS))
    parser.add_argument("--output", type=Path)
    args = parser.parse_args(argv)

    bootstrap = configured_bootstrap()
    problem = broker_problem(bootstrap)
    if problem is not None:
        print(f"chaos: no broker at {bootstrap}: {problem}", file=sys.stderr)
        return 2

    scale = SCALES[args.scale]
    workdir = REPO / ".run" / "chaos" / f"{scale.name}-{time.strftime('%Y%m%d-%H%M%S')}"
    results = asyncio.run(run_suite(scale, bootstrap, workdir, args.only))
    output = args.output or REPO / ".run" / "chaos" / f"results-{scale.name}.md"
    write_results(results, output)
    print(render_table(results))
    print(f"chaos: details in {output}", file=sys.stderr)
    return 0 if all(result.passed for result in results) else 1


if __name__ == "__main__":
    sys.exit(main())
