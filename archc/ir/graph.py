"""The IR graph: primitive-op nodes in topological order, every attribute explicit."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from archc.errors import Location
from archc.ir.symbolic import Sym, concrete, source

if TYPE_CHECKING:
    from archc.ops.attributes import Attrs
    from archc.ops.base import Op

Dim = int | Sym
BATCH = Sym("N", 1)
LATER_CALL = re.compile(r"@\d+")
"""Marks a later call of a shared module in a node's path: `head.cls@2.conv` is the third
call of `head.cls`, and its conv uses the state of `head.cls.conv`."""


def later_call(path: str, call: int) -> str:
    return f"{path}@{call}"


def first_call(path: str) -> str:
    """The path a later call's node has in the first call (itself elsewhere)."""
    return LATER_CALL.sub("", path)


@dataclass(frozen=True)
class TensorType:
    """A tensor's logical shape (NCHW for images; batch symbolic) and element type.

    An image may be channels-last (NHWC) where a model computes on it as a grid of tokens
    (Swin); the `permute` op moves between the two.
    """

    shape: tuple[Dim, ...]
    dtype: str = "f32"
    channels_last: bool = False

    @property
    def rank(self) -> int:
        return len(self.shape)

    @property
    def channel_axis(self) -> int:
        """1 for NCHW images; the last for NHWC images, tokens (N, L, D) and vectors."""
        return 1 if self.rank == 4 and not self.channels_last else self.rank - 1

    @property
    def channels(self) -> Dim:
        return self.shape[self.channel_axis]

    def with_shape(self, shape: tuple[Dim, ...]) -> TensorType:
        """Another shape, the same element type and layout."""
        return replace(self, shape=shape)

    def with_channels(self, channels: Dim) -> TensorType:
        """The same type with another size on the feature axis."""
        shape = list(self.shape)
        shape[self.channel_axis] = channels
        return self.with_shape(tuple(shape))

    def numel_per_sample(self) -> int:
        return math.prod(concrete(dim) for dim in self.shape[1:])

    def __str__(self) -> str:
        dims = ",".join(source(dim) if isinstance(dim, Sym) else str(dim) for dim in self.shape)
        return f"{self.dtype}[{dims}]"


@dataclass
class Node:
    """One primitive op applied to named values; its name is its parameter path."""

    name: str
    op: Op
    attrs: Attrs
    inputs: list[str]
    type: TensorType
    location: Location

    @property
    def shares(self) -> str | None:
        """In a later call of a shared module, the node of its first call whose parameters
        and buffers this one uses (it has none of its own); else None."""
        owner = first_call(self.name)
        return None if owner == self.name else owner


@dataclass
class Graph:
    """A model as a list of nodes; value names are node names or graph input names."""

    name: str
    inputs: dict[str, TensorType]
    nodes: dict[str, Node] = field(default_factory=dict)
    outputs: dict[str, str] = field(default_factory=dict)
    """What the model returns, output name → value: `{"": value}` for one unnamed output;
    named ones (the spec's `outputs:`) come back as a dict, as torchvision's detection and
    segmentation models return them."""
    methods: dict[str, dict[str, str]] = field(default_factory=dict)
    """What the detection stage (the nodes of stage ops) gives to each method after forward:
    `detect` → {"": detections}, `loss` → {loss name: value}."""
    frozen: set[str] = field(default_factory=set)
    """The nodes whose parameters are not trained (the spec's `frozen:`)."""
    init: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Node → param → its Initialiser (the spec's `init:`), where not the layer's default."""

    def add(self, node: Node) -> None:
        self.nodes[node.name] = node

    def type_of(self, value: str) -> TensorType:
        return self.inputs[value] if value in self.inputs else self.nodes[value].type

    def holds_state(self, name: str) -> bool:
        """Whether a node has parameters or buffers of its own (entries in a state_dict)."""
        return self.nodes[name].shares is None and any(self.state_shapes(name))

    def after_network(self) -> set[str]:
        """The detection stage's nodes and the modules they feed (a box head on pooled
        boxes): what runs after the network, in its methods after forward."""
        after: set[str] = set()
        for node in self.nodes.values():
            if node.op.stage or any(name in after for name in node.inputs):
                after.add(node.name)
        return after

    def fed_rows(self) -> dict[str, str]:
        """The nodes of the modules the detection stage feeds, each with the stage value
        whose rows it runs on (a box head's nodes: the pooled proposals)."""
        rows: dict[str, str] = {}
        for node in self.nodes.values():
            stage_reads = (
                name if self.nodes[name].op.stage else rows.get(name)
                for name in node.inputs
                if name in self.nodes
            )
            source = next((name for name in stage_reads if name), None)
            if source is not None and not node.op.stage:
                rows[node.name] = source
        return rows

    def own_state(self) -> list[Node]:
        """The nodes whose parameters and buffers are their own: all but the later calls of
        a shared module."""
        return [node for node in self.nodes.values() if node.shares is None]

    def state_shapes(self, name: str) -> tuple[dict, dict]:
        """A node's parameters and buffers, name → shape, as its op makes them."""
        node = self.nodes[name]
        inputs = [self.type_of(ref) for ref in node.inputs]
        return node.op.parameters(node.attrs, inputs), node.op.buffers(node.attrs, inputs)

    def describe_outputs(self) -> str:
        """`f32[N,1000]`, or `out f32[N,21,520,520], aux f32[…]` for named outputs."""
        return ", ".join(
            f"{name} {self.type_of(value)}".lstrip() for name, value in self.outputs.items()
        )


class Renumbering:
    """Node paths once some sequence items are dropped: the items after one move down."""

    def __init__(self, dropped: set[str]) -> None:
        self.gaps: dict[str, list[int]] = {}  # a sequence's path → its dropped numbers
        for name in dropped:
            parent, _, last = name.rpartition(".")
            if last.isdigit():
                self.gaps.setdefault(parent, []).append(int(last))

    def __call__(self, path: str) -> str:
        """`features.3` → `features.2` when `features.1` is dropped."""
        parts = path.split(".")
        moved = list(parts)
        for at, part in enumerate(parts):
            below = self.gaps.get(".".join(parts[:at])) if part.isdigit() else None
            if below:
                moved[at] = str(int(part) - sum(number < int(part) for number in below))
        return ".".join(moved)
