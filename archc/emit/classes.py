"""Block classes → the lines of emitted Python classes, shared by every backend.

Constructors take the block's input channel counts, then its params (keyword-only); the body
of the constructor is the spec's body with every channel count an expression over them. The
call method reads like the spec: one line per node, a chained `x`/`out` where values flow
straight on, named locals where they are kept for a skip. A `Backend` says how each op and
module is spelt in its framework.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from itertools import accumulate
from typing import TYPE_CHECKING, Any

from archc.boundary import (
    GENERATED_METHODS,
    WIDTH_ATTRIBUTE,
    attribute,
    local_name,
    spelt,
    string_literal,
)
from archc.emit.layout import (
    INDENT,
    INPUT_RESERVED,
    LINE_LIMIT,
    RESERVED,
    Call,
    layout,
    layout_assignment,
    layout_source,
    named_expressions,
    substitute_names,
    variable_name,
    wrap_exact,
    wrap_text,
)
from archc.errors import SpecError
from archc.ir.graph import Graph, TensorType
from archc.ir.modules import BlockClass, ModuleNode
from archc.ir.symbolic import concrete, is_symbolic, source
from archc.ops import REGISTRY
from archc.ops.base import OpChoice
from archc.ops.lowering import InlineCall, LoweringError, ModuleCall
from archc.resolve.classes import SPATIAL
from archc.resolve.elaborate import loop_width_name
from archc.resolve.params import defaults

if TYPE_CHECKING:
    from archc.emit.validate import ParamPoint

BODY = INDENT * 2  # the indentation of a method body


@dataclass(frozen=True)
class Backend:
    """How one framework spells modules, calls and shapes."""

    name: str
    lower: Callable[[ModuleNode], ModuleCall | InlineCall]
    module: str
    """The base class of a block class."""
    sequential: str
    module_list: str
    tensor: str
    targets: str
    """The annotation of a loss method's training targets."""
    call_method: str
    init_prelude: tuple[str, ...]
    """Lines that open every constructor (torch's `super().__init__()`)."""
    module_kwargs: tuple[str, ...]
    """Arguments every stateful module and block takes (flax's `rngs=rngs`)."""
    init_kwargs: tuple[str, ...]
    """Keyword-only constructor parameters every class takes (flax's `rngs: nnx.Rngs`)."""
    shape_comment: Callable[[TensorType], str]
    imports: tuple[tuple[str, str], ...]
    """(pattern, import line) in the order they are written; a line is kept if its pattern
    occurs in the file (blank entries separate the sections)."""
    required_helpers: tuple[str, ...] = ()
    """Helpers every file of this backend defines (flax's weight converter)."""
    validate: Callable[[str, Graph, list[BlockClass], bool, Sequence[ParamPoint]], None] | None = (
        None
    )
    """Translation validation of a whole file against the IR graph (raises InternalError);
    the flag says whether the file starts its parameters (not an inference export)."""
    passes: tuple[Callable[[BlockClass], BlockClass], ...] = ()
    """Class-view rewrites for this framework, in order (torch's in-place ops)."""
    checkpoint_arrays: dict[str, str] = field(default_factory=dict)
    """How the inference export's checkpoint converter names its arrays (`tensors`) and
    joins them (`concatenate`)."""


@dataclass(frozen=True)
class ClassView:
    name: str
    base: str
    doc: list[str]
    signature: list[str]
    init: list[str]
    call_signature: list[str]
    call: list[str]
    methods: list[str] = field(default_factory=list)
    """The model's methods after forward (`detect`, `loss`): the network, then what they
    need of the detection stage."""


