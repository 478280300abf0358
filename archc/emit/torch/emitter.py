"""PyTorch emission: one nn.Module class per block definition, the model last.

Constructors take the block's params (keyword-only) after its inputs' channel counts; the
body of `__init__` is the spec's body with every channel count an expression over them.
`forward` reads like the spec: one line per node, a chained `x`/`out` where values flow
straight on, named locals where they are kept for a skip.
"""

from __future__ import annotations

import builtins
import inspect
import re
from dataclasses import dataclass
from pathlib import Path

import jinja2

from archc.emit.layout import (
    INDENT,
    INPUT_RESERVED,
    LINE_LIMIT,
    Call,
    layout,
    variable_name,
    wrap_text,
)
from archc.errors import SpecError
from archc.ir.modules import BlockClass, ModuleNode
from archc.ir.symbolic import concrete, source
from archc.ops.lowering import InlineCall, ModuleCall
from archc.passes.cost import CostReport
from archc.render.stats import input_label
from archc.resolve.classes import SPATIAL, block_classes
from archc.resolve.elaborate import Program
from archc.spec.expressions import FUNCTIONS

TEMPLATES = Path(__file__).resolve().parents[3] / "templates"
BODY = INDENT * 2  # the indentation of a method body


@dataclass(frozen=True)
class ClassView:
    name: str
    doc: list[str]
    signature: list[str]
    init: list[str]
    forward_signature: list[str]
    forward: list[str]


def render_torch(classes: list[BlockClass], header: dict[str, str]) -> str:
    """The whole generated file."""
    environment = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        undefined=jinja2.StrictUndefined,
    )
    views = [_class_view(block_class) for block_class in classes]
    model = classes[-1]
    code = "\n".join(line for view in views for line in view.init)
    helpers = [
        inspect.getsource(function)
        for name, function in FUNCTIONS.items()
        if not hasattr(builtins, name) and re.search(rf"\b{name}\(", code)
    ]
    return environment.get_template("torch/model.py.j2").render(
        classes=views, helpers=helpers, model=model.class_name, params=list(model.params), **header
    )


def _class_view(block_class: BlockClass) -> ClassView:
    definition = block_class.definition
    location = definition.location
    doc = wrap_text(definition.doc or f"{block_class.class_name}.", indent=1)
    doc += ["", f"Spec: {location.file}:{location.line}"]
    channel_params = (
        []
        if block_class.is_model
        else [
            f"{_channel_name(block_class, index)}: int" for index in range(len(block_class.inputs))
        ]
    )
    params = [_signature_param(name, block_class) for name in definition.params]
    signature = ["self", *channel_params, *(["*", *params] if params else [])]
    init = [f"{BODY}{name} = {source(value)}" for name, value in block_class.lets]
    for child in block_class.children:
        init += _construct(child, block_class)
    inputs = [_input_variable(block_class, index) for index in range(len(block_class.inputs))]
    forward_signature = ["self", *(f"{name}: torch.Tensor" for name in inputs)]
    return ClassView(
        block_class.class_name,
        doc,
        _wrap_def("__init__", signature, "None"),
        init,
        _wrap_def("forward", forward_signature, "torch.Tensor"),
        _forward(block_class, inputs),
    )


def _channel_name(block_class: BlockClass, index: int) -> str:
    return source(block_class.input_types[index].channels)


def _input_variable(block_class: BlockClass, index: int) -> str:
    if len(block_class.inputs) == 1:
        return "x"
    return variable_name(block_class.inputs[index], INPUT_RESERVED)


def _signature_param(name: str, block_class: BlockClass) -> str:
    param = block_class.definition.params[name]
    annotation = {"list": "tuple[int, ...]"}.get(param.type, param.type)
    if block_class.is_model:
        return f"{name}: {annotation} = {source(block_class.params[name])}"
    if param.default is None:
        return f"{name}: {annotation}"
    return f"{name}: {annotation} = {source(concrete(param.default.raw))}"


def _wrap_def(name: str, params: list[str], returns: str) -> list[str]:
    one_line = f"{INDENT}def {name}({', '.join(params)}) -> {returns}:"
    if len(one_line) <= LINE_LIMIT:
        return [one_line]
    return [
        f"{INDENT}def {name}(",
        *(f"{BODY}{param}," for param in params),
        f"{INDENT}) -> {returns}:",
    ]


def _construct(child: ModuleNode, block_class: BlockClass) -> list[str]:
    """`__init__` lines that build one child (nothing for inline functions)."""
    depth = 2 if child.condition is None else 3
    if child.kind == "loop":
        lines = _loop(child, depth)
    else:
        expression = _expression(child, block_class)
        if expression is None:
            if child.condition is not None:
                raise SpecError(
                    f"'{child.name}': the torch emitter cannot make a stateless op "
                    "conditional on a block param",
                    child.spec.when.location,
                )
            return []
        lines = layout(f"self.{child.name} = ", expression, depth)
    if child.condition is not None:
        lines = [f"{BODY}self.{child.name} = None", f"{BODY}if {source(child.condition)}:", *lines]
    for line in lines:
        if any(placeholder in line for placeholder in SPATIAL):
            raise SpecError(
                f"'{child.name}' of block {block_class.class_name}: a constructor "
                "argument depends on the input's spatial size, which a block class "
                "cannot know; move this node into the model body",
                child.spec.location,
            )
    return lines


