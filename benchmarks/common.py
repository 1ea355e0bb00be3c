"""Timing helpers shared by the benchmarks, and the row every suite returns.

The machine the table is made on is small (two cores) and often busy: a
suite times notifycore and its baseline *alternately*, round by round
(:func:`alternate`), and reports each side's median, so that a burst of
other work slows both sides rather than one.
"""

from __future__ import annotations

import gc
import json
import statistics
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

__all__ = [
    "LOWER_IS_BETTER_UNITS",
    "Measurement",
    "alternate",
    "best_rate",
    "percentile_ms",
    "rate_of",
    "timed_payload",
]

#: Units whose smaller values are better (latencies, costs): a row in one of them is read
#: as "lower is better" unless it says otherwise.
LOWER_IS_BETTER_UNITS = frozenset({"ms", "µs", "us", "s", "KB", "MB", "µs CPU", "ms CPU"})


@dataclass(frozen=True)
class Measurement:
    """One row of the results table: notifycore's figure beside the raw library's.

    ``rate`` and ``baseline_rate`` are the two figures in ``unit`` (a rate, or
    for a latency row milliseconds). The optional fields came later and keep
    every older row valid:

    - ``aim``: the ratio aimed at (notifycore / baseline), drawn on the chart;
    - ``limit``: what limits this row on the machine it ran on (listed under the table);
    - ``lower_is_better``: None infers it, from the unit (``ms``...) or a note that
      says "lower is better".
    """

    name: str
    rate: float
    baseline_name: str
    baseline_rate: float
    unit: str
    note: str = ""
    aim: float | None = None
    limit: str = ""
    lower_is_better: bool | None = None

    @property
    def ratio(self) -> float:
        """notifycore / baseline, as the table shows it."""
        return self.rate / self.baseline_rate if self.baseline_rate else 0.0

    @property
    def lower_better(self) -> bool:
        """True when a smaller figure is the better one (a latency, a cost)."""
        if self.lower_is_better is not None:
            return self.lower_is_better
        return self.unit in LOWER_IS_BETTER_UNITS or "lower is better" in self.note

    @property
    def advantage(self) -> float:
        """How many times better notifycore does than the baseline (1.0: the same; 0: unknown).

        The ratio for a rate, its inverse for a latency or a cost: above 1 is
        always notifycore ahead, whatever the row measures.
        """
        ratio = self.ratio
        if ratio <= 0:
            return 0.0
        return 1 / ratio if self.lower_better else ratio

    @property
    def aim_met(self) -> bool | None:
        """Whether the row reaches its aim (None: it has none)."""
        if self.aim is None:
            return None
        if self.ratio <= 0:
            return False
        return self.ratio <= self.aim if self.lower_better else self.ratio >= self.aim


def rate_of(work: Callable[[int], object], count: int) -> float:
    """Operations per second of one run of ``work(count)`` (after a garbage collection)."""
    gc.collect()
    started = time.perf_counter()
    work(count)
    return count / (time.perf_counter() - started)


def best_rate(work: Callable[[int], object], count: int, repeats: int = 3) -> float:
    """Operations per second of ``work(count)``, the best of ``repeats`` runs."""
    return max(rate_of(work, count) for _ in range(repeats))


def alternate(sides: Mapping[str, Callable[[], float]], rounds: int) -> dict[str, float]:
    """Each side's median figure over ``rounds`` rounds, the sides taking turns.

    Every round runs each side once; the order rotates from round to round,
    so that no side always runs first (on a warm cache) or last. A side is a
    callable returning one figure (a rate, a latency).
    """
    names = list(sides)
    samples: dict[str, list[float]] = {name: [] for name in names}
    for round_number in range(rounds):
        shift = round_number % len(names)
        for name in names[shift:] + names[:shift]:
            samples[name].append(sides[name]())
    return {name: statistics.median(values) for name, values in samples.items()}


def timed_payload(i: int) -> bytes:
    """A ~250-byte JSON message carrying its send time (``t``) for latency."""
    return json.dumps({"t": time.time(), "i": i, "pad": "x" * 200}).encode()


def percentile_ms(values: list[float], q: int) -> float:
    """The ``q``-th percentile of ``values`` (seconds), in milliseconds."""
    return statistics.quantiles(values, n=100)[q - 1] * 1000
