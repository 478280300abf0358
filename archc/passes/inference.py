"""The inference export: the destructive rewrites, in order, over the class view and the IR
graph together, and what a training checkpoint needs to load into the result."""

from __future__ import annotations

from dataclasses import dataclass, replace

from archc.ir.graph import Graph
from archc.ir.modules import BlockClass, ModuleNode
from archc.passes.cost import CostReport, count_costs
from archc.passes.fold_norms import NormFold, fold_norms
from archc.passes.fuse_parallel import fuse_parallel
from archc.passes.unused_params import drop_unused_params
from archc.resolve.classes import block_classes
from archc.resolve.elaborate import Program


@dataclass(frozen=True)
class InferenceExport:
    classes: list[BlockClass]
    graph: Graph
    costs: CostReport
    folds: list[NormFold]
    """The norms folded into convs, by their training paths."""
    joined: list[tuple[str, list[str]]]
    """Each fused module with state → the training modules whose state it concatenates."""
    renamed: dict[str, str]
    """Training path → inference path, for the other modules with state that moved."""


def inference_export(program: Program) -> InferenceExport:
    """The rewritten model; nothing in it is frozen (the graphs the passes make say so too),
    since it is never trained."""
    graph = program.graph
    classes = [
        replace(block_class, children=_unfrozen(block_class.children))
        for block_class in block_classes(program)
    ]
    folded = fold_norms(classes, graph)
    fused = fuse_parallel(folded.classes, folded.graph, program.modules, folded.renumber)
    final = {old: fused.names[new] for old, new in folded.names.items() if new in fused.names}
    renamed = {old: new for old, new in final.items() if old != new and graph.holds_state(old)}
    before_folding = {new: old for old, new in folded.names.items()}
    joined = [(name, [before_folding[part] for part in parts]) for name, parts in fused.parts]
    costs = count_costs(fused.graph)
    classes = drop_unused_params(fused.classes)
    return InferenceExport(classes, fused.graph, costs, folded.folds, joined, renamed)


def _unfrozen(children: list[ModuleNode]) -> list[ModuleNode]:
    return [replace(child, frozen=None, children=_unfrozen(child.children)) for child in children]
