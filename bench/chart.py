"""`bench/results/latest.png`: four panels where a picture says more than the table.

1. API requests per second against running operations (log-log): the bridge, the
   measured baseline, the baseline's N requests/s line and Toloka's 300/s limit.
2. Detection latency: the distribution per poll interval, with the interval marked.
3. Catch-up: events per second and per CPU-second of the bridge and its references.
4. Memory: the bridge's RSS against tracked operations, and the baseline poller's
   RSS against watched operations.
"""

from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
from matplotlib.axes import Axes
from matplotlib.patches import Patch

from bench.results import BenchResults
from bench.summary import (
    TOLOKA_LIMIT_PER_SECOND,
    baseline_bytes_per_operation,
    baseline_rate,
)

BRIDGE_COLOR = "#1f77b4"
BASELINE_COLOR = "#d62728"
REFERENCE_COLOR = "#7f7f7f"


def draw_charts(results: BenchResults, output_dir: Path) -> list[Path]:
    figure, axes = plt.subplots(2, 2, figsize=(14, 10))
    figure.suptitle(
        f"toloka-bridge benchmark ({results.profile} profile, {results.started_at})",
        fontsize=14,
    )
    _api(axes[0][0], results)
    _latency(axes[0][1], results)
    _catchup(axes[1][0], results)
    _memory(axes[1][1], results)
    figure.tight_layout(rect=(0, 0, 1, 0.96))
    path = output_dir / "latest.png"
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return [path]


def _api(axes: Axes, results: BenchResults) -> None:
    runs = [r for r in results.steady if r.running_measured > 0]
    axes.set_title("Toloka API requests per second vs running operations")
    if not runs:
        _empty(axes)
        return
    sizes = [r.running_measured for r in runs]
    axes.plot(
        sizes,
        [r.bridge.requests_per_second for r in runs],
        "o-",
        color=BRIDGE_COLOR,
        label=f"toloka-bridge, {runs[0].bridge.interval_seconds:g} s cycle (measured)",
    )
    measured = [r for r in runs if r.baseline]
    axes.plot(
        [r.baseline.operations for r in measured if r.baseline],
        [r.baseline.requests_per_second for r in measured if r.baseline],
        "s",
        color=BASELINE_COLOR,
        markersize=9,
        label="per-op polling, 1 s (measured)",
    )
    rate = baseline_rate(results.steady)
    span = [min(sizes), max(sizes)]
    axes.plot(
        span,
        [n * rate for n in span],
        "--",
        color=BASELINE_COLOR,
        label="per-op polling: N requests/s",
    )
    axes.axhline(
        TOLOKA_LIMIT_PER_SECOND,
        color="black",
        linestyle=":",
        label=f"Toloka limit {TOLOKA_LIMIT_PER_SECOND:.0f} req/s",
    )
    axes.set_xscale("log")
    axes.set_yscale("log")
    axes.set_xlabel("running operations")
    axes.set_ylabel("requests per second")
    axes.grid(True, which="both", alpha=0.3)
    axes.legend(fontsize=9)


def _latency(axes: Axes, results: BenchResults) -> None:
    axes.set_title(
        "Detection latency: transition -> visible to a read_committed consumer"
    )
    if not results.latency:
        _empty(axes)
        return
    colors = [BRIDGE_COLOR, "#2ca02c", "#9467bd", "#8c564b"]
    for run, color in zip(results.latency, colors, strict=False):
        ordered = sorted(run.samples)
        if not ordered:
            continue
        shares = [(index + 1) / len(ordered) for index in range(len(ordered))]
        axes.plot(
            ordered,
            shares,
            color=color,
            label=(
                f"interval {run.interval_seconds:g} s: p50 {run.latency.p50:.2f} s, "
                f"p99 {run.latency.p99:.2f} s (n={run.latency.count})"
            ),
        )
        axes.axvline(run.interval_seconds, color=color, linestyle=":", alpha=0.7)
    axes.set_xlabel("seconds (dotted: configured poll interval)")
    axes.set_ylabel("share of transitions (CDF)")
    axes.grid(True, alpha=0.3)
    axes.legend(fontsize=9, loc="lower right")


