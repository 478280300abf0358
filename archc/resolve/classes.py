"""Block classes: each used block definition (and the model) elaborated over symbolic params.

A class's constructor takes the block's params and its inputs' channel counts. Elaborating
the body with those bound to `Sym`s makes every channel count, condition and loop bound come
out as an expression over them, through the same rules that built the concrete graph.
"""

from __future__ import annotations

from typing import Any

from archc.boundary import model_class_name
from archc.ir.graph import BATCH, TensorType
from archc.ir.modules import BlockClass, ModuleNode
from archc.ir.symbolic import SizeSym, Sym, concrete
from archc.resolve.elaborate import Bound, Elaborator, Instance, Program
from archc.resolve.params import channel_names, evaluate_checked
from archc.resolve.values import evaluate_value
from archc.spec.document import BlockDef, matches_type

SPATIAL = ("«height»", "«width»", "«length»")
"""Placeholders for a block input's image size or sequence length: a class cannot know them,
and an emitter that meets one in a constructor argument reports the block instead."""


def block_classes(program: Program) -> list[BlockClass]:
    """Every class to emit, leaves first and the model last.

    A block is emitted when a class can build it, even on a branch no instance takes (a stage
    whose `kind` picks one of two blocks); its representative values then come from the class
    that calls it.
    """
    spec = program.spec
    instances = dict(program.instances)
    model_input = program.graph.inputs["input"]
    model = _elaborate_class(program, spec.root, program.args, [model_input], instances, True)
    model.shapes = {module.name: module.output for module in program.modules}
    order: list[BlockClass] = []
    done: set[str] = set()

    def visit(block_class: BlockClass) -> None:
        for name in _child_blocks([*block_class.children, *block_class.stage]):
            if name not in done:
                done.add(name)
                instance = instances[name]
                child = _elaborate_class(
                    program, spec.blocks[name], instance.args, instance.input_types, instances
                )
                visit(child)
                order.append(child)

    visit(model)
    return [*order, model]


def _child_blocks(children: list[ModuleNode]) -> list[str]:
    """Names of the block definitions a class's children build, in order."""
    names = []
    for child in children:
        if child.kind == "block":
            names.append(child.block.name)
        names += _child_blocks(child.children)
    return names


def _elaborate_class(
    program: Program,
    definition: BlockDef,
    args: dict[str, Any],
    input_types: list[TensorType],
    instances: dict[str, Instance],
    is_model: bool = False,
) -> BlockClass:
    env: dict[str, Any] = {
        name: (SizeSym if _may_be_a_size(definition.params[name].type, value) else Sym)(name, value)
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
    if is_model:  # the input's channels may be a param (`input: [image_channels, 572, 572]`)
        shape = evaluate_value(program.spec.input, env, literal_strings=False)
        channels = shape[input_types[0].channel_axis - 1]  # the spec's shape has no batch
        input_types = [input_types[0].with_channels(channels)]
    inputs = {name: Bound(name, kind) for name, kind in zip(definition.inputs, input_types)}
    elaborator = Elaborator(program.spec)
    output_type = None
    stage, methods = [], {}
    if is_model:
        body = elaborator.model_body(env, inputs)
        children, stage = body.children, list(body.stage)
        outputs = {name: producer for name, (_, producer) in body.outputs.items()}
        methods = {
            method: {name: local for name, (_, local) in returned.items()}
            for method, returned in body.methods.items()
        }
    elif definition.outputs is not None:
        children, _, listed = elaborator.listed_body(definition, env, inputs, prefix="")
        outputs = {str(index): local for index, local in enumerate(listed)}
    else:
        children, output, producer = elaborator.body(definition, env, inputs, prefix="")
        outputs, output_type = {"": producer}, output.type
        if definition.output_channels is not None:  # the simpler expression, as promised
            promise = evaluate_checked(definition.output_channels, env, "int", "output_channels")
            output_type = output_type.with_channels(promise)
    for name, instance in elaborator.instances.items():
        instances.setdefault(name, instance)
    return BlockClass(
        definition=definition,
        class_name=model_class_name(definition.name) if is_model else definition.name,
        params=args,
        lets=lets,
        inputs=list(definition.inputs),
        input_types=input_types,
        children=children,
        outputs=outputs,
        is_model=is_model,
        output_type=output_type,
        stage=stage,
        methods=methods,
    )


def _may_be_a_size(kind: str, value: Any) -> bool:
    """Whether a param can serve as a kernel or stride: a `size`, or a list that is an
    (h, w) pair (`kernel: [1, 3]`), which `pair()` must take whole."""
    return kind == "size" or (kind == "list" and matches_type(value, "size"))


def _symbolic_input(channel_name: str, kind: TensorType) -> TensorType:
    """The channels named; an image's height and width, a sequence's length placeholders."""
    others = iter(SPATIAL[:2] if kind.rank == 4 else SPATIAL[2:])
    symbolic = [
        Sym(channel_name if axis == kind.channel_axis else next(others), concrete(size))
        for axis, size in enumerate(kind.shape[1:], start=1)
    ]
    return kind.with_shape((BATCH, *symbolic))