def class_view(
    block_class: BlockClass,
    backend: Backend,
    shown: Callable[[str], str] = str,
    reports_width: bool = False,
    initialises: list[str] | None = None,
) -> ClassView:
    """The class's lines; `shown` names its spec file as the generated file does; a class
    that `reports_width` keeps its output width for the stage loops that build it; one that
    `initialises` (the model) calls the file's init_weights last, passing on those params."""
    definition = block_class.definition
    location = definition.location
    doc = wrap_text(definition.doc or f"{block_class.class_name}.", indent=1)
    doc += ["", *wrap_exact(f"Spec: {shown(location.file)}:{location.line}", indent=1)]
    channel_params = (
        []
        if block_class.is_model
        else [f"{source(kind.channels)}: int" for kind in block_class.input_types]
    )
    keywords = [*signature_params(block_class, backend), *backend.init_kwargs]
    signature = ["self", *channel_params, *(["*", *keywords] if keywords else [])]
    prelude = [] if definition.sequential else [BODY + line for line in backend.init_prelude]
    init: list[str] = []
    init += constructor_lines(block_class, backend)
    if reports_width:
        width = source(block_class.output_type.channels)
        init += layout_assignment(f"self.{WIDTH_ATTRIBUTE}", width, 2)
    methods: list[str] = []
    if definition.sequential:  # a subclass of the framework's sequential
        base, call_signature, call = backend.sequential, [], []
        tail = _sequence_tail(block_class, backend)
        if tail:  # ops after the numbered modules, which read more than the item before
            call_signature = _wrap_def(
                backend.call_method, ["self", f"x: {backend.tensor}"], backend.tensor
            )
            call = _sequence_call(tail, backend)
    else:
        base = backend.module
        kept = _forward_names(_with_stage(block_class), backend)
        init += [f"{BODY}self.{kept[name]} = {name}" for name in kept]
        inputs = _input_variables(block_class)
        returns = backend.tensor
        if "" not in block_class.outputs:
            returns = f"dict[str, {returns}]" if block_class.is_model else f"list[{returns}]"
        call_signature = _wrap_def(
            backend.call_method,
            ["self", *(f"{name}: {backend.tensor}" for name in inputs)],
            returns,
        )
        call = _call_body(block_class, inputs, kept, backend)
        for method in block_class.methods:
            methods += _stage_method(block_class, method, inputs, kept, backend)
    lets = _used_lets(block_class, [*init, *call, *methods])
    init = _without_repeated_channels(_without_unread_widths(init))  # across stages too
    init = prelude + _late_defaults(block_class, backend) + lets + init
    if initialises is not None:  # `init_weights(self, rngs)` in flax
        passed = [keyword.partition("=")[2] for keyword in backend.module_kwargs]
        passed += [f"{name}={name}" for name in initialises]
        init += layout_source("", f"init_weights({', '.join(['self', *passed])})", 2)
    signature_lines = _wrap_def("__init__", signature, "None")
    return ClassView(
        block_class.class_name, base, doc, signature_lines, init, call_signature, call, methods
    )


METHOD_DOCS = {  # one for each of GENERATED_METHODS
    "detect": "The network, then its detection stage (the spec's postprocess:).",
    "loss": "The network, then its training losses against `targets` (the spec's postprocess:).",
}


def _with_stage(block_class: BlockClass) -> BlockClass:
    """The model with its whole detection stage after its body."""
    return replace(block_class, children=[*block_class.children, *block_class.stage])


def _with_stage_modules(block_class: BlockClass, backend: Backend) -> BlockClass:
    """The model with what its detection stage makes after its body: the modules it feeds
    (a box head) and the state of its ops (a sampler's random stream in flax), built with
    it, though only its methods after forward use them."""
    made = [
        child
        for child in [*block_class.children, *block_class.stage]
        if child.reuses is None
        and (child.op is None or not child.op.stage or _holds_state(child, backend))
    ]
    return replace(block_class, children=made)


def _holds_state(child: ModuleNode, backend: Backend) -> bool:
    """Whether a stage op keeps something of its own on the model in this framework."""
    inline = _inline(child, backend)
    return inline is not None and bool(inline.parameters)


def _stage_method(
    block_class: BlockClass, method: str, inputs: list[str], kept: dict[str, str], backend: Backend
) -> list[str]:
    """`def detect(...)` or `def loss(..., targets)`: the network, then the stage nodes the
    method's values need."""
    returned = block_class.methods[method]
    needed = {_split_ref(ref)[0] for ref in returned.values()}
    stage = []
    for child in reversed(block_class.stage):
        if child.name in needed:
            stage.insert(0, child)
            needed.update(_split_ref(ref)[0] for ref in child.inputs)
    parameters = ["self", *(f"{name}: {backend.tensor}" for name in inputs)]
    if any(child.op is not None and child.op.reads_targets for child in stage):
        parameters.append(f"targets: {backend.targets}")
    returns = backend.tensor if "" in returned else f"dict[str, {backend.tensor}]"
    view = replace(block_class, children=[*block_class.children, *stage], outputs=returned)
    return [
        "",
        *_wrap_def(method, parameters, returns),
        f'{BODY}"""{METHOD_DOCS[method]}"""',
        *_call_body(view, inputs, kept, backend),
    ]


def constructor_lines(block_class: BlockClass, backend: Backend) -> list[str]:
    """The constructor lines that build a class's children: where what code can say is
    decided (an item of a sequence needs a module form; an argument cannot depend on a
    spatial size a class does not know), so `check` runs them too."""
    signature_params(block_class, backend)  # an op param's class, which must exist
    if not block_class.definition.sequential:
        return _with_named_widths(_with_stage_modules(block_class, backend), backend)
    tail = _sequence_tail(block_class, backend)
    children = block_class.children[: len(block_class.children) - len(tail)]
    return _sequence_init(children, backend, block_class)


