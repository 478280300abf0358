"""`archc compare`: one row per model (and input size), as Markdown, CSV or JSON."""

from __future__ import annotations

import csv
import io
import json
from dataclasses import asdict, dataclass

from archc.passes.cost import CostReport
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

    @property
    def activation_mib_fp32(self) -> float:
        return self.activations * 4 / MIB


SORT_KEYS = ("model", "params", "macs", "flops", "activations")


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
    )


def compare_markdown(rows: list[Row]) -> str:
    lines = [
        "| model | input | params | GMACs | GFLOPs | activations (MiB, fp32) |",
        "|---|---|--:|--:|--:|--:|",
    ]
    for row in rows:
        lines.append(
            f"| [{row.model}]({row.spec}) | {row.input} | {row.params:,} | {row.macs / 1e9:.3f} "
            f"| {row.flops / 1e9:.3f} | {row.activation_mib_fp32:.1f} |"
        )
    return "\n".join(lines) + "\n"


def compare_csv(rows: list[Row]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(asdict(rows[0])), lineterminator="\n")
    writer.writeheader()
    writer.writerows(asdict(row) for row in rows)
    return buffer.getvalue()


def compare_json(rows: list[Row]) -> str:
    return json.dumps([asdict(row) for row in rows], indent=2) + "\n"
