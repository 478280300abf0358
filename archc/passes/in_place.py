"""Class-view pass: the ops torch may run in place, as hand-written models do
(`nn.ReLU(inplace=True)`, `out += identity`), saving a tensor's allocation and memory traffic.

An op may overwrite its first input when that tensor was made in this forward by an op whose
backward does not read its own output, and nothing else reads it: not the block's input (the
caller may still hold it), not a value read twice, not a block's result (it may be its input).
Ops that may hand their input back unchanged (dropout in eval, any op an `op` param picks) are
looked through to the tensor they were given; an op under `when:` may be switched off and hand
its input on, so its output is never taken as fresh.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import replace

from archc.ir.modules import BlockClass, ModuleNode

OVERWRITING = ("relu", "relu6", "add")
"""Ops with an in-place form in torch whose backward does not read the input they overwrite."""
FRESH = (
    "conv2d",
    "conv_transpose2d",
    "linear",
    "batch_norm",
    "frozen_batch_norm",
    "layer_norm",
    "add",
)
"""Ops whose output is a new tensor that their own backward does not read."""
PASSING = ("dropout",)
"""Ops that may return their input itself (dropout in eval mode)."""


def mark_in_place(block_class: BlockClass) -> BlockClass:
    """The class with each child that may overwrite its first input marked `in_place`."""
    children = {child.name: child for child in block_class.children}
    inputs = {
        child.name: _named_inputs(block_class, index)
        for index, child in enumerate(children.values())
    }
    reads = Counter(ref for refs in inputs.values() for ref in refs)
    reads.update(block_class.outputs.values())

    def overwritable(ref: str) -> bool:
        producer = children.get(ref)  # None for the block's inputs and indexed lists
        if producer is None or reads[ref] != 1 or not _plain_op(producer):
            return False
        if producer.chosen_by is not None or producer.op.name in PASSING:
            return overwritable(inputs[ref][0])
        return producer.op.name in FRESH

    marked = [
        replace(child, in_place=True)
        if child.kind == "op"
        and child.op.name in OVERWRITING
        and overwritable(inputs[child.name][0])
        else child
        for child in block_class.children
    ]
    return replace(block_class, children=marked)


def _named_inputs(block_class: BlockClass, index: int) -> list[str]:
    """A child's input references, a sequence item's `previous` as the item before it."""
    before = block_class.children[index - 1].name if index else "previous"
    return [before if ref == "previous" else ref for ref in block_class.children[index].inputs]


def _plain_op(child: ModuleNode) -> bool:
    """An op that always runs: switched off by `when:`, an op hands its input on."""
    return child.kind == "op" and child.condition is None