def _used_lets(block_class: BlockClass, code: list[str]) -> list[str]:
    """The constructor lines binding the lets that the code (or a later kept let) reads; a
    let that only sets the input size, say, has no place in the class."""
    text = "\n".join(code)
    lines: list[str] = []
    for name, value in reversed(block_class.lets):
        if re.search(rf"\b{name}\b", text):
            binding = layout_source(f"{name} = ", source(value), 2)
            lines = binding + lines
            text += "\n" + "\n".join(binding)
    return lines


def _without_unread_widths(lines: list[str]) -> list[str]:
    """Drop a loop's `<name>_channels = channels` that no later line reads."""
    kept = []
    for position, line in enumerate(lines):
        binding = re.fullmatch(r"\s*(\w+_channels) = channels", line)
        read = binding is None or any(
            re.search(rf"\b{binding.group(1)}\b", later) for later in lines[position + 1 :]
        )
        if read:
            kept.append(line)
    return kept


def _sequence_tail(block_class: BlockClass, backend: Backend) -> list[ModuleNode]:
    """A sequence block's items from the first that reads with `from:` on: inline ops that
    its call method applies after the numbered modules (ASPP's pooling resizes back to its
    input's size)."""
    children = block_class.children
    start = next(
        (at for at, child in enumerate(children) if child.spec.sources is not None), len(children)
    )
    for child in children[start:]:
        if _inline(child, backend) is None:
            raise SpecError(
                f"'{child.spec.name}': after an item that reads with from:, a sequence can only "
                "apply ops written inline in its call method, and this one is a module",
                child.spec.location,
            )
    return children[start:]


def _sequence_call(tail: list[ModuleNode], backend: Backend) -> list[str]:
    """The call method of a sequence block with a tail: the numbered modules, then the tail."""
    lines = [f"{BODY}out = super().{backend.call_method}(x)"]
    names = {"input": "x", "previous": "out"}
    for position, child in enumerate(tail, start=1):
        template = _inline(child, backend).template
        value = template.format(*(names[ref] for ref in child.inputs))
        lines += layout_source("return " if position == len(tail) else "out = ", value, 2)
    return lines


def _sequence_init(
    children: list[ModuleNode], backend: Backend, block_class: BlockClass
) -> list[str]:
    if not _needs_list(children):
        items = [_sequence_item(child, backend) for child in children]
        return layout("", Call("super().__init__", items), 2)
    taken = RESERVED | set(block_class.params) | {name for name, _ in block_class.lets}
    name = variable_name("layers", frozenset(taken))
    return [*_build_list(name, children, 2, backend), f"{BODY}super().__init__(*{name})"]


def _input_variables(block_class: BlockClass) -> list[str]:
    if len(block_class.inputs) == 1:
        return ["x"]
    return [variable_name(name, INPUT_RESERVED) for name in block_class.inputs]


def signature_params(block_class: BlockClass, backend: Backend) -> list[str]:
    """A class's keyword parameters, annotated, with their defaults (the model's: its
    values), as its constructor and the model's create_model take them."""
    return [_signature_param(name, block_class, backend) for name in block_class.definition.params]


def _signature_param(name: str, block_class: BlockClass, backend: Backend) -> str:
    param = block_class.definition.params[name]
    annotation = {
        "list": "tuple[int, ...]",
        "size": "int | tuple[int, int]",
        "op": f"Callable[..., {backend.module}]",
    }.get(param.type, param.type)
    default = _default_source(name, block_class, backend)
    if default is None:
        return f"{name}: {annotation}"
    if _is_call(default):  # a partial: made in the constructor, as a default would be shared
        return f"{name}: {annotation} | None = None"
    return f"{name}: {annotation} = {default}"


def _default_source(name: str, block_class: BlockClass, backend: Backend) -> str | None:
    """A param's default as code (the model's: its value), or None when it has none."""
    param = block_class.definition.params[name]
    if block_class.is_model:
        return _argument_source(block_class.params[name], param.type, backend)
    if param.default is None:
        return None
    return _argument_source(defaults(block_class.definition)[name], param.type, backend)


def _is_call(code: str) -> bool:
    return code.startswith("functools.partial(")


def _late_defaults(block_class: BlockClass, backend: Backend) -> list[str]:
    """Constructor lines giving an `op` param its partial default, as torchvision writes
    `if norm_layer is None: norm_layer = partial(nn.BatchNorm2d, eps=0.001)`."""
    lines = []
    for name in block_class.definition.params:
        default = _default_source(name, block_class, backend)
        if default is not None and _is_call(default):
            lines += [f"{BODY}if {name} is None:", *layout_source(f"{name} = ", default, 3)]
    return lines


def _argument_source(value: Any, kind: str, backend: Backend) -> str:
    """A param's value as code: an `op` param's op as the class that builds it."""
    if kind == "op" and not is_symbolic(value):
        return _op_class(value, backend)
    return source(value)


