"""`bench/results/latest.md`: the headline table, then the details of every scenario."""

from bench.profiles import PROFILES
from bench.results import BenchResults, ProfileSummary
from bench.sections import (
    catchup_details,
    find_time,
    latency_details,
    markdown_table,
    profile_details,
    steady_details,
)
from bench.summary import api_model

COMMANDS = {
    "short": "make bench  # dev/with-kafka.sh .venv/bin/python -m bench",
    "long": "make bench-long  # ... -m bench --profile long",
}


def render_markdown(results: BenchResults, charts: list[str]) -> str:
    rows = results.summary
    parts = [
        _title(results),
        markdown_table(
            ["Metric", "toloka-bridge", "Reference(s), same run", "Ratio"],
            [[r.metric, r.bridge, r.reference, r.ratio] for r in rows],
        ),
        *[f"![{name}]({name})" for name in charts],
        _largest_cost(results),
        steady_details(results.steady),
        catchup_details(results.catchup),
        latency_details(results),
        profile_details(results.profiling),
        _method(results),
    ]
    if results.errors:
        parts.append("## Errors\n\n" + "\n".join(f"- `{e}`" for e in results.errors))
    return "\n\n".join(part for part in parts if part) + "\n"


def _title(results: BenchResults) -> str:
    machine = results.machine
    profile = PROFILES[results.profile]
    short_note = ""
    if results.profile == "short":
        short_note = (
            "\n\n**Short profile** (`make bench`): smaller sizes and shorter windows "
            "than the release check (`make bench-long`): steady sizes "
            f"{', '.join(f'{n:,}' for n in profile.steady_sizes)}; catch-up "
            f"{profile.catchup_history:,} finished operations; latency window "
            f"{profile.latency_window_seconds:g} s; API windows "
            f"{profile.api_window_seconds:g} s."
        )
    return (
        f"# toloka-bridge benchmark ({results.profile} profile)\n\n"
        f"Run {results.started_at}, {results.duration_seconds / 60:.1f} min, on "
        f"{machine.cpus} CPUs / {machine.memory_bytes / 2**30:.0f} GiB, Python "
        f"{machine.python}, load average at start {machine.load_average_at_start}. "
        f"Real Apache Kafka broker at `{results.bootstrap}` (single node), the "
        "project's simulator as Toloka; the simulator, every bridge and every "
        "reference publisher or poller ran as its own process.\n\n"
        f"Command: `{COMMANDS[results.profile]}`" + short_note
    )


def _largest_cost(results: BenchResults) -> str:
    lines = ["## Largest remaining cost", ""]
    catchup, profiling = results.catchup, results.profiling
    if catchup is not None:
        share = catchup.bridge.events_per_second / catchup.ceiling.events_per_second
        lines.append(
            f"- Catch-up runs at {share:.0%} of the plain-producer ceiling. "
            + _profile_sentence(profiling)
        )
    model = api_model(results.steady)
    largest = max(results.steady, key=lambda r: r.running_measured, default=None)
    if model is not None and largest is not None:
        per_op_ms = largest.bridge.mean_cycle_seconds / max(largest.running_measured, 1)
        lines.append(
            f"- Steady state: a cycle costs {per_op_ms * 1e6:.0f} us of wall time per "
            f"running operation ({largest.bridge.mean_cycle_seconds:.2f} s at "
            f"{largest.running_measured:,} running, CPU share "
            f"{largest.bridge.cpu_share:.0%}), so beyond about "
            f"{_round2(largest.bridge.interval_seconds / per_op_ms):,.0f} running "
            "operations "
            "the cycle outlasts the interval: the bridge's own CPU, not Toloka's rate "
            "limit, is the first bound."
        )
    return "\n".join(lines) if len(lines) > 2 else ""


def _round2(value: float) -> float:
    """Two significant digits: 66,557 -> 67,000."""
    return float(f"{value:.2g}")


def _profile_sentence(profiling: ProfileSummary | None) -> str:
    if profiling is None:
        return ""
    packages = dict(profiling.self_time_by_package)
    busy = sum(t for name, t in packages.items() if not name.startswith("idle"))
    aiokafka = packages.get("aiokafka", 0.0)
    inclusive = dict(profiling.inclusive_time)
    sends = find_time(inclusive, "send aiokafka/producer/producer.py")
    murmur = find_time(inclusive, "murmur2 aiokafka/partitioner.py")
    state = find_time(inclusive, "_send_state bridge/publisher.py")
    return (
        "In the profiled catch-up, aiokafka's own Python code is "
        f"{aiokafka / busy:.0%} of the busy time; one `producer.send()` per record "
        f"is {sends / busy:.0%} "
        f"(its pure-Python murmur2 partitioner alone {murmur / busy:.0%}), and "
        f"sending state records and tombstones is {state / busy:.0%}."
    )


def _method(results: BenchResults) -> str:
    return (
        "## Method and caveats\n\n"
        "- Everything shares one machine: broker, simulator, bridges, the harness's "
        "consumers. With few CPUs, wall-clock rates move by 10-20% between runs; the "
        "per-CPU-second figures are steadier.\n"
        "- The simulator answers in microseconds; Toloka's real latency would lengthen "
        "each cycle of the bridge by (requests per cycle x round trip) and each "
        "baseline request equally, not change the request counts.\n"
        "- Requests per second of the baseline for sizes it did not run at are "
        "computed from the measured per-operation rate (labelled so in the table).\n"
        "- Raw numbers: `bench/results/latest.json`; child logs of the run under "
        "`.run/bench/`."
    )
