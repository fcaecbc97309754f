"""Timing shared by the benchmark scripts: interleaved runs, medians."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any


def measure(runners: dict[str, Callable[[int], Any]], steps: int, repeats: int) -> dict[str, float]:
    """Median seconds per step of each runner (``runner(n)`` runs ``n`` steps and syncs).

    Every runner is warmed up (compiled) first; the repeats then interleave the runners, in
    alternating order, so that machine noise hits every contender alike.
    """
    for run in runners.values():
        run(steps)
    times: dict[str, list[float]] = {name: [] for name in runners}
    for r in range(repeats):
        order = list(runners) if r % 2 == 0 else list(runners)[::-1]
        for name in order:
            start = time.perf_counter()
            runners[name](steps)
            times[name].append((time.perf_counter() - start) / steps)
    return {name: statistics.median(ts) for name, ts in times.items()}
