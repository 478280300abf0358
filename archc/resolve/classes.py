"""Block classes: each used block definition (and the model) elaborated over symbolic params.

A class's constructor takes the block's params and its inputs' channel counts. Elaborating
the body with those bound to `Sym`s makes every channel count, condition and loop bound come
out as an expression over them, through the same rules that built the concrete graph.
"""

from __future__ import annotations

from typing import Any

from archc.ir.graph import BATCH, TensorType
from archc.ir.modules import BlockClass
from archc.ir.symbolic import SizeSym, Sym, concrete
from archc.resolve.elaborate import Bound, Elaborator, Program
from archc.resolve.params import channel_names
from archc.resolve.values import evaluate_value
from archc.spec.document import BlockDef, NodeSpec

SPATIAL = ("«height»", "«width»")
"""Placeholders for a block input's spatial size: a class cannot know it, and an emitter that
meets one in a constructor argument reports the block instead of writing it."""


def block_classes(program: Program) -> list[BlockClass]:
    """Every class to emit, leaves first and the model last."""
    spec = program.spec
    order = _used_blocks(spec.root, program, [])
    classes = [
        _elaborate_class(
            program,
            spec.blocks[name],
            program.instances[name].args,
            program.instances[name].input_types,
            is_model=False,
        )
        for name in order
    ]
    model_input = program.graph.inputs["input"]
    classes.append(_elaborate_class(program, spec.root, program.args, [model_input], is_model=True))
    return classes


def class_name(definition: BlockDef, is_model: bool) -> str:
    """Block classes keep their spec name; the model's name becomes PascalCase."""
    if not is_model:
        return definition.name
    return "".join(part[:1].upper() + part[1:] for part in definition.name.split("_"))


def _used_blocks(definition: BlockDef, program: Program, order: list[str]) -> list[str]:
    """Post-order over the block definitions that were instantiated."""
    for name in _referenced_blocks(definition.body, program):
        if name not in order:
            _used_blocks(program.spec.blocks[name], program, order)
            order.append(name)
    return order


def _referenced_blocks(body: list[NodeSpec], program: Program) -> list[str]:
    names = []
    for node in body:
        if node.items is not None:
            names += _referenced_blocks(node.items, program)
        elif node.target in program.instances and node.kind in ("block", ""):
            names.append(node.target)
    return names


def _elaborate_class(
    program: Program,
    definition: BlockDef,
    args: dict[str, Any],
    input_types: list[TensorType],
    is_model: bool,
) -> BlockClass:
    env: dict[str, Any] = {
        name: (SizeSym if definition.params[name].type == "size" else Sym)(name, value)
        for name, value in args.items()
    }
    if not is_model:
        input_types = [
            _symbolic_input(name, kind)
            for name, kind in zip(channel_names(definition), input_types)
        ]
        env.update(zip(channel_names(definition), (kind.channels for kind in input_types)))
    lets = []
    for name, value in definition.lets.items():
        evaluated = evaluate_value(value, env, literal_strings=False)
        lets.append((name, evaluated))
        env[name] = Sym(name, concrete(evaluated))
    inputs = {name: Bound(name, kind) for name, kind in zip(definition.inputs, input_types)}
    children, _, output = Elaborator(program.spec).body(definition, env, inputs, prefix="")
    return BlockClass(
        definition=definition,
        class_name=class_name(definition, is_model),
        params=args,
        lets=lets,
        inputs=list(definition.inputs),
        input_types=input_types,
        children=children,
        output=output,
        is_model=is_model,
    )


def _symbolic_input(channel_name: str, kind: TensorType) -> TensorType:
    _n, channels, *spatial = kind.shape
    placeholders = [Sym(name, concrete(size)) for name, size in zip(SPATIAL, spatial)]
    return TensorType((BATCH, Sym(channel_name, concrete(channels)), *placeholders))
