"""Medians and spreads of repeated measurements."""

from __future__ import annotations

import statistics
from typing import Any


def summary(values: list[float]) -> dict[str, Any]:
    """Median and spread of repeated figures."""
    ordered = sorted(values)
    result: dict[str, Any] = {
        "median": statistics.median(ordered),
        "min": ordered[0],
        "max": ordered[-1],
        "values": ordered,
    }
    if len(ordered) >= 4:
        q = statistics.quantiles(ordered, n=4)
        result["iqr"] = [q[0], q[2]]
    return result


def percentile(values: list[float], p: float) -> float:
    """Nearest-rank percentile (p in 0..100)."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), int(-(-p * len(ordered) // 100))))
    return ordered[rank - 1]


def fmt_summary(s: dict[str, Any], digits: int = 1) -> tuple[str, str]:
    return f"{s['median']:.{digits}f}", f"{s['min']:.{digits}f}..{s['max']:.{digits}f}"