def _op_class(choice: OpChoice, backend: Backend) -> str:
    """The class an `op` param picks, as built for images (`batch_norm` → `nn.BatchNorm2d`),
    every argument its lowering writes but the width bound by `functools.partial`, as
    torchvision writes `partial(nn.BatchNorm2d, eps=0.001)` or `partial(nn.GroupNorm, 32)`."""
    op = REGISTRY[choice.name]
    image = TensorType((1, 1, 1, 1))
    node = ModuleNode(choice.name, None, "op", [], [image], image, op, choice.attrs)
    built = backend.lower(node) if choice.attrs is not None else None
    if not isinstance(built, ModuleCall):
        raise SpecError(f"op {choice.name} has no {backend.name} module, so a param cannot pick it")
    bound = [source(value) for value in built.args[:-1]]
    bound += [f"{key}={source(value)}" for key, value in built.kwargs]
    return (
        f"functools.partial({', '.join([built.constructor, *bound])})"
        if bound
        else built.constructor
    )


def _wrap_def(name: str, params: list[str], returns: str) -> list[str]:
    one_line = f"{INDENT}def {name}({', '.join(params)}) -> {returns}:"
    if len(one_line) <= LINE_LIMIT:
        return [one_line]
    lines = [f"{BODY}{param}," for param in params]
    return [f"{INDENT}def {name}(", *lines, f"{INDENT}) -> {returns}:"]


def _construct(child: ModuleNode, block_class: BlockClass, backend: Backend) -> list[str]:
    """Constructor lines that build one child (nothing for an inline function)."""
    depth = 2 if child.condition is None else 3
    if child.kind == "loop" and child.names is not None:
        lines = _named_loop(child, depth, backend)
    elif child.kind == "loop" or (
        child.kind in ("sequence", "branches") and _needs_list(child.children)
    ):
        items = child.children if child.kind != "loop" else [replace(child, condition=None)]
        listed = variable_name(child.name)
        lines = _build_list(listed, items, depth, backend)
        built = (
            f"{backend.module_list}({listed})"
            if child.kind == "branches"
            else f"{backend.sequential}(*{listed})"
        )
        lines += _set(child.name, _frozen(built, child), depth)
    elif (inline := _inline(child, backend)) is not None:
        # Inline code: only its parameters and its condition need keeping.
        lines = [
            line
            for suffix, value in inline.parameters
            for line in _set(child.name + suffix, _frozen(value, child), depth)
        ]
        if child.condition is None:
            return lines
        use = f"use_{child.name}"
        switch = _set(use, source(child.condition), 2)
        return [*switch, f"{BODY}if {attribute('self', use)}:", *lines] if lines else switch
    else:
        built = _frozen(_expression(child, backend), child)
        lines = _set(child.name, built, depth, _owner(child))
    if child.condition is not None:  # one assignment per branch: flax fixes an attribute's kind
        condition = f"{BODY}if {source(child.condition)}:"
        lines = [condition, *lines, f"{BODY}else:", *_set(child.name, "None", 3)]
    if any(placeholder in line for line in lines for placeholder in SPATIAL):
        raise SpecError(
            f"'{child.name}' of block {block_class.class_name}: a constructor argument depends "
            "on the input's spatial size, which a block class cannot know; move this node "
            "into the model body",
            child.spec.location,
        )
    return lines


def _frozen(value: str | Call, child: ModuleNode) -> str | Call:
    """A child's constructor expression, its parameters frozen as its `frozen:` says (by a
    helper of each backend: torch's requires_grad_(False), flax's state variables)."""
    if child.frozen is None:
        return value
    return Call("freeze_params", [value] if child.frozen is True else [value, source(child.frozen)])


SUM = "{0} + "
"""How an inline sum starts; run in place, its first operand takes the rest (`out += skip`)."""

WIDTH_NAME_FROM = 30
"""Channel expressions at least this long get a local name when later lines reuse them."""


def _with_named_widths(block_class: BlockClass, backend: Backend) -> list[str]:
    """Constructor lines for the children, where a long output-width expression that later
    children repeat (DenseNet's running feature count) is named once, `<child>_channels`."""
    children = block_class.children
    plain = [_construct(child, block_class, backend) for child in children]
    text = "\n".join(line for chunk in plain for line in chunk)
    starts = list(accumulate((sum(len(line) + 1 for line in chunk) for chunk in plain), initial=0))
    lines: list[str] = []
    names: list[tuple[str, str]] = []
    for position, child in enumerate(children):
        with named_expressions(names):  # laid out again only once a width has a name
            lines += _construct(child, block_class, backend) if names else plain[position]
            width = source(child.output.channels)
            if (
                len(width) >= WIDTH_NAME_FROM
                and text.find(width, starts[position + 1]) >= 0  # a later child repeats it
                and not str(substitute_names(width)).isidentifier()
            ):
                name = f"{local_name(child.name)}_channels"
                lines += layout_assignment(name, width, 2)
                names.insert(0, (width, name))
    return lines


