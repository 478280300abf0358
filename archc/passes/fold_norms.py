"""Inference pass: each batch norm that alone reads a conv's output is folded into that conv
(its weight scaled per output channel, the shift its bias), as torch.ao's `fuse_modules` and
TensorRT do: one kernel and one tensor fewer per pair, the same outputs up to rounding.

Destructive: the norm's parameters and statistics are gone, so the pass serves only the
inference export, whose checkpoint converter does the same to a training state_dict.

A pair is decided on the class view (two siblings: a conv, then a norm reading it alone), so
that it holds for every instance of the class; a norm that an `op` param picks folds only if
every instance in the IR picks a batch norm. The same folds are then applied to the IR graph,
and translation validation checks the emitted file against that graph.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, replace

from archc.errors import InternalError, Location
from archc.ir.graph import Graph, Node, Renumbering
from archc.ir.modules import BlockClass, ModuleNode
from archc.ir.symbolic import source

FOLDABLE = ("batch_norm", "frozen_batch_norm")
"""Norms that are a fixed per-channel affine map at inference."""


@dataclass(frozen=True)
class NormFold:
    """One folded pair, by its paths in the training model."""

    conv: str
    norm: str
    eps: float


@dataclass(frozen=True)
class Folded:
    classes: list[BlockClass]
    graph: Graph
    folds: list[NormFold]
    names: dict[str, str]
    """Each kept node's path before the pass → after it."""
    renumber: Renumbering
    """Any path before the pass → after it (a norm dropped from a sequence moves the items
    after it down by one)."""


def fold_norms(classes: list[BlockClass], graph: Graph) -> Folded:
    """The classes and the graph with every foldable norm folded into its conv."""
    candidates = {norm.spec.location for block_class in classes for _, norm in _pairs(block_class)}
    picked_otherwise = {
        node.location for node in graph.nodes.values() if node.op.name not in FOLDABLE
    }
    locations = candidates - picked_otherwise
    folded_classes = [_fold_class(block_class, locations) for block_class in classes]
    return Folded(folded_classes, *_fold_graph(graph, locations))


def _lists(block_class: BlockClass) -> Iterator[tuple[list[ModuleNode], bool]]:
    """Every list of siblings in a class, each with whether it is a sequence (each item
    reads the one before) rather than a body (nodes read each other by name)."""
    yield block_class.children, block_class.definition.sequential
    pending = list(block_class.children)
    while pending:
        child = pending.pop()
        if child.kind == "sequence":
            yield child.children, True
        pending += child.children


def _pairs(block_class: BlockClass) -> Iterator[tuple[ModuleNode, ModuleNode]]:
    """(conv, norm) siblings where the norm alone reads the conv's output, under the same
    `when:` if any (a conv switched off passes its input on, and so does the folded one)."""
    for siblings, sequence in _lists(block_class):
        by_name = {child.name: child for child in siblings}
        reads = Counter(ref for child in siblings for ref in child.inputs)
        if siblings is block_class.children:  # the model's outputs and detection stage too
            reads.update(block_class.outputs.values())
            reads.update(ref for child in block_class.stage for ref in child.inputs)
        for position, norm in enumerate(siblings):
            if sequence:  # an item reads the one before, unless it reads with `from:`
                alone = position > 0 and norm.spec.sources is None
                conv = siblings[position - 1] if alone else None
            else:
                alone = len(norm.inputs) == 1 and reads[norm.inputs[0]] == 1
                conv = by_name.get(norm.inputs[0]) if alone else None
            if (
                conv is not None
                and _op_of(conv, ("conv2d",))
                and _op_of(norm, FOLDABLE)
                and source(conv.condition) == source(norm.condition)  # present together
            ):
                yield conv, norm


def _op_of(child: ModuleNode, names: tuple[str, ...]) -> bool:
    """An op of one of `names`; a norm may be picked by an `op` param (each instance's pick is
    checked in the graph), a conv may not."""
    if child.kind != "op" or child.op.name not in names:
        return False
    return child.chosen_by is None or names == FOLDABLE


def _fold_class(block_class: BlockClass, locations: set[Location]) -> BlockClass:
    """The class with each folded norm gone, its conv given a bias, and what read the norm
    reading the conv."""

    def folded_in(siblings: list[ModuleNode]) -> dict[str, str]:
        """Folded norm → its conv, among siblings."""
        return {
            child.name: (
                siblings[position - 1].name if child.inputs == ["previous"] else child.inputs[0]
            )
            for position, child in enumerate(siblings)
            if child.spec.location in locations
        }

    def fold(siblings: list[ModuleNode]) -> list[ModuleNode]:
        into = folded_in(siblings)
        convs = set(into.values())
        kept = []
        for child in siblings:
            if child.name in into:
                continue
            if child.name in convs:
                child = replace(child, attrs=child.attrs.replace(bias=True))
            inputs = [into.get(ref, ref) for ref in child.inputs]
            kept.append(replace(child, inputs=inputs, children=fold(child.children)))
        return kept

    into = folded_in(block_class.children)
    outputs = {key: into.get(ref, ref) for key, ref in block_class.outputs.items()}
    methods = {
        method: {key: into.get(ref, ref) for key, ref in returned.items()}
        for method, returned in block_class.methods.items()
    }
    # The detection stage reads the body's values by name, as the body's own nodes do.
    body = fold([*block_class.children, *block_class.stage])
    split = len(body) - len(block_class.stage)
    return replace(
        block_class, children=body[:split], outputs=outputs, stage=body[split:], methods=methods
    )


def _fold_graph(
    graph: Graph, locations: set[Location]
) -> tuple[Graph, list[NormFold], dict[str, str], Renumbering]:
    norms = [node for node in graph.nodes.values() if node.location in locations]
    folds = []
    for norm in norms:
        conv = graph.nodes[norm.inputs[0]]
        if conv.op.name != "conv2d" or norm.op.name not in FOLDABLE:
            raise InternalError("fold", f"{norm.name} is not a norm of a conv's output")
        folds.append(NormFold(conv.name, norm.name, norm.attrs.eps))
    into = {fold.norm: fold.conv for fold in folds}
    renumber = Renumbering(set(into))
    names = {name: renumber(name) for name in graph.nodes if name not in into}
    convs = set(into.values())
    folded = Graph(graph.name, dict(graph.inputs))
    for node in graph.nodes.values():
        if node.name in into:
            continue
        attrs = node.attrs.replace(bias=True) if node.name in convs else node.attrs
        inputs = [names.get(into.get(ref, ref), ref) for ref in node.inputs]
        folded.add(Node(names[node.name], node.op, attrs, inputs, node.type, node.location))
    folded.outputs = {key: names.get(into.get(ref, ref), ref) for key, ref in graph.outputs.items()}
    folded.methods = {
        method: {key: names[into.get(value, value)] for key, value in returned.items()}
        for method, returned in graph.methods.items()
    }
    own = [fold for fold in folds if graph.holds_state(fold.norm)]  # not a shared one's later call
    return folded, own, names, renumber
