"""Alternating rounds for noisy rows: notifycore and its baseline take turns, medians reported.

On a shared two-core machine one side may be unlucky for a whole run (another
process wakes up); taking turns round by round, in alternating order, and
reporting each side's median spreads that luck evenly. A round returns its
rate and, for latency rows, the latencies it saw (seconds); a row reports the
median rate, and the median over rounds of each round's percentile.
"""

from __future__ import annotations

import gc
import statistics
from collections.abc import Callable
from dataclasses import dataclass, field

from benchmarks.common import percentile_ms

__all__ = ["Round", "Side", "alternate"]

#: What one round of one side returns: its rate, and latencies in seconds (or none).
Round = tuple[float, list[float]]


@dataclass
class Side:
    """One side's results over the rounds."""

    rates: list[float] = field(default_factory=list)
    latencies: list[list[float]] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return statistics.median(self.rates)

    def percentile(self, q: int) -> float:
        """The median over rounds of each round's ``q``-th latency percentile, in ms."""
        return statistics.median(percentile_ms(lat, q) for lat in self.latencies if len(lat) > 1)

    def spread(self) -> str:
        """The rates' range, for a row's note."""
        return f"{min(self.rates):,.0f}-{max(self.rates):,.0f}"


def alternate(
    ours: Callable[[], Round], raw: Callable[[], Round], rounds: int
) -> tuple[Side, Side]:
    """Run ``ours`` and ``raw`` ``rounds`` times each, in turn, the order swapped every round."""
    sides = (Side(), Side())
    for number in range(rounds):
        order = [(sides[0], ours), (sides[1], raw)]
        if number % 2:
            order.reverse()
        for side, work in order:
            gc.collect()
            rate, latencies = work()
            side.rates.append(rate)
            side.latencies.append(latencies)
    return sides
