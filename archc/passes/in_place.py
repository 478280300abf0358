"""Class-view pass: the ops torch may run in place, as hand-written models do
(`nn.ReLU(inplace=True)`, `nn.SiLU(inplace=True)`, `out += identity`), saving a tensor's
allocation and memory traffic.

An op that can (`Op.overwrites_in_place`) may overwrite its first input when that tensor was
made in this forward by an op whose backward does not read its own output
(`Op.fresh_output`), and nothing else reads it: not the block's input (the caller may still
hold it), not a value read twice, not a block's result (it may be its input).
Ops that may hand their input back unchanged (`Op.may_return_input`, any op an `op` param picks) are
looked through to the tensor they were given; an op under `when:` may be switched off and hand
its input on, so its output is never taken as fresh, but it is looked through where its
condition excludes the overwriting op's (`act == 'relu'` against `act == 'silu'`: one of a
block's alternative activations never runs after another).
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import replace

from archc.ir.modules import BlockClass
from archc.ir.symbolic import source


def mark_in_place(block_class: BlockClass) -> BlockClass:
    """The class with each child that may overwrite its first input marked `in_place`."""
    children = {child.name: child for child in block_class.children}
    inputs = {
        child.name: _named_inputs(block_class, index)
        for index, child in enumerate(children.values())
    }
    reads = Counter(ref for refs in inputs.values() for ref in refs)
    reads.update(block_class.outputs.values())

    def overwritable(ref: str, condition: object) -> bool:
        """Whether an op under `condition` may overwrite the value `ref`."""
        producer = children.get(ref)  # None for the block's inputs and indexed lists
        if producer is None or reads[ref] != 1 or producer.kind != "op":
            return False
        if producer.condition is not None:  # off wherever the overwriting op runs: its input
            return _exclusive(producer.condition, condition) and overwritable(
                inputs[ref][0], condition
            )
        if producer.chosen_by is not None or producer.op.may_return_input:
            return overwritable(inputs[ref][0], condition)
        return producer.op.fresh_output

    marked = [
        replace(child, in_place=True)
        if child.kind == "op"
        and child.op.overwrites_in_place
        and overwritable(inputs[child.name][0], child.condition)
        else child
        for child in block_class.children
    ]
    return replace(block_class, children=marked)


def _named_inputs(block_class: BlockClass, index: int) -> list[str]:
    """A child's input references, a sequence item's `previous` as the item before it."""
    before = block_class.children[index - 1].name if index else "previous"
    return [before if ref == "previous" else ref for ref in block_class.children[index].inputs]


def _exclusive(first: object, second: object) -> bool:
    """Whether two conditions cannot both hold: `name == 'a'` and `name == 'b'`."""
    tests = [re.fullmatch(r"(\w+) == (['\"])(.*)\2", source(value)) for value in (first, second)]
    if not all(tests):
        return False
    return tests[0][1] == tests[1][1] and tests[0][3] != tests[1][3]
