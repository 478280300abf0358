"""`archc stats` output: a table for people, JSON and CSV for programs."""

from __future__ import annotations

import csv
import io
import json

from archc.passes.cost import TIER, TIER_NOTE, Cost, CostReport

COLUMNS = ("params", "buffers", "macs", "flops", "activations")


def input_label(report: CostReport) -> str:
    return "x".join(str(dim) for dim in report.input_shape)


def _row(cost: Cost) -> dict[str, int]:
    return {column: getattr(cost, column) for column in COLUMNS}


def stats_json(name: str, report: CostReport) -> str:
    total = report.total
    document = {
        "model": name,
        "input": list(report.input_shape),
        "tier": TIER,
        **_row(total),
        "blocks": {block: _row(cost) for block, cost in report.by_block().items()},
        "nodes": [
            {"name": node.name, "op": node.op, "shape": node.shape, **_row(node.cost)}
            for node in report.nodes
        ],
        "coverage": {"nodes": len(report.nodes), "costed": len(report.nodes)},
    }
    return json.dumps(document, indent=2) + "\n"


def stats_csv(name: str, report: CostReport) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["model", "input", "block", *COLUMNS])
    label = input_label(report)
    for block, cost in [*report.by_block().items(), ("total", report.total)]:
        writer.writerow([name, label, block, *_row(cost).values()])
    return buffer.getvalue()


def stats_table(name: str, report: CostReport) -> str:
    header = ("block", "params", "buffers", "GMACs", "GFLOPs", "MACs %", "activations")
    total = report.total
    rows = [_table_row(block, cost, total) for block, cost in report.by_block().items()]
    rows.append(_table_row("total", total, total))
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]

    def line(cells: tuple[str, ...]) -> str:
        first = cells[0].ljust(widths[0])
        return "  ".join(
            [first, *(cell.rjust(width) for cell, width in zip(cells[1:], widths[1:]))]
        )

    rule = "-" * len(line(header))
    return (
        "\n".join(
            [
                f"{name} at input {input_label(report)} (batch 1); {TIER_NOTE}",
                line(header),
                rule,
                *map(line, rows[:-1]),
                rule,
                line(rows[-1]),
                f"MACs {total.macs:,}; FLOPs = 2 x MACs = {total.flops:,}",
                f"coverage: {len(report.nodes)} of {len(report.nodes)} nodes costed",
            ]
        )
        + "\n"
    )


def _table_row(block: str, cost: Cost, total: Cost) -> tuple[str, ...]:
    share = 100 * cost.macs / total.macs if total.macs else 0.0
    return (
        block,
        f"{cost.params:,}",
        f"{cost.buffers:,}",
        f"{cost.macs / 1e9:.3f}",
        f"{cost.flops / 1e9:.3f}",
        f"{share:.1f}",
        f"{cost.activations:,}",
    )
