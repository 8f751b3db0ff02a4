"""The two figures every table shows: median and p90."""

from __future__ import annotations

import statistics
from dataclasses import dataclass


@dataclass(frozen=True)
class Summary:
    median: float
    p90: float
    n: int


def summarize(samples: list[float]) -> Summary:
    ordered = sorted(samples)
    p90 = ordered[min(len(ordered) - 1, round(0.9 * (len(ordered) - 1)))]
    return Summary(statistics.median(ordered), p90, len(ordered))


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f}"
