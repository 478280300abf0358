"""`archc compare --plot`: MACs against params on log axes, or accuracy against MACs, with
the Pareto frontier marked.

Plain SVG written here (no plotting library): one circle per row, each labelled beside it (a
leader line where the label had to move away), the rows no other row beats joined by a line.
PNG and PDF are the same SVG rendered by CairoSVG.
"""

from __future__ import annotations

import csv
import html
import math
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from archc.errors import ArchcError, Location
from archc.render.compare import Row

WIDTH, HEIGHT = 900, 600
LEFT, RIGHT, TOP, BOTTOM = 70, 30, 50, 50
FRONTIER, OTHERS = "#d7301f", "#4a6fa5"
CHARACTER, LINE = 6.2, 12
"""A label's width per character and its height, in pixels at 11 px Helvetica."""
FORMATS = ("svg", "png", "pdf")

Box = tuple[float, float, float, float]


@dataclass(frozen=True)
class Axes:
    """What is plotted against what: each row's x and y, and the frontier's sense."""

    x_name: str
    y_name: str
    x: Callable[[Row], float]
    y: Callable[[Row], float]
    y_log: bool
    better_y: int
    """-1: fewer is better (MACs); +1: more is better (accuracy)."""


def pareto_frontier(rows: list[Row], axes: Axes | None = None) -> list[Row]:
    """Rows that no other row matches or beats on both axes (and beats on one): fewest params
    and MACs, or fewest MACs and most accuracy."""
    axes = axes or _COUNTS
    key = {id(row): (axes.x(row), -axes.better_y * axes.y(row)) for row in rows}

    def beaten(row: Row) -> bool:
        mine = key[id(row)]
        return any(
            other[0] <= mine[0] and other[1] <= mine[1] and other != mine for other in key.values()
        )

    return sorted((row for row in rows if not beaten(row)), key=axes.x)


_COUNTS = Axes("params", "MACs", lambda row: row.params, lambda row: row.macs, True, -1)


