"""The module tree: how a block definition's body elaborates, for the code emitters.

The IR graph is flat and concrete (one node per primitive op instance). Emitters also need the
structure a user wrote: one class per block definition, its params, lets, children, conditions
and loops, with values as `Sym` source expressions. `archc.resolve.classes` builds these trees
by elaborating each block definition symbolically.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from archc.ir.graph import TensorType
from archc.ir.symbolic import concrete, is_symbolic

if TYPE_CHECKING:
    from archc.ops.base import Op
    from archc.spec.document import BlockDef, NodeSpec


@dataclass
class ModuleNode:
    """One elaborated body entry: kind is 'op', 'block', 'sequence' or 'loop'."""

    name: str
    spec: NodeSpec
    kind: str
    inputs: list[str]
    """Local value names: sibling node names or the block's input names."""
    input_types: list[TensorType]
    output: TensorType
    op: Op | None = None
    attrs: Any = None
    chosen_by: str | None = None
    """In a class, the `op` param that picks this node's op (`norm` in `bn1: norm`)."""
    block: BlockDef | None = None
    args: dict[str, Any] = field(default_factory=dict)
    """Block arguments as written at this call site (evaluated; symbolic in classes)."""
    children: list[ModuleNode] = field(default_factory=list)
    condition: Any = None
    """A symbolic `when:`: the module exists only when it holds, else it is the identity."""
    count: Any = None
    """A loop's repeat count; its children are the body of iteration `i`."""
    loop_output: Any = None
    """A loop's channel count after one iteration, in terms of `i` and `channels`."""
    names: str | None = None
    """A named loop's attribute names as an f-string (`f"denselayer{i + 1}"`); its copies are
    attributes of the class rather than items of a sequence."""
    frozen: Any = None
    """True, or a symbolic condition: the module's parameters are not trained."""
    calls: int | None = None
    """A shared module (`shared: true`): how many values it is called on in turn, each of
    `inputs` (a list among them spliced in); its value is the list of the calls' outputs."""
    reuses: str | None = None
    """A later call (`call:`): the name of the node whose module it runs; it makes none."""
    within: str | None = None
    """`within:`: the sibling whose module keeps this one's (`self.roi_heads.mask_head`)."""
    in_place: bool = False
    """The op may overwrite its first input (`ReLU(inplace=True)`, `out += skip`): set by
    `archc.passes.in_place` where nothing else reads that tensor."""


@dataclass
class BlockClass:
    """A block definition (or the model) elaborated over symbolic params: one emitted class."""

    definition: BlockDef
    class_name: str
    params: dict[str, Any]
    """Param name → representative value (defaults of the signature for the model class)."""
    lets: list[tuple[str, Any]]
    """Let name → its value (a Sym over params), in order."""
    inputs: list[str]
    input_types: list[TensorType]
    children: list[ModuleNode]
    outputs: dict[str, str]
    """Output name → its local reference; one unnamed output is `{"": name}`, a block's
    `outputs:` list is numbered `{"0": …, "1": …}` (each may be a list, spliced in)."""
    is_model: bool = False
    output_type: TensorType | None = None
    """A single-output block's output, symbolic over its params and input channels."""
    stage: list[ModuleNode] = field(default_factory=list)
    """The model's detection stage (`postprocess:`), run by `detect()` after the body."""
    methods: dict[str, dict[str, str]] = field(default_factory=dict)
    """The model's methods after forward (`detect`, `loss`): output name ("" for one value)
    → local reference."""
    shapes: dict[str, TensorType] = field(default_factory=dict)
    """The model's children's concrete output types (a loop's after its last iteration),
    for shape comments."""


def by_definition(classes: list[BlockClass]) -> dict[str, list[BlockClass]]:
    """The classes of each block definition, by its name (one per distinct signature)."""
    found: dict[str, list[BlockClass]] = {}
    for block_class in classes:
        found.setdefault(block_class.definition.name, []).append(block_class)
    return found


def op_modules(
    children: list[ModuleNode], classes: Mapping[str, list[BlockClass]], blocks: bool
) -> Iterator[ModuleNode]:
    """The op modules among `children`, through sequences and loops, and with `blocks`
    through the classes of the blocks inside too (`classes`: by block name)."""
    for child in children:
        if child.reuses is not None:  # a later call makes no module
            continue
        if child.kind == "op":
            yield child
        elif child.kind == "block" and blocks and child.block is not None:
            for block_class in classes.get(child.block.name, []):
                yield from op_modules(block_class.children, classes, blocks)
        elif child.kind != "block":
            yield from op_modules(child.children, classes, blocks)


def parameter_variants(module: ModuleNode) -> list[dict[str, Any]]:
    """An op module's parameters (name → shape) as the model's params may build it: its
    attributes as they are, and with each symbolic bool the other way (`bias: flag`)."""
    flipped = [
        module.attrs.replace(**{key: not concrete(value)})
        for key, value in module.attrs
        if is_symbolic(value) and isinstance(concrete(value), bool)
    ]
    return [module.op.parameters(attrs, module.input_types) for attrs in [module.attrs, *flipped]]