def _loop(child: ModuleNode, depth: int) -> list[str]:
    """A list filled by a `for` loop; `channels` carries each iteration's output channels."""
    pad = INDENT * depth
    item = Call(f"{child.name}.append", [_expression(child.children[0], None)])
    step = source(child.loop_output)
    index = "i" if re.search(r"\bi\b", item.flat() + step) else "_"
    start = source(child.input_types[0].channels)
    lines = [f"{pad}{child.name} = []"]
    if start != "channels":
        lines.append(f"{pad}channels = {start}")
    lines.append(f"{pad}for {index} in range({source(child.count)}):")
    lines += layout("", item, depth + 1)
    if step != "channels":
        lines.append(f"{pad}{INDENT}channels = {step}")
    lines.append(f"{pad}self.{child.name} = nn.Sequential(*{child.name})")
    return lines


def _expression(child: ModuleNode, block_class: BlockClass | None) -> Call | None:
    """The constructor expression of a child, or None for an inline function."""
    if child.kind == "op":
        lowered = child.op.lower_torch(child.attrs, child.input_types)
        if isinstance(lowered, InlineCall):
            return None
        return _module_call(lowered)
    if child.kind == "block":
        channels = [source(kind.channels) for kind in child.input_types]
        args = [f"{key}={source(value)}" for key, value in child.args.items()]
        return Call(child.block.name, [*channels, *args])
    items = []
    for item in child.children:
        expression = _expression(item, block_class)
        if expression is None:
            raise SpecError(
                f"'{item.spec.name}' in sequence '{child.name}': op "
                f"{item.op.name} has no torch module form",
                item.spec.location,
            )
        items.append(expression)
    return Call("nn.Sequential", items)


def _module_call(lowered: ModuleCall) -> Call:
    args = [source(value) for value in lowered.args]
    args += [f"{key}={source(value)}" for key, value in lowered.kwargs]
    return Call(lowered.constructor, args)


def _forward(block_class: BlockClass, inputs: list[str]) -> list[str]:
    names = _variables(block_class, inputs)
    lines = []
    for child in block_class.children:
        arguments = [names[ref] for ref in child.inputs]
        target = names[child.name]
        if child.kind == "op" and isinstance(
            lowered := child.op.lower_torch(child.attrs, child.input_types), InlineCall
        ):
            value = lowered.template.format(*arguments)
        elif child.condition is not None:
            value = (
                f"self.{child.name}({arguments[0]}) if self.{child.name} is not None "
                f"else {arguments[0]}"
            )
        else:
            value = f"self.{child.name}({', '.join(arguments)})"
        line = f"{BODY}{target} = {value}"
        if block_class.is_model and _changes_shape(child):
            line += f"  # {_shape_comment(child)}"
        lines.append(line)
    lines.append(f"{BODY}return {names[block_class.output]}")
    return lines


def _variables(block_class: BlockClass, inputs: list[str]) -> dict[str, str]:
    """Local names: one chained variable while values flow straight on, names for kept ones."""
    uses: dict[str, list[int]] = {}
    for index, child in enumerate(block_class.children):
        for ref in child.inputs:
            uses.setdefault(ref, []).append(index)
    uses.setdefault(block_class.output, []).append(len(block_class.children))
    names = dict(zip(block_class.inputs, inputs))
    single_use_input = len(inputs) == 1 and len(uses.get(block_class.inputs[0], [])) == 1
    chain = "x" if single_use_input else "out"
    held_until = uses[block_class.inputs[0]][-1] if single_use_input else -1
    for index, child in enumerate(block_class.children):
        if held_until <= index:
            names[child.name] = chain
            held_until = uses.get(child.name, [index])[-1]
        else:
            names[child.name] = variable_name(child.name)
    return names


def _changes_shape(child: ModuleNode) -> bool:
    return concrete(child.output.shape) != concrete(child.input_types[0].shape)


def _shape_comment(child: ModuleNode) -> str:
    dims = ["N", *(str(concrete(dim)) for dim in child.output.shape[1:])]
    return f"({', '.join(dims)})"


def torch_source(program: Program, costs: CostReport, command: str) -> str:
    """The generated file for a compiled model."""
    total = costs.total
    spec = program.spec
    header = {
        "title": wrap_text(
            f"{spec.root.name}: {spec.root.doc}" if spec.root.doc else spec.root.name, 0
        ),
        "spec": spec.root.location.file,
        "command": command,
        "totals": (
            f"Params {total.params:,} (+ {total.buffers:,} in buffers); "
            f"{total.macs / 1e9:.3f} GMACs = {total.flops / 1e9:.3f} GFLOPs "
            f"at {input_label(costs)}, core tier."
        ),
    }
    return render_torch(block_classes(program), header)
