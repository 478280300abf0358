"""`archc stats` output: a table for people, JSON and CSV for programs."""

from __future__ import annotations

import csv
import io
import json
from dataclasses import asdict

from archc.ir.graph import first_call
from archc.passes.cost import TIER, TIER_NOTE, Cost, CostReport, NodeCost
from archc.passes.memory import Memory
from archc.render import html_table

MIB = 2**20

COLUMNS = ("params", "trainable", "buffers", "macs", "flops", "activations")


def input_label(report: CostReport) -> str:
    return "x".join(str(dim) for dim in report.input_shape)


def _row(cost: Cost) -> dict[str, int]:
    return {column: getattr(cost, column) for column in COLUMNS}


def stats_json(name: str, report: CostReport, memory: Memory | None = None, depth: int = 1) -> str:
    total = report.total
    document = {
        "model": name,
        "input": list(report.input_shape),
        "tier": TIER,
        **_row(total),
        "depth": report.depth,
        "blocks": {
            block: {**_row(cost), "output": report.output_of(block)}
            for block, cost in report.by_module(depth).items()
        },
        "nodes": [
            {
                "name": node.name,
                "op": node.op,
                "inputs": list(node.inputs),
                "shape": node.shape,
                "kernel": list(node.kernel) if node.kernel else None,
                **_row(node.cost),
            }
            for node in report.nodes
        ],
        "macs_by_kind": report.macs_by_kind(),
        "coverage": {
            "nodes": len(report.nodes),
            "costed": len(report.nodes),
            "stage": list(report.stage),
            "fed": list(report.fed),
            "macs_per_row": report.row_macs,
        },
    }
    if memory is not None:
        document["memory"] = {**asdict(memory), "total": memory.total}
    return json.dumps(document, indent=2) + "\n"


def coverage_line(report: CostReport) -> str:
    """How many nodes the counts cover; the detection stage's, counted apart, named."""
    line = f"coverage: {len(report.nodes)} of {len(report.nodes)} nodes costed"
    if report.stage:
        line += f"; the detection stage ({', '.join(report.stage)}) counted apart, no MACs"
    if report.fed:
        modules = ", ".join(dict.fromkeys(first_call(name).split(".")[0] for name in report.fed))
        rows = ", ".join(f"{macs:,} per row of {value}" for value, macs in report.row_macs.items())
        line += f"; the modules it feeds ({modules}) MACs {rows}, apart"
    return line


def memory_line(memory: Memory) -> str:
    """The training-memory estimate in words, MiB per part."""
    parts = [
        ("params", memory.params),
        ("buffers", memory.buffers),
        ("gradients", memory.gradients),
        (f"{memory.optimizer} state", memory.optimizer_state),
        ("activations kept for backward", memory.activations),
    ]
    terms = " + ".join(f"{what} {size / MIB:,.1f}" for what, size in parts)
    return (
        f"training memory at batch {memory.batch}, {memory.dtype} activations (MiB): "
        f"{terms} = {memory.total / MIB:,.1f}"
    )


def stats_csv(name: str, report: CostReport, depth: int = 1, per_layer: bool = False) -> str:
    """A row per module down to `depth` levels (or per primitive op), then the total."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    label = input_label(report)
    if per_layer:
        writer.writerow(["model", "input", "layer", "op", "inputs", "output", "kernel", *COLUMNS])
        for node in report.nodes:
            cells = [node.name, node.op, "+".join(node.inputs), node.shape, _kernel(node)]
            writer.writerow([name, label, *cells, *_row(node.cost).values()])
        writer.writerow([name, label, "total", "", "", "", "", *_row(report.total).values()])
        return buffer.getvalue()
    writer.writerow(["model", "input", "block", "output", *COLUMNS])
    for block, cost in report.by_module(depth).items():
        writer.writerow([name, label, block, report.output_of(block), *_row(cost).values()])
    writer.writerow([name, label, "total", "", *_row(report.total).values()])
    return buffer.getvalue()


BLOCK_HEADER = ("block", "output", "params", "buffers", "GMACs", "GFLOPs", "MACs %", "activations")


def _block_rows(report: CostReport, depth: int) -> list[tuple[str, ...]]:
    """A row per module down to `depth` levels, indented by its depth, then the total."""
    total = report.total
    rows = [
        _table_row("  " * block.count(".") + block, report.output_of(block), cost, total)
        for block, cost in report.by_module(depth).items()
    ]
    rows.append(_table_row("total", "", total, total))
    return _with_trainable(report, BLOCK_HEADER, rows, [*report.by_module(depth).values(), total])


def _with_trainable(
    report: CostReport, header: tuple[str, ...], rows: list[tuple[str, ...]], costs: list[Cost]
) -> list[tuple[str, ...]]:
    """The header and rows with a `trainable` column after `params` (yes, no, partly), where
    some params are frozen; as they are where none is."""
    if report.total.trainable == report.total.params:
        return [header, *rows]
    at = header.index("params") + 1
    flags = ["trainable", *map(_trainable, costs)]
    return [(*row[:at], flag, *row[at:]) for row, flag in zip([header, *rows], flags)]


def _trainable_line(total: Cost) -> list[str]:
    """Trainable and frozen params, as torchinfo's footer says them, where some are frozen."""
    if total.trainable == total.params:
        return []
    return [f"trainable params {total.trainable:,}; frozen {total.params - total.trainable:,}"]


