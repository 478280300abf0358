"""The inference export: the destructive rewrites, in order, over the class view and the IR
graph together, with what a training checkpoint needs to load into the result."""

from __future__ import annotations

from dataclasses import dataclass

from archc.ir.graph import Graph
from archc.ir.modules import BlockClass
from archc.passes.cost import CostReport, count_costs
from archc.passes.fold_norms import NormFold, fold_norms
from archc.resolve.classes import block_classes
from archc.resolve.elaborate import Program


@dataclass(frozen=True)
class InferenceExport:
    classes: list[BlockClass]
    graph: Graph
    costs: CostReport
    folds: list[NormFold]
    renamed: dict[str, str]
    """Training path → inference path, for the modules with state that moved."""


def inference_export(program: Program) -> InferenceExport:
    folded = fold_norms(block_classes(program), program.graph)
    return InferenceExport(
        folded.classes, folded.graph, count_costs(folded.graph), folded.folds, folded.renamed
    )
