"""Inference pass: sibling instances of one block that read the same tensor and differ only in
their output width, where the block is a conv and then activations (Inception's 1x1 branches
once their norms are folded), become one wider instance whose output each branch takes a
channel slice of: one convolution launched instead of several, the input read once.

Decided on the class view, as the norm folds are, so that it holds for every instance; applied
to each instance in the IR graph through the concrete module tree, and the emitted file is
validated against that graph. Destructive (the convs' weights are concatenated): the
inference export only.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Iterator
from dataclasses import dataclass, replace
from functools import reduce
from typing import Any

from archc.errors import InternalError
from archc.ir.graph import Graph, Node, Renumbering, later_call
from archc.ir.modules import BlockClass, ModuleNode
from archc.ir.symbolic import concrete, source
from archc.ops import REGISTRY


@dataclass(frozen=True)
class Branch:
    """A child that starts with an instance of a fusable block: the block itself, or a
    sequence whose first item it is."""

    child: ModuleNode
    first: ModuleNode

    @property
    def in_sequence(self) -> bool:
        return self.child is not self.first


@dataclass(frozen=True)
class Fusion:
    """Branches of one class fused: the wider instance's name, the block's width param,
    and the name of each branch's slice."""

    branches: list[Branch]
    name: str
    width: str
    slices: list[str]


@dataclass(frozen=True)
class Fused:
    classes: list[BlockClass]
    graph: Graph
    names: dict[str, str]
    """Each kept node's path before the pass → after it."""
    parts: list[tuple[str, list[str]]]
    """Each fused node with state → the nodes (paths before the pass) whose state it joins."""


def fuse_parallel(
    classes: list[BlockClass], graph: Graph, modules: list[ModuleNode], moved: Renumbering
) -> Fused:
    """The classes and the graph with each group of fusable branches fused; `modules` is the
    concrete module tree, whose paths an earlier pass `moved`."""
    widths = {
        block_class.definition.name: width
        for block_class in classes
        if (width := _width_param(block_class)) is not None
    }
    plans = {}
    fused_classes = []
    for block_class in classes:
        fusions = list(_fusions(block_class, widths))
        key = None if block_class.is_model else block_class.definition.name
        plans[key] = fusions
        fused_classes.append(_fuse_class(block_class, fusions) if fusions else block_class)
    fused_graph, names, parts = _fuse_graph(graph, modules, plans, moved)
    return Fused(fused_classes, fused_graph, names, parts)


def _width_param(block_class: BlockClass) -> str | None:
    """The param that a block's output width is, when its body is a conv (groups 1) and then
    activations, each reading the one before; else None."""
    children = block_class.children
    if len(block_class.inputs) != 1 or not children:
        return None
    conv, *activations = children
    chained = conv.inputs in (["previous"], block_class.inputs) and all(
        child.inputs in (["previous"], [before.name])
        and child.kind == "op"
        and child.op.family == "activation"  # elementwise: each slice of a wider map the same
        and child.condition is None
        for before, child in zip(children, activations)
    )
    if not chained or block_class.outputs != {"": children[-1].name} or not _plain_conv(conv):
        return None
    width = source(conv.attrs.out)
    others = " ".join(source(value) for key, value in conv.attrs if key != "out")
    if width not in block_class.definition.params or re.search(rf"\b{width}\b", others):
        return None
    return width


def _plain_conv(child: ModuleNode) -> bool:
    """A conv over all input channels at once (groups 1) that is always there."""
    is_conv = child.kind == "op" and child.op.name == "conv2d" and child.condition is None
    return is_conv and source(child.attrs.groups) == "1"