def _needs_list(children: list[ModuleNode]) -> bool:
    """Whether a sequence must be built as a list: it has loops or conditional items."""
    return any(
        child.kind == "loop"
        or child.condition is not None
        or (child.kind == "sequence" and _needs_list(child.children))
        for child in children
    )


def _build_list(name: str, children: list[ModuleNode], depth: int, backend: Backend) -> list[str]:
    """Lines that fill the list `name` with a sequence's modules, in order."""
    plain = 0  # the leading items that are always there start the list
    while plain < len(children) and not _needs_list(children[plain : plain + 1]):
        plain += 1
    items = [_sequence_item(child, backend) for child in children[:plain]]
    lines = layout(f"{name} = ", Call("", items, brackets="[]"), depth)
    for position, child in enumerate(children[plain:], start=plain):
        lines += _append(name, child, position, depth, backend)
    return _without_repeated_channels(lines)


class _Width(str):
    """A `channels = …` line that ends a loop, with the width it sets as the IR writes it
    (the line may read it from a block instead)."""

    width: str

    def __new__(cls, line: str, width: str) -> _Width:
        made = super().__new__(cls, line)
        made.width = width
        return made


def _without_repeated_channels(lines: list[str]) -> list[str]:
    """Drop a loop's `channels = …` when the loop before it left exactly that value (a loop
    runs at least once; conditions and nested loops make this unknowable: left alone)."""
    statements = [line.lstrip() for line in lines]
    loops = [line for line in lines if line.lstrip().startswith("for ")]
    nested = len({len(line) - len(line.lstrip()) for line in loops}) > 1
    if nested or any(statement.startswith("if ") for statement in statements):
        return lines
    kept: list[str] = []
    holds = None
    for line in lines:
        text = line.strip()
        if text.startswith("channels = "):
            value = line.width if isinstance(line, _Width) else text.removeprefix("channels = ")
            if value == holds:
                continue
            holds = value
        kept.append(line)
    return kept


def _append(name: str, child: ModuleNode, position: int, depth: int, backend: Backend) -> list[str]:
    """Lines that append one item (a loop: all its iterations) to the list `name`."""
    inner = depth if child.condition is None else depth + 1
    if child.kind == "loop":
        lines = _loop(name, child, inner, backend)
    elif child.kind == "sequence" and _needs_list(child.children):
        nested = f"{name}_{position}"
        lines = _build_list(nested, child.children, inner, backend)
        lines += layout("", Call(f"{name}.append", [f"{backend.sequential}(*{nested})"]), inner)
    else:
        lines = layout("", Call(f"{name}.append", [_sequence_item(child, backend)]), inner)
    if child.condition is not None:
        lines.insert(0, f"{INDENT * depth}if {source(child.condition)}:")
    return lines


def _loop(name: str, loop: ModuleNode, depth: int, backend: Backend) -> list[str]:
    """A `for` loop appending each iteration's modules to the list `name`."""
    body = []
    for position, child in enumerate(loop.children):
        body += _append(name, child, position, depth + 1, backend)
    reported = f"{name}[-1].{WIDTH_ATTRIBUTE}" if _reporting_block(loop) else None
    return _loop_frame(loop, body, depth, reported)


def _reporting_block(loop: ModuleNode) -> str | None:
    """The block class whose instance ends each iteration of an unnamed loop that carries
    `channels` on: the next iteration reads that instance's width."""
    last = loop.children[-1]
    carried = loop.loop_output is not None and source(loop.loop_output) != "channels"
    if loop.names is None and carried and last.kind == "block" and last.condition is None:
        return last.block.name
    return None


def width_reporters(classes: list[BlockClass]) -> frozenset[str]:
    """The block classes that keep their output width for a stage loop to read."""

    def found(children: list[ModuleNode]) -> set[str]:
        names = set()
        for child in children:
            if child.kind == "loop" and (block := _reporting_block(child)) is not None:
                names.add(block)
            names |= found(child.children)
        return names

    return frozenset(name for block_class in classes for name in found(block_class.children))


def _named_loop(loop: ModuleNode, depth: int, backend: Backend) -> list[str]:
    """A `for` loop setting each copy as an attribute named by the loop's template, and the
    count kept for the call method."""
    (item,) = loop.children
    expression = _expression(item, backend)
    if expression is None:
        raise SpecError(
            f"'{loop.name}': names: needs a module (a block or an op with a module form)",
            loop.spec.location,
        )
    expression = _frozen(expression, loop)
    body = layout("", Call("setattr", ["self", loop.names, expression]), depth + 1)
    count = _set(f"num_{loop.name}", source(loop.count), depth)
    return [*_loop_frame(loop, body, depth), *count]


