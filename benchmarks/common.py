"""Timing helpers shared by the benchmarks."""

from __future__ import annotations

import gc
import json
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Measurement:
    """One row of the results table: notifycore's rate beside the raw library's."""

    name: str
    rate: float
    baseline_name: str
    baseline_rate: float
    unit: str
    note: str = ""

    @property
    def ratio(self) -> float:
        return self.rate / self.baseline_rate if self.baseline_rate else 0.0


def best_rate(work: Callable[[int], object], count: int, repeats: int = 3) -> float:
    """Operations per second of ``work(count)``, the best of ``repeats`` runs."""
    best = 0.0
    for _ in range(repeats):
        gc.collect()
        started = time.perf_counter()
        work(count)
        elapsed = time.perf_counter() - started
        best = max(best, count / elapsed)
    return best


def timed_payload(i: int) -> bytes:
    """A ~250-byte JSON message carrying its send time (``t``) for latency."""
    return json.dumps({"t": time.time(), "i": i, "pad": "x" * 200}).encode()


def percentile_ms(values: list[float], q: int) -> float:
    """The ``q``-th percentile of ``values`` (seconds), in milliseconds."""
    return statistics.quantiles(values, n=100)[q - 1] * 1000