def read_accuracy(path: Path) -> dict[str, float]:
    """`model,accuracy` rows from a CSV with that header (accuracy in %), by model name."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise ArchcError(f"cannot read {path}: {error}") from None
    reader = csv.reader(text.splitlines())
    header = next(reader, [])
    if [cell.strip() for cell in header[:2]] != ["model", "accuracy"]:
        raise ArchcError(
            f"expected a header 'model,accuracy', got {','.join(header)!r}",
            Location(str(path), 1, 1),
        )
    accuracy: dict[str, float] = {}
    for line, cells in enumerate(reader, start=2):
        if not cells:
            continue
        value = cells[1].strip() if len(cells) > 1 else ""
        try:
            number = float(value)
        except ValueError:
            number = math.nan
        if not 0 <= number <= 100:
            column = len(cells[0]) + 2
            raise ArchcError(
                f"expected an accuracy in % from 0 to 100, got {value!r}",
                Location(str(path), line, column),
            )
        accuracy[cells[0].strip()] = number
    return accuracy


def pareto_plot(rows: list[Row], accuracy: dict[str, float] | None = None) -> str:
    """The plot as SVG: MACs against params, or with `accuracy` (by model) accuracy against
    MACs for the rows it has."""
    if accuracy is None:
        axes = _COUNTS
        title = "MACs against params (log axes; core tier, batch 1; FLOPs = 2 × MACs)"
        note = "red: Pareto frontier (fewest MACs for the params)"
    else:
        rows = [row for row in rows if row.model in accuracy]
        if not rows:
            raise ArchcError("no model compared has a row in the accuracy file")
        axes = Axes(
            "MACs", "accuracy %", lambda row: row.macs, lambda row: accuracy[row.model], False, 1
        )
        title = "Accuracy against MACs (log axis; core tier, batch 1)"
        note = "red: Pareto frontier (most accurate for the MACs)"
    x = _LogAxis([axes.x(row) for row in rows], LEFT, WIDTH - RIGHT)
    y_values = [axes.y(row) for row in rows]
    y = (_LogAxis if axes.y_log else _LinearAxis)(y_values, HEIGHT - BOTTOM, TOP)
    frontier = pareto_frontier(rows, axes)
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" '
        f'font-family="Helvetica, sans-serif" font-size="11">',
        f'<rect width="{WIDTH}" height="{HEIGHT}" fill="white"/>',
        f'<text x="{LEFT}" y="22" font-size="14" font-weight="bold">{html.escape(title)}</text>',
    ]
    for tick in x.ticks():
        parts.append(_grid_line(x(tick), TOP, x(tick), HEIGHT - BOTTOM))
        parts.append(_text(x(tick), HEIGHT - BOTTOM + 16, x.label(tick), "middle"))
    for tick in y.ticks():
        parts.append(_grid_line(LEFT, y(tick), WIDTH - RIGHT, y(tick)))
        parts.append(_text(LEFT - 6, y(tick) + 4, y.label(tick), "end"))
    parts.append(_text((LEFT + WIDTH - RIGHT) / 2, HEIGHT - 12, axes.x_name, "middle"))
    parts.append(_text(LEFT - 6, TOP - 10, axes.y_name, "end"))
    parts.append(_text(WIDTH - RIGHT, TOP - 10, note, "end"))
    parts.append(_text(LEFT, HEIGHT - 12, _sizes_note(rows), "start"))
    line = " ".join(f"{x(axes.x(row))},{y(axes.y(row))}" for row in frontier)
    parts.append(
        f'<polyline class="frontier" points="{line}" fill="none" stroke="{FRONTIER}" '
        'stroke-width="1.5" stroke-dasharray="5,3"/>'
    )
    on_frontier = {id(row) for row in frontier}
    points = {id(row): (x(axes.x(row)), y(axes.y(row))) for row in rows}
    taken = [(cx - 4, cy - 4, cx + 4, cy + 4) for cx, cy in points.values()]  # keep clear
    labels = _labels(rows)
    for row in sorted(rows, key=lambda row: id(row) not in on_frontier):  # frontier first
        colour = FRONTIER if id(row) in on_frontier else OTHERS
        kind = "point frontier" if id(row) in on_frontier else "point"
        label = labels[id(row)]
        cx, cy = points[id(row)]
        figures = f"{row.params:,} params, {row.macs:,} MACs"
        if accuracy is not None:
            figures += f", {accuracy[row.model]:g}% accuracy"
        parts.append(
            f'<g class="{kind}" data-model="{html.escape(row.model)}" '
            f'data-input="{row.input}" data-params="{row.params}" data-macs="{row.macs}">'
            f"<title>{html.escape(label)}: {figures}</title>"
            f'<circle cx="{cx}" cy="{cy}" r="4" fill="{colour}"/>'
            f"{_label(cx, cy, label, taken)}</g>"
        )
    parts.append("</svg>")
    return "\n".join(parts) + "\n"


def render_plot(svg: str, path: Path) -> bytes:
    """The plot in the format `path`'s suffix names: SVG as it is, PNG and PDF by CairoSVG."""
    fmt = path.suffix.lstrip(".").lower()
    if fmt not in FORMATS:
        raise ArchcError(f"cannot plot to {path}: expected a .svg, .png or .pdf file, got '.{fmt}'")
    if fmt == "svg":
        return svg.encode()
    try:
        import cairosvg
    except (ImportError, OSError) as error:  # OSError: the cairo library itself is missing
        raise ArchcError(
            f"plotting {path} needs CairoSVG and the cairo library (pip install cairosvg; "
            f"Debian: apt-get install libcairo2); a .svg needs nothing ({error})"
        ) from None
    convert = cairosvg.svg2png if fmt == "png" else cairosvg.svg2pdf
    return convert(bytestring=svg.encode(), scale=2 if fmt == "png" else 1)


def _labels(rows: list[Row]) -> dict[int, str]:
    """Each point's label: the model, and its input size where the rows are not all at one
    size and this one is not at the most common (`unet @572`)."""
    sizes = Counter(_size(row) for row in rows)
    usual = sizes.most_common(1)[0][0]
    return {
        id(row): row.model + (f" @{_size(row)}" if len(sizes) > 1 and _size(row) != usual else "")
        for row in rows
    }


def _sizes_note(rows: list[Row]) -> str:
    """What the size marks mean, when there are any."""
    sizes = Counter(_size(row) for row in rows)
    if len(sizes) == 1:
        return ""
    usual = sizes.most_common(1)[0][0]
    shown = usual.replace("x", "×") if "x" in usual else f"{usual}×{usual}"
    return f"@N: input N×N (@HxW: H×W); unmarked: {shown}"


def _size(row: Row) -> str:
    """The row's image size: `224` when square, else `320x256`."""
    height, width = row.input.split("x")[-2:]
    return height if height == width else f"{height}x{width}"