def _fusions(block_class: BlockClass, widths: dict[str, str]) -> Iterator[Fusion]:
    """Groups of two or more branches of a body that read the same value and start with an
    instance of the same fusable block, with the same arguments but the width."""
    if block_class.definition.sequential:
        return
    groups: dict[tuple, list[Branch]] = {}
    for child in block_class.children:
        first = child
        if child.kind == "sequence" and len(child.children) > 1:
            first = child.children[0]
            if any(item.spec.sources is not None for item in child.children):
                continue
        width = widths.get(first.block.name) if first.kind == "block" else None
        if width is None or width not in first.args or child.condition is not None:
            continue
        if first.condition is not None or len(child.inputs) != 1:
            continue
        others = tuple((key, source(value)) for key, value in first.args.items() if key != width)
        key = (child.inputs[0], first.block.name, others)
        groups.setdefault(key, []).append(Branch(child, first))
    taken = {child.name for child in block_class.children} | set(block_class.inputs)
    for (_, block, _), branches in groups.items():
        if len(branches) < 2:
            continue
        name = _unique("_".join(branch.child.name for branch in branches), taken)
        slices = [
            _unique(f"{branch.child.name}_input", taken)
            if branch.in_sequence
            else branch.child.name
            for branch in branches
        ]
        yield Fusion(branches, name, widths[block], slices)


def _unique(name: str, taken: set[str]) -> str:
    while name in taken:
        name += "_"
    taken.add(name)
    return name


def _bounds(widths: list[Any]) -> list[tuple[Any, Any]]:
    """(start, stop) of each width in their concatenation; the last runs to the end."""
    bounds = []
    start: Any = 0
    for width in widths[:-1]:
        bounds.append((start, start + width))
        start = start + width
    return [*bounds, (start, None)]


def _fuse_class(block_class: BlockClass, fusions: list[Fusion]) -> BlockClass:
    """The class with each fusion's branches read from slices of one wider instance."""
    by_child = {
        branch.child.name: (fusion, at)
        for fusion in fusions
        for at, branch in enumerate(fusion.branches)
    }
    children: list[ModuleNode] = []
    for child in block_class.children:
        if child.name not in by_child:
            children.append(child)
            continue
        fusion, at = by_child[child.name]
        if at == 0:
            children += _fused_children(fusion)
        if fusion.branches[at].in_sequence:  # the rest of the sequence reads its slice
            sliced = next(node for node in children if node.name == fusion.slices[at])
            rest = child.children[1:]
            children.append(
                replace(child, inputs=[sliced.name], input_types=[sliced.output], children=rest)
            )
    return replace(block_class, children=children)


def _fused_children(fusion: Fusion) -> list[ModuleNode]:
    """The wider instance and one slice of its output per branch."""
    first = fusion.branches[0]
    widths = [branch.first.args[fusion.width] for branch in fusion.branches]
    total = reduce(operator.add, widths)
    wide = replace(
        first.first,
        name=fusion.name,
        inputs=first.child.inputs,
        input_types=first.child.input_types,
        output=first.first.output.with_channels(total),
        args={**first.first.args, fusion.width: total},
    )
    slices = [
        replace(
            wide,
            name=name,
            kind="op",
            inputs=[wide.name],
            input_types=[wide.output],
            output=branch.first.output,
            op=REGISTRY["slice"],
            attrs=REGISTRY["slice"].Attrs().replace(start=start, stop=stop),
            block=None,
            args={},
        )
        for name, branch, (start, stop) in zip(fusion.slices, fusion.branches, _bounds(widths))
    ]
    return [wide, *slices]


def _instances(
    modules: list[ModuleNode], prefix: str, definition: str | None
) -> Iterator[tuple[str, str | None]]:
    """(path prefix, block definition name) of the model (None) and each block instance."""
    yield prefix, definition
    yield from _blocks_within(modules, prefix)


def _blocks_within(modules: list[ModuleNode], prefix: str) -> Iterator[tuple[str, str | None]]:
    for child in modules:
        for call in range(child.calls or 1):  # a shared module: each call's nodes
            path = f"{prefix}{later_call(child.name, call) if call else child.name}."
            if child.kind == "block":
                yield from _instances(child.children, path, child.block.name)
            else:  # a sequence, loop or branches: part of the same body
                yield from _blocks_within(child.children, path)


