"""The results as a Markdown table, an SVG chart and the docs/benchmarks.md page.

The chart is plain SVG written here from the run's rows (no plotting library):
one bar per row showing how many times better notifycore does than its
baseline, on a log scale centred on 1x, with the row's aim marked.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from xml.sax.saxutils import escape, quoteattr

from benchmarks.common import Measurement

__all__ = ["Section", "chart_svg", "document", "table"]

#: The chart's scale: advantages from 1/20x to 20x (beyond, the bar is cut and says so).
_LOW, _HIGH = 1 / 20, 20.0
_TICKS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 4.0, 10.0, 20.0)
_WIDTH = 980
_LABEL_X = 12
_PLOT_LEFT, _PLOT_RIGHT = 560, 900
_ROW = 36
_GROUP = 28
_TOP = 74
_TIMES = "\N{MULTIPLICATION SIGN}"
_AHEAD, _PAR, _BEHIND = "#2e7d32", "#9e9e9e", "#c62828"
#: Without an aim, a row this close to its baseline is on a par (grey), not behind.
_PAR_FROM = 0.9


@dataclass(frozen=True)
class Section:
    """The rows of one suite, under its name, with what it measures (its docstring)."""

    name: str
    description: str
    rows: Sequence[Measurement]


def _figure(value: float, row: Measurement) -> str:
    if value >= 1000 or not row.lower_better:
        return f"{value:,.0f}" if value >= 10 else f"{value:,.2f}"
    return f"{value:,.1f}" if value >= 10 else f"{value:,.2f}"


def _aim(row: Measurement) -> str:
    if row.aim is None:
        return "\N{EN DASH}"
    sign = "≤" if row.lower_better else "≥"
    return f"{sign} {row.aim:.0%}"


def table(rows: Sequence[Measurement]) -> str:
    """The Markdown table: both figures, the ratio notifycore / baseline, and the aim."""
    lines = [
        "| benchmark | notifycore | baseline | baseline result | notifycore / baseline | aim |",
        "|---|---:|---|---:|---:|---:|",
    ]
    for r in rows:
        notes = [n for n in (r.note, "lower is better" if r.lower_better else "") if n]
        # "lower is better" once, even when the note says it too.
        seen: list[str] = []
        for n in notes:
            if n not in seen and not (n == "lower is better" and any(n in s for s in seen)):
                seen.append(n)
        note = f" ({'; '.join(seen)})" if seen else ""
        lines.append(
            f"| {r.name} | {_figure(r.rate, r)} {r.unit} | {r.baseline_name} | "
            f"{_figure(r.baseline_rate, r)} {r.unit} | {r.ratio:.0%}{note} | {_aim(r)} |"
        )
    return "\n".join(lines)


def _x(advantage: float) -> float:
    """The chart's x for an advantage (log scale, 1x in the middle of the plot)."""
    clamped = min(max(advantage, _LOW), _HIGH)
    span = math.log(_HIGH) - math.log(_LOW)
    return _PLOT_LEFT + (math.log(clamped) - math.log(_LOW)) / span * (_PLOT_RIGHT - _PLOT_LEFT)


