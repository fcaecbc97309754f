"""Timing shared by the benchmark scripts: interleaved runs, medians."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any


def measure(
    runners: dict[str, Callable[[int], Any]],
    steps: int,
    repeats: int,
    clock: Callable[[], float] = time.perf_counter,
) -> dict[str, float]:
    """Median seconds per step of each runner (``runner(n)`` runs ``n`` steps and syncs).

    Every runner is warmed up (compiled) first; the repeats then interleave the runners, in
    alternating order, so that machine noise hits every contender alike. ``clock``: wall time by
    default; ``time.process_time`` counts this process's CPU seconds (all its threads), which
    other jobs on a shared machine disturb less.
    """
    for run in runners.values():
        run(steps)
    times: dict[str, list[float]] = {name: [] for name in runners}
    for r in range(repeats):
        order = list(runners) if r % 2 == 0 else list(runners)[::-1]
        for name in order:
            start = clock()
            runners[name](steps)
            times[name].append((clock() - start) / steps)
    return {name: statistics.median(ts) for name, ts in times.items()}