def _loop_frame(
    loop: ModuleNode, body: list[str], depth: int, reported: str | None = None
) -> list[str]:
    """`for i in range(count):` around `body`; `channels` carries each iteration's output
    channels to the next (not in branches, where every iteration reads the same input),
    read from `reported`, the width the iteration's last block keeps, where there is one."""
    pad = INDENT * depth
    step = "channels" if loop.loop_output is None else source(loop.loop_output)
    index = "i" if re.search(r"\bi\b", "\n".join(body) + (reported or step)) else "_"
    start = source(loop.input_types[0].channels)
    chained = loop.loop_output is not None and start != "channels"
    lines = [f"{pad}channels = {start}"] if chained else []
    lines.append(f"{pad}for {index} in range({source(loop.count)}):")
    lines += body
    if step != "channels":
        lines.append(_Width(f"{pad}{INDENT}channels = {reported or step}", step))
    width = source(loop.output.channels)
    if width == loop_width_name(loop.spec.name):  # kept past later loops under its own name
        lines.append(f"{pad}{width} = channels")
    return lines


def _expression(child: ModuleNode, backend: Backend) -> Call | None:
    """The constructor expression of a child, or None for an inline function."""
    if child.kind == "op":
        lowered = _lower(child, backend)
        if isinstance(lowered, InlineCall):
            return None
        if child.chosen_by is not None:
            return _chosen(child, lowered, backend)
        call = _module_call(lowered, backend)
        return replace(call, args=[*call.args, "inplace=True"]) if child.in_place else call
    if child.kind == "block":
        channels = [source(kind.channels) for kind in child.input_types]
        params = child.block.params
        args = [
            f"{key}={_argument_source(value, params[key].type, backend)}"
            for key, value in child.args.items()
        ]
        return Call(child.block.name, [*channels, *args, *backend.module_kwargs])
    items = [_sequence_item(item, backend) for item in child.children]
    if child.kind == "branches":
        return Call(backend.module_list, [Call("", items, brackets="[]")])
    return Call(backend.sequential, items)


def _sequence_item(item: ModuleNode, backend: Backend) -> Call | str:
    expression = _expression(item, backend)
    if expression is not None:
        return expression
    lowered = _lower(item, backend)
    template = lowered.template
    module = item.op.torch_module(item.attrs, item.input_types) if backend.name == "torch" else None
    if module is not None:
        return _module_call(module, backend)
    if backend.name == "torch" or lowered.parameters:
        raise SpecError(
            f"'{item.spec.name}': op {item.op.name} has no {backend.name} module form, so it "
            "cannot be an item of a sequence; give it a name in the body instead",
            item.spec.location,
        )
    function = re.fullmatch(r"([\w.]+)\(\{0\}\)", template)
    return function.group(1) if function else f"lambda x: {template.format('x')}"


def _lower(child: ModuleNode, backend: Backend) -> ModuleCall | InlineCall:
    try:
        return backend.lower(child)
    except LoweringError as error:
        raise SpecError(f"'{child.name}': {error}", child.spec.location) from None


def _chosen(child: ModuleNode, lowered: ModuleCall, backend: Backend) -> Call:
    """A module whose class an `op` param picks: built from its input width alone, the
    rest bound in the class (as torchvision calls `norm_layer(width)`); flax's `rngs` always,
    since the param may hold a class that draws."""
    return Call(child.chosen_by, [source(lowered.args[-1]), *backend.module_kwargs])


def _module_call(lowered: ModuleCall, backend: Backend) -> Call:
    args = [source(value) for value in lowered.args]
    args += [f"{key}={source(value)}" for key, value in lowered.kwargs]
    extra = backend.module_kwargs if lowered.random_init else ()
    return Call(lowered.constructor, [*args, *extra])


def _constructor_names(block_class: BlockClass) -> set[str]:
    """Names a constructor has in scope: params, lets, input channel counts."""
    channels = [] if block_class.is_model else block_class.input_types
    return (
        set(block_class.definition.params)
        | {name for name, _ in block_class.lets}
        | {source(kind.channels) for kind in channels}
    )


def _inline(child: ModuleNode, backend: Backend) -> InlineCall | None:
    """The code an op writes straight into the call method, or None for a module."""
    lowered = _lower(child, backend) if child.kind == "op" else None
    return lowered if isinstance(lowered, InlineCall) else None


def _reads(name: str) -> str:
    """A pattern for `name` read as a value in code: not an attribute, not a keyword."""
    return rf"(?<![\w.])({name})\b(?!\s*=(?!=))"


def _forward_names(block_class: BlockClass, backend: Backend) -> dict[str, str]:
    """Constructor names that inline code in the call method reads, each with the attribute
    it is kept in on `self`: its own name, unless a node of the class has that name."""
    scope = _constructor_names(block_class)
    taken = {WIDTH_ATTRIBUTE, *GENERATED_METHODS} | {child.name for child in block_class.children}
    kept: dict[str, str] = {}
    for child in block_class.children:
        inline = _inline(child, backend)
        code = inline.template if inline else child.names or ""  # a names: f-string too
        for name in re.findall(_reads(r"[A-Za-z_]\w*"), code):
            if name in scope and name not in kept:
                attribute_name = name
                while attribute_name in taken:
                    attribute_name += "_"
                kept[name] = attribute_name
                taken.add(attribute_name)
    return kept


