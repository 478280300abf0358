"""`archc compare`: one row per model (and input size), as Markdown, CSV or JSON."""

from __future__ import annotations

import csv
import io
import json
from dataclasses import asdict, dataclass
from pathlib import Path

from archc.passes.cost import CostReport
from archc.render import html_table
from archc.render.stats import input_label

MIB = 2**20


@dataclass(frozen=True)
class Row:
    model: str
    spec: str
    input: str
    params: int
    buffers: int
    macs: int
    flops: int
    activations: int
    """Output elements of every node, per sample."""
    depth: int
    """Weighted layers on the longest path (ResNet-50: 50)."""
    error: str = ""
    """Why the model refused this input (a row without figures), or empty."""

    @property
    def activation_mib_fp32(self) -> float:
        return self.activations * 4 / MIB

    @property
    def activation_mib_bf16(self) -> float:
        return self.activations * 2 / MIB


def comparison_row(name: str, spec: str, costs: CostReport) -> Row:
    total = costs.total
    return Row(
        name,
        spec,
        input_label(costs),
        total.params,
        total.buffers,
        total.macs,
        total.flops,
        total.activations,
        costs.depth,
    )


def refused_row(spec: str, size: tuple[int, int], message: str) -> Row:
    """The row of a model that refuses an input size: the reason, no figures."""
    return Row(Path(spec).stem, spec, "x".join(map(str, size)), 0, 0, 0, 0, 0, 0, message)


HEADER = (
    "model",
    "input",
    "params",
    "GMACs",
    "GFLOPs",
    "activations (MiB, fp32)",
    "activations (MiB, bf16)",
    "depth",
)


def _cells(row: Row) -> tuple[str, ...]:
    if row.error:
        return (row.model, row.input, "refused", *("-",) * (len(HEADER) - 3))
    return (
        row.model,
        row.input,
        f"{row.params:,}",
        f"{row.macs / 1e9:.3f}",
        f"{row.flops / 1e9:.3f}",
        f"{row.activation_mib_fp32:.1f}",
        f"{row.activation_mib_bf16:.1f}",
        str(row.depth),
    )


def compare_markdown(rows: list[Row]) -> str:
    lines = ["| " + " | ".join(HEADER) + " |", "|---|---|" + "--:|" * (len(HEADER) - 2)]
    for row in rows:
        model, *rest = _cells(row)
        lines.append("| " + " | ".join([f"[{model}]({row.spec})", *rest]) + " |")
    return "\n".join(lines) + "\n"


def compare_latex(rows: list[Row]) -> str:
    """A booktabs-free `tabular` (plain \\hline), text escaped for LaTeX."""

    def escape(text: str) -> str:
        return text.replace("\\", "\\textbackslash{}").replace("_", "\\_").replace("%", "\\%")

    lines = [
        "\\begin{tabular}{ll" + "r" * (len(HEADER) - 2) + "}",
        "\\hline",
        " & ".join(escape(cell) for cell in HEADER) + " \\\\",
        "\\hline",
        *(" & ".join(escape(cell) for cell in _cells(row)) + " \\\\" for row in rows),
        "\\hline",
        "\\end{tabular}",
    ]
    return "\n".join(lines) + "\n"


def compare_html(rows: list[Row]) -> str:
    return html_table(HEADER, [_cells(row) for row in rows])


def compare_csv(rows: list[Row]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(asdict(rows[0])), lineterminator="\n")
    writer.writeheader()
    writer.writerows(asdict(row) for row in rows)
    return buffer.getvalue()


def compare_json(rows: list[Row]) -> str:
    return json.dumps([asdict(row) for row in rows], indent=2) + "\n"