def _trainable(cost: Cost) -> str:
    if not cost.params:
        return ""
    return {cost.params: "yes", 0: "no"}.get(cost.trainable, "partly")


def stats_table(name: str, report: CostReport, memory: Memory | None = None, depth: int = 1) -> str:
    """Costs per module of the model down to `depth` levels (and the training-memory
    estimate)."""
    header, *rows, totals = _block_rows(report, depth)
    table = _table(name, report, header, rows, totals, left_columns=2)
    return table + (memory_line(memory) + "\n" if memory else "")


def stats_html(name: str, report: CostReport, depth: int = 1, per_layer: bool = False) -> str:
    """The table as HTML (a notebook shows a model so), the totals in its footer."""
    caption = f"{name} at input {input_label(report)} (batch 1); {TIER_NOTE}"
    header, *rows = _layer_rows(report) if per_layer else _block_rows(report, depth)
    return html_table(header, rows, caption, 1)


def stats_per_layer(name: str, report: CostReport, memory: Memory | None = None) -> str:
    """Costs per primitive op, as torchinfo lists layers, with each one's share of the MACs."""
    header, *rows, totals = _layer_rows(report)
    table = _table(name, report, header, rows, totals, left_columns=5)
    return table + (memory_line(memory) + "\n" if memory else "")


def _layer_rows(report: CostReport) -> list[tuple[str, ...]]:
    """The header, a row per primitive op, the totals."""
    header = ("layer", "op", "input", "output", "kernel", "params", "MACs", "MACs %")
    total = report.total
    rows = [
        (
            node.name,
            node.op,
            "+".join(node.inputs),
            node.shape,
            _kernel(node),
            f"{node.cost.params:,}",
            f"{node.cost.macs:,}",
            _share(node.cost, total),
        )
        for node in report.nodes
    ]
    totals = ("total", "", "", "", "", f"{total.params:,}", f"{total.macs:,}", _share(total, total))
    costs = [*(node.cost for node in report.nodes), total]
    return _with_trainable(report, header, [*rows, totals], costs)


def _kernel(node: NodeCost) -> str:
    """A weight's shape as torchinfo writes it (`64x3x7x7`), or empty."""
    return "x".join(map(str, node.kernel)) if node.kernel else ""


def _table(
    name: str,
    report: CostReport,
    header: tuple[str, ...],
    rows: list[tuple[str, ...]],
    totals: tuple[str, ...],
    left_columns: int = 1,
) -> str:
    """Aligned columns (the first `left_columns` flush left), the input and convention above,
    the totals, the FLOP convention and the coverage below."""
    widths = [max(len(row[i]) for row in [header, *rows, totals]) for i in range(len(header))]

    def line(cells: tuple[str, ...]) -> str:
        return "  ".join(
            cell.ljust(width) if index < left_columns else cell.rjust(width)
            for index, (cell, width) in enumerate(zip(cells, widths))
        ).rstrip()

    rule = "-" * len(line(header))
    total = report.total
    lines = [
        f"{name} at input {input_label(report)} (batch 1); {TIER_NOTE}",
        line(header),
        rule,
        *map(line, rows),
        rule,
        line(totals),
        *_trainable_line(total),
        f"MACs {total.macs:,}; FLOPs = 2 x MACs = {total.flops:,}",
        *_kind_lines(report),
        coverage_line(report),
    ]
    return "\n".join(lines) + "\n"


def _kind_lines(report: CostReport) -> list[str]:
    """One line per kind of MACs (conv, linear, attention), so attention's share stands out."""
    kinds = report.macs_by_kind()
    total = report.total.macs
    width = max((len(kind) for kind in kinds), default=0)
    digits = len(f"{total:,}")
    return ["MACs by kind:"] + [
        f"  {kind.ljust(width)}  {macs:>{digits},}  {100 * macs / total:5.1f}%"
        for kind, macs in kinds.items()
    ]


def _share(cost: Cost, total: Cost) -> str:
    return f"{100 * cost.macs / total.macs if total.macs else 0.0:.1f}"


def _table_row(block: str, output: str, cost: Cost, total: Cost) -> tuple[str, ...]:
    return (
        block,
        output,
        f"{cost.params:,}",
        f"{cost.buffers:,}",
        f"{cost.macs / 1e9:.3f}",
        f"{cost.flops / 1e9:.3f}",
        _share(cost, total),
        f"{cost.activations:,}",
    )
