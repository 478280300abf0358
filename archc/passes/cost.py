"""Cost pass: params, buffers, MACs and activation elements per node, per block and in total.

Convention (DESIGN.md §5): MACs are the primitive; FLOPs = 2 × MACs. The core tier counts conv,
linear and matmul multiply-accumulates without bias, which reproduces torchvision's GFLOPS
column and FlopCounterMode ÷ 2. Counts are per sample (batch 1).
"""

from __future__ import annotations

import math
from collections.abc import Collection
from dataclasses import dataclass, field
from functools import cached_property

from archc.ir.graph import Graph
from archc.ir.symbolic import concrete

TIER = "core"
TIER_NOTE = "core tier: conv, linear, matmul multiply-accumulates; no bias, norm, activation"


@dataclass(frozen=True)
class Cost:
    params: int = 0
    buffers: int = 0
    macs: int = 0
    activations: int = 0
    """Output elements per sample."""
    trainable: int = 0
    """The params that training updates: all but those of `frozen:` nodes."""

    @property
    def flops(self) -> int:
        return 2 * self.macs

    def __add__(self, other: Cost) -> Cost:
        return Cost(
            self.params + other.params,
            self.buffers + other.buffers,
            self.macs + other.macs,
            self.activations + other.activations,
            self.trainable + other.trainable,
        )


@dataclass(frozen=True)
class NodeCost:
    name: str
    op: str
    macs_by_kind: dict[str, int]
    """MACs per kind of arithmetic (conv, linear, attention), for breaking them down."""
    shape: str
    cost: Cost
    inputs: tuple[str, ...] = ()
    """The types it reads."""
    kernel: tuple[int, ...] | None = None
    """Its weight's shape (torchinfo's kernel shape), if it has a conv's or a linear's."""


@dataclass(frozen=True)
class CostReport:
    input_shape: tuple[int, ...]
    """The input the counts refer to, batch 1."""
    nodes: list[NodeCost]
    depth: int
    """Weighted layers (conv, linear: params and MACs) on the longest path from the input:
    the number in a name like ResNet-50. Attention counts its projections, however it is
    written (Op.layers)."""
    stage: tuple[str, ...] = ()
    """The detection stage's nodes (`postprocess:`), counted apart: their work depends on
    the values, and none is in the totals."""
    fed: tuple[str, ...] = ()
    """The nodes of the modules the stage feeds (a box head, per pooled box)."""
    row_macs: dict[str, int] = field(default_factory=dict)
    """MACs per row of the modules the stage feeds, by the stage value whose rows they run
    on (a box head: per pooled box): their parameters are the model's, but how many rows
    they run on depends on the values, so their MACs and activations are not in the
    totals."""

    @property
    def total(self) -> Cost:
        return sum((node.cost for node in self.nodes), Cost())

    def under(self, paths: Collection[str]) -> Cost:
        """The total of the nodes at or below any of these module paths (each node once)."""
        chosen = set(paths)
        outermost = (path for path in chosen if not any(map(chosen.__contains__, _above(path))))
        return sum((node.cost for path in outermost for node in self.below(path)), Cost())

    def below(self, path: str) -> list[NodeCost]:
        """The nodes at or below a module path, in graph order."""
        return self._subtrees.get(path, [])

    @cached_property
    def _subtrees(self) -> dict[str, list[NodeCost]]:
        """The nodes at or below every module path: one walk, so that no query scans all."""
        subtrees: dict[str, list[NodeCost]] = {}
        for node in self.nodes:
            for path in [*_above(node.name), node.name]:
                subtrees.setdefault(path, []).append(node)
        return subtrees

    def macs_by_kind(self) -> dict[str, int]:
        """MACs per kind of arithmetic that any node does (conv, linear, attention)."""
        kinds: dict[str, int] = {}
        for node in self.nodes:
            for kind, macs in node.macs_by_kind.items():
                if macs:
                    kinds[kind] = kinds.get(kind, 0) + macs
        return kinds

    def by_module(self, depth: int = 1) -> dict[str, Cost]:
        """Totals per module down to `depth` levels (1: the model's top-level nodes, its stem
        layers, stages and head; 2: also `layer1.0`, …), in graph order, each module before
        the modules inside it."""
        paths = dict.fromkeys(
            path for node in self.nodes for path in [*_above(node.name), node.name][:depth]
        )
        return {path: self.under([path]) for path in paths}

    def output_of(self, path: str) -> str:
        """The type a module gives: its last node's."""
        return self.below(path)[-1].shape


def _above(path: str) -> list[str]:
    """The module paths that contain this one: `a.b.c` is inside `a` and `a.b`."""
    parts = path.split(".")
    return [".".join(parts[:end]) for end in range(1, len(parts))]


def count_costs(graph: Graph) -> CostReport:
    nodes = []
    depths = dict.fromkeys(graph.inputs, 0)
    stage = tuple(node.name for node in graph.nodes.values() if node.op.stage)
    fed_rows = graph.fed_rows()  # the modules the stage feeds, counted per row apart
    row_macs: dict[str, int] = {}
    for node in graph.nodes.values():
        if node.op.stage:
            continue
        inputs = [graph.type_of(name) for name in node.inputs]
        macs = node.op.macs(node.attrs, inputs, node.type)
        per_row = node.name in fed_rows
        if per_row and node.shares is None:  # once per module
            row_macs[fed_rows[node.name]] = row_macs.get(fed_rows[node.name], 0) + macs
        params, buffers = graph.state_shapes(node.name) if node.shares is None else ({}, {})
        count = sum(math.prod(concrete(shape)) for shape in params.values())
        cost = Cost(
            params=count,
            buffers=sum(math.prod(concrete(shape)) for shape in buffers.values()),
            macs=0 if per_row else macs,
            activations=0 if per_row else node.type.numel_per_sample(),
            trainable=0 if node.name in graph.frozen else count,
        )
        kinds = {} if per_row else node.op.macs_by_kind(node.attrs, inputs, node.type)
        weight = params.get("weight")
        kernel = tuple(concrete(weight)) if weight is not None and len(weight) > 1 else None
        reads = tuple(map(str, inputs))
        nodes.append(NodeCost(node.name, node.op.name, kinds, str(node.type), cost, reads, kernel))
        if not per_row:
            weighted = node.op.layers if cost.params > 0 and cost.macs > 0 else 0
            depths[node.name] = max(depths[name] for name in node.inputs) + weighted
    input_shape = tuple(concrete(dim) for dim in graph.inputs["input"].shape)
    depth = max(depths[value] for value in graph.outputs.values())
    fed = tuple(node.name for node in nodes if node.name in fed_rows)
    return CostReport(input_shape, nodes, depth, stage, fed, row_macs)