def _on_self(code: str, kept: dict[str, str]) -> str:
    """Code of the call method, with the constructor names it reads taken from `self`."""
    for name, attribute_name in kept.items():
        code = re.sub(_reads(name), f"self.{attribute_name}", code)
    return code


def _call_body(
    block_class: BlockClass, inputs: list[str], kept: dict[str, str], backend: Backend
) -> list[str]:
    """The call method; `kept` are the constructor names inline code reads from `self`."""
    names = _variables(block_class, inputs)
    lists = {child.name for child in block_class.children if _is_list(child)}
    lines = []
    for child in block_class.children:
        arguments = [_argument(ref, names, lists) for ref in child.inputs]
        target = names[child.name]
        inline = _inline(_as_called(child, lists), backend)
        template = inline.template if inline else None
        if child.kind == "branches":
            lines += _branches_call(target, child, arguments)
            continue
        if child.calls is not None:  # one module on each value in turn
            values = _unspread(f"[{', '.join(arguments)}]")
            call = _applied(child, template, ["value"], kept, backend)
            lines += _list_comprehension(target, f"{call} for value in {values}")
            continue
        if child.kind == "loop" and child.names is not None:
            if target != arguments[0]:
                lines.append(f"{BODY}{target} = {arguments[0]}")
            lines.append(f"{BODY}for i in range({attribute('self', f'num_{child.name}')}):")
            # the f-string's fields read the constructor's names; its text stays as it is
            fields = re.compile(r"\{([^{}]*)\}")
            named = fields.sub(lambda field: "{" + _on_self(field[1], kept) + "}", child.names)
            lines.append(f"{BODY}{INDENT}{target} = getattr(self, {named})({target})")
            continue
        overwrites = child.in_place and child.condition is None and target == arguments[0]
        if overwrites and template and template.startswith(SUM):  # `out += skip`
            rest = template.removeprefix(SUM).format(None, *arguments[1:])
            lines += layout_source(f"{target} += ", rest, 2)
            continue
        if template is None and child.condition is not None:
            module = attribute("self", child.name)
            value = f"{module}({', '.join(arguments)}) if {module} is not None else {arguments[0]}"
        else:
            value = _applied(child, template, arguments, kept, backend)
        if template is not None and child.condition is not None:
            # Switched off, the node passes its first input on (if/else: the target may
            # hold another input).
            use, first = attribute("self", f"use_{child.name}"), arguments[0]
            choice = f"{BODY}{target} = {value} if {use} else {first}"
            if target != first and len(choice) <= LINE_LIMIT:
                lines.append(choice)
                continue
            lines.append(f"{BODY}if {use}:")
            lines += layout_source(f"{target} = ", value, 3)
            if target != first:
                lines += [f"{BODY}else:", f"{BODY}{INDENT}{target} = {first}"]
            continue
        if value == target:  # nothing to do in this framework (a permute to its own layout)
            continue
        statement = layout_source(f"{target} = ", value, 2)
        output = block_class.shapes.get(child.name, child.output)
        if block_class.is_model and _changes_shape(child, output) and not _is_list(child):
            comment = f"# {backend.shape_comment(output)}"
            if len(statement[-1]) + 2 + len(comment) <= LINE_LIMIT:
                statement[-1] += f"  {comment}"
            else:  # above the statement rather than past the line limit
                statement.insert(0, BODY + comment)
        lines += statement
    returned = {key: _argument(ref, names, lists) for key, ref in block_class.outputs.items()}
    if "" in returned:
        lines.append(f"{BODY}return {returned['']}")
    elif block_class.is_model:
        entries = [f"{string_literal(name)}: {value}" for name, value in returned.items()]
        lines += layout("return ", Call("", entries, brackets="{}"), 2)
    else:
        lines += layout("return ", Call("", list(returned.values()), brackets="[]"), 2)
    return lines


def _applied(
    child: ModuleNode,
    template: str | None,
    arguments: list[str],
    kept: dict[str, str],
    backend: Backend,
) -> str:
    """The child on its arguments: its inline code (`template`), or a call of its module
    (another node's, for a later call)."""
    module = attribute(_owner(child), child.reuses or child.name)
    if template is None:
        return f"{module}({', '.join(arguments)})"
    template = _own_parameters(_on_self(template, kept), child, backend)
    return _unspread(template.format(*arguments, self=module))


