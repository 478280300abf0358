"""`archc diff A B`: what differs per block (params, MACs, output shape) between two models.

Blocks are matched by their module path (`layer1.0`), so two variants of one architecture
line up block for block; a path only one side has is reported as added or removed.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from archc.ir.graph import TensorType
from archc.ir.modules import ModuleNode
from archc.passes.cost import Cost
from archc.pipeline import Compiled
from archc.render.diagram import shape_label


@dataclass(frozen=True)
class Side:
    """One model's block at a path."""

    cost: Cost
    output: TensorType


@dataclass(frozen=True)
class Change:
    path: str
    before: Side | None
    after: Side | None

    @property
    def kind(self) -> str:
        if self.before is None:
            return "added"
        return "removed" if self.after is None else "changed"


def module_paths(modules: list[ModuleNode], prefix: str = "") -> Iterator[tuple[str, ModuleNode]]:
    """Every module of the tree with its path, parents before children."""
    for module in modules:
        path = prefix + module.name
        yield path, module
        yield from module_paths(module.children, path + ".")


def _sides(compiled: Compiled) -> dict[str, Side]:
    costs = compiled.costs
    return {
        path: Side(costs.under([path]), module.output)
        for path, module in module_paths(compiled.program.modules)
    }


def changes(before: Compiled, after: Compiled) -> list[Change]:
    """Blocks whose params, MACs or output shape differ, or that one side lacks, in the order
    of `after` (then what only `before` has)."""
    old, new = _sides(before), _sides(after)
    found = []
    for path in [*new, *(path for path in old if path not in new)]:
        a, b = old.get(path), new.get(path)
        if a is None or b is None or _key(a) != _key(b):
            found.append(Change(path, a, b))
    return found


def _key(side: Side) -> tuple[int, int, str]:
    return side.cost.params, side.cost.macs, shape_label(side.output)


def diff_table(
    names: tuple[str, str], before: Compiled, after: Compiled, found: list[Change], depth: int
) -> str:
    """The changed blocks down to `depth` levels of nesting, then the totals."""
    header = ("block", "", "params", "Δ params", "MACs", "Δ MACs", "output")
    rows = [_row(change) for change in found if change.path.count(".") < depth]
    rows.append(_row(Change("total", _total(before), _total(after))))
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]

    def line(cells: tuple[str, ...]) -> str:
        return "  ".join(
            cell.ljust(width) if index in (0, 1, 6) else cell.rjust(width)
            for index, (cell, width) in enumerate(zip(cells, widths))
        ).rstrip()

    blocks = sum(1 for _ in module_paths(after.program.modules))
    return (
        "\n".join(
            [
                f"{names[0]} -> {names[1]}: {len(found)} of {blocks} modules differ in params, "
                f"MACs or output shape (per sample, matched by path; listed to depth {depth})",
                line(header),
                "-" * len(line(header)),
                *map(line, rows),
            ]
        )
        + "\n"
    )


def _total(compiled: Compiled) -> Side:
    graph = compiled.program.graph  # with several outputs, the total row shows the last
    return Side(compiled.costs.total, graph.type_of([*graph.outputs.values()][-1]))


def _row(change: Change) -> tuple[str, ...]:
    before, after = change.before, change.after
    cost_before = before.cost if before else Cost()
    cost_after = after.cost if after else Cost()
    shapes = [shape_label(side.output) if side else "-" for side in (before, after)]
    output = shapes[1] if shapes[0] == shapes[1] else " -> ".join(shapes)
    return (
        change.path,
        change.kind if change.path != "total" else "",
        f"{cost_after.params:,}",
        f"{cost_after.params - cost_before.params:+,}",
        f"{cost_after.macs:,}",
        f"{cost_after.macs - cost_before.macs:+,}",
        output,
    )