class _LogAxis:
    """Maps a positive count to a pixel coordinate over whole decades around the data."""

    def __init__(self, values: list[float], start: float, end: float) -> None:
        self.low = math.floor(math.log10(min(values)))
        self.high = max(math.ceil(math.log10(max(values))), self.low + 1)
        self.start, self.end = start, end

    def __call__(self, value: float) -> float:
        share = (math.log10(value) - self.low) / (self.high - self.low)
        return round(self.start + share * (self.end - self.start), 1)

    def ticks(self) -> list[float]:
        return [10**power for power in range(self.low, self.high + 1)]

    @staticmethod
    def label(value: float) -> str:
        return _human(value)


class _LinearAxis:
    """Maps a value to a pixel coordinate over round steps around the data."""

    def __init__(self, values: list[float], start: float, end: float) -> None:
        spread = max(max(values) - min(values), 1.0)
        self.step = 10 ** math.floor(math.log10(spread))
        if spread / self.step < 3:
            self.step /= 2
        self.low = math.floor(min(values) / self.step) * self.step
        self.high = math.ceil(max(values) / self.step) * self.step
        if self.high == self.low:
            self.high += self.step
        self.start, self.end = start, end

    def __call__(self, value: float) -> float:
        share = (value - self.low) / (self.high - self.low)
        return round(self.start + share * (self.end - self.start), 1)

    def ticks(self) -> list[float]:
        count = round((self.high - self.low) / self.step)
        return [self.low + index * self.step for index in range(count + 1)]

    def label(self, value: float) -> str:
        return f"{value:g}"


def _human(value: float) -> str:
    """1e6 → 1M, 1e10 → 10G: counts as papers print them."""
    for scale, suffix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if value >= scale:
            return f"{value / scale:g}{suffix}"
    return f"{value:g}"


def _label(cx: float, cy: float, text: str, taken: list[Box]) -> str:
    """The label at the nearest spot around its point where it overlaps no label or point
    placed before and stays in the plot, joined to the point by a leader line when it is
    not beside it; the least crowded spot when none is free."""
    width = CHARACTER * len(text)
    spots = []
    for radius in (6, 14, 24, 36, 50, 66, 84, 104, 126):
        for step in range(16):
            angle = 2 * math.pi * step / 16
            x, y = cx + radius * math.cos(angle), cy - radius * math.sin(angle)
            anchor = (
                "start" if math.cos(angle) > 0.3 else "end" if math.cos(angle) < -0.3 else "middle"
            )
            left = {"start": x, "end": x - width, "middle": x - width / 2}[anchor]
            top = y - LINE / 2 if anchor != "middle" else (y - LINE if y < cy else y)
            spots.append((radius, x, y, anchor, (left, top, left + width, top + LINE)))
    inside = [spot for spot in spots if _inside(spot[4])] or spots

    def crowding(spot: tuple) -> float:
        return sum(_overlap_area(spot[4], other) for other in taken)

    free = [spot for spot in inside if crowding(spot) == 0]
    radius, x, y, anchor, box = free[0] if free else min(inside, key=crowding)
    taken.append(box)
    baseline = box[3] - 2
    leader = ""
    if radius > 6:
        end_x = min(max(cx, box[0]), box[2])
        end_y = min(max(cy, box[1]), box[3])
        leader = (
            f'<line class="leader" x1="{cx}" y1="{cy}" x2="{round(end_x, 1)}" '
            f'y2="{round(end_y, 1)}" stroke="#999999" stroke-width="0.6"/>'
        )
    return leader + _text(round(x, 1), round(baseline, 1), text, anchor, "label")


def _inside(box: Box) -> bool:
    left, top, right, bottom = box
    return left >= LEFT and top >= TOP and right <= WIDTH - RIGHT and bottom <= HEIGHT - BOTTOM


def _overlap_area(a: Box, b: Box) -> float:
    width = min(a[2], b[2]) - max(a[0], b[0])
    height = min(a[3], b[3]) - max(a[1], b[1])
    return width * height if width > 0 and height > 0 else 0.0


def _grid_line(x1: float, y1: float, x2: float, y2: float) -> str:
    return f'<line x1="{x1}" y1="{y1}" x2="{x2}" y2="{y2}" stroke="#dddddd"/>'


def _text(x: float, y: float, text: str, anchor: str, kind: str = "") -> str:
    css = f' class="{kind}"' if kind else ""
    return f'<text{css} x="{x}" y="{y}" text-anchor="{anchor}">{html.escape(text)}</text>'