def _set(name: str, value: str | Call, depth: int, owner: str = "self") -> list[str]:
    """`self.name = value`, or `setattr(self, "block1-0", value)` for a name Python cannot
    spell (torch and flax register the module under it all the same)."""
    if spelt(name):
        if isinstance(value, str):
            return layout_source(f"{owner}.{name} = ", value, depth)
        return layout(f"{owner}.{name} = ", value, depth)
    return layout("", Call("setattr", [owner, string_literal(name), value]), depth)


def _owner(child: ModuleNode) -> str:
    """The module that keeps a child's: the class's, or a sibling's (`within:`)."""
    return "self" if child.within is None else attribute("self", child.within)


def _own_parameters(template: str, child: ModuleNode, backend: Backend) -> str:
    """An inline template with its `{self}_weight`-style parameters written as attributes
    of the module (through getattr where Python cannot spell the name)."""
    inline = _inline(child, backend)
    for suffix, _ in inline.parameters if inline else ():
        if suffix:
            owned = attribute("self", child.name + suffix).replace("{", "{{").replace("}", "}}")
            template = template.replace("{self}" + suffix, owned)
    return template


def _is_list(child: ModuleNode) -> bool:
    """Whether a child's value is a list: branches, a shared module's calls, or a block that
    returns `outputs:`."""
    if child.kind == "branches" or child.calls is not None:
        return True
    return child.kind == "block" and child.block.outputs is not None


def _argument(ref: str, names: dict[str, str], lists: set[str]) -> str:
    """A local reference as code: a variable, one item of a list (`inner_blocks[3]`), or a
    whole list spread into a call (`*features`)."""
    base, index = _split_ref(ref)
    if index:
        return names[base] + index
    return f"*{names[ref]}" if ref in lists else names[ref]


def _split_ref(ref: str) -> tuple[str, str]:
    """`inner_blocks[3]` → ('inner_blocks', '[3]'); a plain name has no index."""
    base, bracket, index = ref.partition("[")
    return base, bracket + index


def _branches_call(target: str, child: ModuleNode, arguments: list[str]) -> list[str]:
    """Every branch on the input, or branch k on input k."""
    if len(child.inputs) == 1 and not arguments[0].startswith("*"):
        comprehension = f"branch({arguments[0]}) for branch in {attribute('self', child.name)}"
    else:
        values = _unspread(f"[{', '.join(arguments)}]")
        modules = attribute("self", child.name)
        comprehension = f"branch(value) for branch, value in zip({modules}, {values})"
    return _list_comprehension(target, comprehension)


def _list_comprehension(target: str, comprehension: str) -> list[str]:
    """`target = [comprehension]`; one too long for a line goes inside its brackets."""
    line = f"{BODY}{target} = [{comprehension}]"
    if len(line) <= LINE_LIMIT:
        return [line]
    inner = [f"{BODY}{INDENT}{comprehension}"]
    if len(inner[0]) > LINE_LIMIT:  # the call on one line, its `for` clause on the next
        call, clause = comprehension.split(" for ", 1)
        inner = [f"{BODY}{INDENT}{call}", f"{BODY}{INDENT}for {clause}"]
    return [f"{BODY}{target} = [", *inner, f"{BODY}]"]


def _unspread(code: str) -> str:
    """`[*convs]` is `convs`: a list spread alone into a list literal is the list itself."""
    return re.sub(r"\[\*(\w+)\]", r"\1", code)


def _as_called(child: ModuleNode, lists: set[str]) -> ModuleNode:
    """A node that reads branches whole, lowered as the call method writes it: one argument
    per reference (the branches as one list), not one per branch."""
    if not lists.intersection(child.inputs):
        return child
    return replace(child, input_types=child.input_types[: len(child.inputs)])


def _variables(block_class: BlockClass, inputs: list[str]) -> dict[str, str]:
    """Local names: one chained variable while values flow straight on, names for kept ones."""
    uses: dict[str, list[int]] = {}
    for index, child in enumerate(block_class.children):
        for ref in child.inputs:
            uses.setdefault(_split_ref(ref)[0], []).append(index)
    for output in block_class.outputs.values():
        uses.setdefault(_split_ref(output)[0], []).append(len(block_class.children))
    names = dict(zip(block_class.inputs, inputs))
    single_use_input = len(inputs) == 1 and len(uses.get(block_class.inputs[0], [])) == 1
    chain = "x" if single_use_input else "out"
    held_until = uses[block_class.inputs[0]][-1] if single_use_input else -1
    for index, child in enumerate(block_class.children):
        staged = child.op is not None and child.op.stage
        # a list has a name of its own, and so has each value of the detection stage
        if held_until <= index and not _is_list(child) and not staged:
            names[child.name] = chain
            held_until = uses.get(child.name, [index])[-1]
        else:
            names[child.name] = variable_name(child.name)
    return names


def _changes_shape(child: ModuleNode, output: TensorType) -> bool:
    """Whether a shape comment says something: a new shape, not a loss's scalar."""
    return output.rank > 0 and concrete(output.shape) != concrete(child.input_types[0].shape)
