"""`archc compare --plot`: MACs against params on log axes, the Pareto frontier marked.

Plain SVG written here (no plotting library): one circle per row, labelled, with the rows no
other row beats on both counts joined by a line from the smallest to the largest.
"""

from __future__ import annotations

import html
import math
from collections import Counter

from archc.render.compare import Row

WIDTH, HEIGHT = 760, 520
LEFT, RIGHT, TOP, BOTTOM = 70, 30, 40, 50
FRONTIER, OTHERS = "#d7301f", "#4a6fa5"


def pareto_frontier(rows: list[Row]) -> list[Row]:
    """Rows that no other row matches or beats on both params and MACs (and beats on one)."""

    def beaten(row: Row) -> bool:
        return any(
            other.params <= row.params
            and other.macs <= row.macs
            and (other.params, other.macs) != (row.params, row.macs)
            for other in rows
        )

    return sorted((row for row in rows if not beaten(row)), key=lambda row: row.params)


class _LogAxis:
    """Maps a positive count to a pixel coordinate over whole decades around the data."""

    def __init__(self, values: list[int], start: float, end: float) -> None:
        self.low = math.floor(math.log10(min(values)))
        self.high = max(math.ceil(math.log10(max(values))), self.low + 1)
        self.start, self.end = start, end

    def __call__(self, value: int) -> float:
        share = (math.log10(value) - self.low) / (self.high - self.low)
        return round(self.start + share * (self.end - self.start), 1)

    def decades(self) -> list[int]:
        return [10**power for power in range(self.low, self.high + 1)]


def pareto_plot(rows: list[Row]) -> str:
    x = _LogAxis([row.params for row in rows], LEFT, WIDTH - RIGHT)
    y = _LogAxis([row.macs for row in rows], HEIGHT - BOTTOM, TOP)
    frontier = pareto_frontier(rows)
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" '
        f'font-family="Helvetica, sans-serif" font-size="11">',
        f'<rect width="{WIDTH}" height="{HEIGHT}" fill="white"/>',
        f'<text x="{LEFT}" y="22" font-size="14" font-weight="bold">MACs against params '
        f"(log axes; core tier, batch 1; FLOPs = 2 × MACs)</text>",
    ]
    for decade in x.decades():
        parts.append(_grid_line(x(decade), TOP, x(decade), HEIGHT - BOTTOM))
        parts.append(_text(x(decade), HEIGHT - BOTTOM + 16, _power(decade), "middle"))
    for decade in y.decades():
        parts.append(_grid_line(LEFT, y(decade), WIDTH - RIGHT, y(decade)))
        parts.append(_text(LEFT - 6, y(decade) + 4, _power(decade), "end"))
    parts.append(_text((LEFT + WIDTH - RIGHT) / 2, HEIGHT - 12, "params", "middle"))
    parts.append(_text(16, TOP - 8, "MACs", "start"))
    line = " ".join(f"{x(row.params)},{y(row.macs)}" for row in frontier)
    parts.append(
        f'<polyline class="frontier" points="{line}" fill="none" stroke="{FRONTIER}" '
        'stroke-width="1.5" stroke-dasharray="5,3"/>'
    )
    on_frontier = {id(row) for row in frontier}
    sizes = Counter(row.model for row in rows)
    placed = [  # labels keep clear of every point
        (x(row.params) - 4, y(row.macs) - 4, x(row.params) + 4, y(row.macs) + 4) for row in rows
    ]
    for row in sorted(rows, key=lambda row: id(row) not in on_frontier):  # frontier first
        colour = FRONTIER if id(row) in on_frontier else OTHERS
        kind = "point frontier" if id(row) in on_frontier else "point"
        label = row.model
        if sizes[row.model] > 1:  # the same model at several input sizes
            label += f" @{row.input.split('x', 2)[-1]}"
        cx, cy = x(row.params), y(row.macs)
        parts.append(
            f'<g class="{kind}" data-model="{html.escape(row.model)}" '
            f'data-input="{row.input}" data-params="{row.params}" data-macs="{row.macs}">'
            f"<title>{html.escape(label)}: {row.params:,} params, {row.macs:,} MACs</title>"
            f'<circle cx="{cx}" cy="{cy}" r="4" fill="{colour}"/>'
            f"{_label(cx, cy, label, placed)}</g>"
        )
    parts.append(
        _text(WIDTH - RIGHT, TOP - 8, "red: Pareto frontier (fewest MACs for the params)", "end")
    )
    parts.append("</svg>")
    return "\n".join(parts) + "\n"


def _label(cx: float, cy: float, text: str, placed: list[tuple[float, float, float, float]]) -> str:
    """The label beside its point where it overlaps no label placed before (right, left,
    above, below); none when all four would (the point's tooltip still names it)."""
    width, height = 6.2 * len(text), 12
    spots = [
        (cx + 6, cy - 5, "start"),
        (cx - 6, cy - 5, "end"),
        (cx, cy - 9, "middle"),
        (cx, cy + 16, "middle"),
    ]
    for x, y, anchor in spots:
        left = {"start": x, "end": x - width, "middle": x - width / 2}[anchor]
        box = (left, y - height + 2, left + width, y + 2)
        if not any(_overlap(box, other) for other in placed):
            placed.append(box)
            return _text(x, y, text, anchor)
    return ""


def _overlap(a: tuple[float, ...], b: tuple[float, ...]) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def _grid_line(x1: float, y1: float, x2: float, y2: float) -> str:
    return f'<line x1="{x1}" y1="{y1}" x2="{x2}" y2="{y2}" stroke="#dddddd"/>'


def _text(x: float, y: float, text: str, anchor: str) -> str:
    return f'<text x="{x}" y="{y}" text-anchor="{anchor}">{html.escape(text)}</text>'


def _power(value: int) -> str:
    return f"1e{round(math.log10(value))}"