def _tick_label(value: float) -> str:
    return f"{value:g}{_TIMES}"


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def chart_svg(
    sections: Sequence[Section], title: str = "notifycore beside the raw libraries"
) -> str:
    """An SVG chart of every row: a bar from 1x to notifycore's advantage over its baseline.

    Right of 1x notifycore is ahead, left it is behind; for a latency or a cost
    the advantage is the inverse of the ratio, so right is always better. A
    black tick marks the row's aim; a bar is green when the row meets its aim
    (or, without one, when notifycore is ahead), grey for a row without an aim
    within 10% of its baseline, red otherwise.
    """
    count = sum(len(s.rows) for s in sections)
    height = _TOP + len(sections) * _GROUP + count * _ROW + 40
    one = _x(1.0)
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{_WIDTH}" height="{height}" '
        f'viewBox="0 0 {_WIDTH} {height}" font-family="Helvetica, Arial, sans-serif" '
        'font-size="12" role="img">',
        f"<title>{escape(title)}</title>",
        f'<rect width="{_WIDTH}" height="{height}" fill="#ffffff"/>',
        f'<text x="{_LABEL_X}" y="22" font-size="15" font-weight="bold">{escape(title)}</text>',
        f'<text x="{_LABEL_X}" y="40" fill="#555555">How many times better notifycore does than '
        "the baseline in the same run (throughput ratio; for latencies and costs its "
        f"inverse). Right of 1{_TIMES} is ahead.</text>",
        f'<rect x="{_LABEL_X}" y="50" width="12" height="10" fill="{_AHEAD}"/>'
        f'<text x="{_LABEL_X + 16}" y="59">meets its aim (or ahead, without one)</text>'
        f'<rect x="{_LABEL_X + 250}" y="50" width="12" height="10" fill="{_BEHIND}"/>'
        f'<text x="{_LABEL_X + 266}" y="59">below its aim (or behind by more than 10%)</text>'
        f'<rect x="{_LABEL_X + 540}" y="50" width="12" height="10" fill="{_PAR}"/>'
        f'<text x="{_LABEL_X + 556}" y="59">within 10%, no aim</text>'
        f'<line x1="{_LABEL_X + 700}" y1="49" x2="{_LABEL_X + 700}" y2="61" stroke="#000000" '
        f'stroke-width="2"/><text x="{_LABEL_X + 706}" y="59">aim</text>',
    ]
    bottom = height - 30
    for tick in _TICKS:
        x = _x(tick)
        stroke = "#888888" if tick == 1.0 else "#e0e0e0"
        out.append(
            f'<line x1="{x:.1f}" y1="{_TOP - 6}" x2="{x:.1f}" y2="{bottom}" stroke="{stroke}"/>'
        )
        out.append(
            f'<text x="{x:.1f}" y="{bottom + 14}" text-anchor="middle" fill="#555555">'
            f"{escape(_tick_label(tick))}</text>"
        )
    y = _TOP
    for section in sections:
        out.append(
            f'<text x="{_LABEL_X}" y="{y + 18}" font-weight="bold" font-size="13">'
            f"{escape(_cut(section.name, 80))}</text>"
        )
        y += _GROUP
        for row in section.rows:
            advantage = row.advantage
            met = row.aim_met
            if met is None:
                colour = _AHEAD if advantage >= 1.0 else _PAR if advantage >= _PAR_FROM else _BEHIND
            else:
                colour = _AHEAD if met else _BEHIND
            shown = advantage if advantage > 0 else 1.0
            end = _x(shown)
            left, width = min(one, end), max(abs(end - one), 1.5)
            detail = f"vs {row.baseline_name}"
            tip = (
                f"{row.name} vs {row.baseline_name}: {_figure(row.rate, row)} / "
                f"{_figure(row.baseline_rate, row)} {row.unit} = {row.ratio:.0%}"
                + (f", aim {_aim(row)}" if row.aim is not None else "")
            )
            out.append(f'<g class="row"><title>{escape(tip)}</title>')
            out.append(f'<text x="{_LABEL_X + 8}" y="{y + 14}">{escape(_cut(row.name, 84))}</text>')
            out.append(
                f'<text x="{_LABEL_X + 8}" y="{y + 28}" font-size="10.5" fill="#666666">'
                f"{escape(_cut(detail, 96))}</text>"
            )
            out.append(
                f'<rect class="bar" x="{left:.1f}" y="{y + 8}" width="{width:.1f}" height="16" '
                f"fill={quoteattr(colour)} data-advantage={quoteattr(f'{advantage:.4g}')}/>"
            )
            cut = advantage > _HIGH or 0 < advantage < _LOW
            label = (f"0{_TIMES}" if advantage <= 0 else f"{advantage:.2f}{_TIMES}") + (
                " (cut)" if cut else ""
            )
            if end >= one:
                out.append(
                    f'<text x="{min(end + 4, _PLOT_RIGHT + 4):.1f}" y="{y + 20}">'
                    f"{escape(label)}</text>"
                )
            else:
                out.append(
                    f'<text x="{one + 4:.1f}" y="{y + 20}" fill="{colour}">{escape(label)}</text>'
                )
            if row.aim is not None and row.aim > 0:
                aim_at = _x(1 / row.aim if row.lower_better else row.aim)
                out.append(
                    f'<line class="aim" x1="{aim_at:.1f}" y1="{y + 4}" x2="{aim_at:.1f}" '
                    f'y2="{y + 28}" stroke="#000000" stroke-width="2"/>'
                )
            out.append("</g>")
            y += _ROW
    out.append("</svg>")
    return "\n".join(out) + "\n"


def _limits(sections: Sequence[Section]) -> str:
    """One line per limit: the rows it limits (rows that share one are listed together)."""
    lines: list[str] = []
    for section in sections:
        said: dict[str, list[str]] = {}
        for row in section.rows:
            if row.limit:
                said.setdefault(row.limit, []).append(f"{row.name} (vs {row.baseline_name})")
        for limit, names in said.items():
            lines.append(f"- {'; '.join(names)}: {limit}.")
    return "\n".join(lines)


def document(
    sections: Sequence[Section], *, stamp: str, machine: str, chart: str = "benchmarks.svg"
) -> str:
    """The docs/benchmarks.md page: how it was made, the chart, the table, the limits, the rows."""
    rows = [row for section in sections for row in section.rows]
    limits = _limits(sections)
    parts = [
        "# Benchmarks\n\n"
        "Generated by `python -m benchmarks --write` (see the README); do not edit by hand.\n"
        "Each row times notifycore and the raw library doing the same work in the same run,\n"
        "the two taking turns round by round on a shared machine; the figures are the medians.\n"
        "These are measurements, not tests: nothing fails when a number drops.\n\n"
        f"Run: {stamp} on {machine}.\n\n"
        f"![notifycore / baseline per row: bars right of 1x are ahead]({chart})\n\n"
        f"{table(rows)}\n",
    ]
    if limits:
        parts.append(f"## What limits each row on this machine\n\n{limits}\n")
    parts.append(
        "## What each row measures\n\n"
        + "\n".join(f"- **{s.name}**: {s.description.strip()}" for s in sections)
        + "\n"
    )
    return "\n".join(parts)