def _catchup(axes: Axes, results: BenchResults) -> None:
    catchup = results.catchup
    if catchup is None:
        axes.set_title("Catch-up")
        _empty(axes)
        return
    axes.set_title(
        f"Catch-up of {catchup.operations:,} finished operations "
        f"({catchup.seen_events:,} events)"
    )
    runs = [catchup.naive, catchup.bridge, catchup.ceiling]
    if catchup.ceiling_batch is not None:
        runs.append(catchup.ceiling_batch)
    names = [
        run.name.replace("ceiling-batch", "ceiling-batch\n(prototype)") for run in runs
    ]
    positions = list(range(len(runs)))
    width = 0.38
    wall = axes.bar(
        [p - width / 2 for p in positions],
        [run.events_per_second for run in runs],
        width,
        color=[_bar_color(run.name) for run in runs],
    )
    cpu = axes.bar(
        [p + width / 2 for p in positions],
        [run.events_per_cpu_second for run in runs],
        width,
        color=[_bar_color(run.name) for run in runs],
        alpha=0.45,
        hatch="//",
    )
    axes.bar_label(wall, fmt="{:,.0f}", fontsize=8)
    axes.bar_label(cpu, fmt="{:,.0f}", fontsize=8)
    axes.set_xticks(positions, names)
    axes.set_ylabel("events")
    axes.grid(True, axis="y", alpha=0.3)
    axes.legend(
        handles=[
            Patch(facecolor=REFERENCE_COLOR, label="events per second (wall clock)"),
            Patch(
                facecolor=REFERENCE_COLOR,
                alpha=0.45,
                hatch="//",
                label="events per CPU-second of the publisher",
            ),
        ],
        fontsize=9,
        loc="upper left",
    )


def _bar_color(name: str) -> str:
    if name == "bridge":
        return BRIDGE_COLOR
    if name == "naive":
        return BASELINE_COLOR
    return REFERENCE_COLOR


def _memory(axes: Axes, results: BenchResults) -> None:
    axes.set_title("Resident memory vs operations watched")
    runs = sorted(results.steady, key=lambda r: r.tracked)
    if not runs:
        _empty(axes)
        return
    tracked = [r.tracked for r in runs]
    axes.plot(
        tracked,
        [r.rss_bytes / 2**20 for r in runs],
        "o-",
        color=BRIDGE_COLOR,
        label="toloka-bridge RSS vs tracked operations (measured)",
    )
    baselines = sorted(
        (r.baseline for r in runs if r.baseline), key=lambda b: b.operations
    )
    if baselines:
        axes.plot(
            [b.operations for b in baselines],
            [b.rss_bytes / 2**20 for b in baselines],
            "s",
            color=BASELINE_COLOR,
            markersize=9,
            label="per-op poller RSS vs watched operations (measured)",
        )
    per_op = baseline_bytes_per_operation(results.steady)
    if baselines and per_op is not None:
        first = baselines[0]
        span = [first.operations, max(tracked)]
        axes.plot(
            span,
            [(first.rss_bytes + (n - first.operations) * per_op) / 2**20 for n in span],
            ":",
            color=BASELINE_COLOR,
            label=f"per-op poller extrapolated ({per_op / 1024:.1f} KiB per op)",
        )
    axes.set_xlabel("operations")
    axes.set_ylabel("RSS (MiB)")
    axes.grid(True, alpha=0.3)
    axes.legend(fontsize=9, loc="upper left")


def _empty(axes: Axes) -> None:
    axes.text(0.5, 0.5, "not measured in this run", ha="center", va="center")
    axes.set_axis_off()