def _fuse_graph(
    graph: Graph,
    modules: list[ModuleNode],
    plans: dict[str | None, list[Fusion]],
    moved: Renumbering,
) -> tuple[Graph, dict[str, str], list[tuple[str, list[str]]]]:
    before: dict[str, list[Node]] = {}  # the new nodes, by the node they go before
    into: dict[str, str] = {}  # a branch's last node → its slice
    gone: set[str] = set()
    dropped: set[str] = set()  # sequence items taken out: those after them move down
    parts: list[tuple[str, list[str]]] = []
    within: dict[str, list[Node]] = {}  # the nodes under each path, once for all instances
    if any(plans.values()):
        for node in graph.nodes.values():
            for at in [at for at, char in enumerate(node.name) if char == "."]:
                within.setdefault(node.name[: at + 1], []).append(node)
    for path, definition in _instances(modules, "", None):
        prefix = moved(path[:-1]) + "." if path else ""
        for fusion in plans.get(definition, []):
            made, branch_nodes = _fused_nodes(within, prefix, fusion)
            before[branch_nodes[0][0].name] = made
            for branch, nodes, sliced in zip(fusion.branches, branch_nodes, fusion.slices):
                gone.update(node.name for node in nodes)
                into[nodes[-1].name] = prefix + sliced
                if branch.in_sequence:
                    dropped.add(f"{prefix}{branch.child.name}.0")
            for at, node in enumerate(branch_nodes[0]):
                if graph.holds_state(node.name):
                    parts.append((made[at].name, [nodes[at].name for nodes in branch_nodes]))
    order = []
    for node in graph.nodes.values():
        order += before.get(node.name, [])
        if node.name not in gone:
            order.append(node)
    renumber = Renumbering(dropped)
    names = {node.name: renumber(node.name) for node in order}

    def new(ref: str) -> str:
        ref = into.get(ref, ref)
        return names.get(ref, ref)  # a graph input keeps its name

    fused = Graph(graph.name, dict(graph.inputs))
    for node in order:
        fused.add(replace(node, name=names[node.name], inputs=[new(ref) for ref in node.inputs]))
    fused.outputs = {key: new(ref) for key, ref in graph.outputs.items()}
    fused.methods = {
        method: {key: new(value) for key, value in returned.items()}
        for method, returned in graph.methods.items()
    }
    kept = {name: names[name] for name in graph.nodes if name not in gone}
    return fused, kept, [(names[name], joined) for name, joined in parts]


def _fused_nodes(
    within: dict[str, list[Node]], prefix: str, fusion: Fusion
) -> tuple[list[Node], list[list[Node]]]:
    """At one instance of the class: the wider instance's nodes and the slices; and each
    branch's nodes (`within` its path), which they replace."""
    starts = [
        f"{prefix}{branch.child.name}.{'0.' if branch.in_sequence else ''}"
        for branch in fusion.branches
    ]
    branch_nodes = [within.get(start, []) for start in starts]
    local = [node.name.removeprefix(starts[0]) for node in branch_nodes[0]]
    for start, nodes in zip(starts, branch_nodes):
        if [node.name.removeprefix(start) for node in nodes] != local or not local:
            raise InternalError("fuse", f"the branches fused at {start} differ from the first")
    widths = [concrete(nodes[-1].type.channels) for nodes in branch_nodes]
    total = sum(widths)
    made: list[Node] = []
    for name, node in zip(local, branch_nodes[0]):
        attrs = node.attrs.replace(out=total) if not made else node.attrs
        inputs = node.inputs if not made else [made[-1].name]
        wide = node.type.with_channels(total)
        made.append(
            Node(f"{prefix}{fusion.name}.{name}", node.op, attrs, inputs, wide, node.location)
        )
    slice_op = REGISTRY["slice"]
    last = made[-1].name
    for name, nodes, (start, stop) in zip(fusion.slices, branch_nodes, _bounds(widths)):
        attrs = slice_op.Attrs().replace(start=start, stop=stop)
        tail = nodes[-1]
        made.append(Node(prefix + name, slice_op, attrs, [last], tail.type, tail.location))
    return made, branch_nodes
