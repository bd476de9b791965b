"""Small statistics over samples of seconds."""

import math
from collections.abc import Sequence

from bench.results import Distribution


def percentile(sorted_values: Sequence[float], share: float) -> float:
    """The nearest-rank percentile (share in 0-1) of an already sorted sample."""
    if not sorted_values:
        return math.nan
    rank = max(math.ceil(share * len(sorted_values)), 1)
    return sorted_values[rank - 1]


def distribution(values: Sequence[float]) -> Distribution:
    ordered = sorted(values)
    return Distribution(
        count=len(ordered),
        p50=percentile(ordered, 0.50),
        p95=percentile(ordered, 0.95),
        p99=percentile(ordered, 0.99),
        max=ordered[-1] if ordered else math.nan,
        mean=sum(ordered) / len(ordered) if ordered else math.nan,
    )
