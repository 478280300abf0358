"""The generated `init_weights(model)`: the spec's `init:` rules, written as torchvision does.

One loop over the modules gives each op's layers their rule (a layer built exactly by that
op's lowering, `type(module) is nn.Conv2d`, so that an attention's inner projection keeps its
own); a second gives each `Block.node` rule to that node of every instance of the block; the
model's own nodes come last. Flax writes torch's conv and linear defaults as well, since its
own layers start from others. The model's constructor calls it last. The layers are read
off the emitted classes, which serve every value of the model's params: a block the defaults
switch off is started too where another value builds it, and a param one value takes away
(`bias: flag`) is tested for.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

from archc.boundary import attribute
from archc.emit.layout import INDENT, LINE_LIMIT, layout_source
from archc.errors import Location
from archc.ir.modules import (
    BlockClass,
    ModuleNode,
    by_definition,
    op_modules,
    parameter_variants,
)
from archc.ir.symbolic import UNARY, Sym, source
from archc.ops.init import FANS, TORCH_DEFAULT_LAYER, Initialiser
from archc.ops.lowering import ModuleCall
from archc.resolve.init import Rules
from archc.spec.expressions import evaluate

FLAX_DEFAULTS = ("conv2d", "conv_transpose2d", "linear")
"""Ops whose flax layer starts otherwise than torch's (lecun normal, zero bias)."""
_READS_FANS = re.compile(r'(?<!")\bfan_(in|out)\b')


@dataclass(frozen=True)
class _Layers:
    """A class an op's layers are built with: each param's attribute on it, and the params
    that every one of them has."""

    constructor: str
    attributes: dict[str, str]
    always: frozenset[str]


def init_function(
    rules: Rules, classes: list[BlockClass], backend: str, keywords: list[str]
) -> list[str]:
    """The lines of `def init_weights`; none when every layer keeps its framework default.
    The layers are the classes' (symbolic: those that other params build too); `keywords`:
    the params its conditions read, as the model's constructor takes them (init_keywords)."""
    by_name = by_definition(classes)
    every = [
        layer
        for block_class in classes
        for layer in op_modules(block_class.children, by_name, blocks=False)
    ]
    by_op = _op_rules(rules, backend)
    layer_branches = [
        (layers.constructor, _assignments("module", rule, layers, backend))
        for op, rule in by_op.items()
        for layers in _layer_classes([layer for layer in every if layer.op.name == op], backend)
    ]
    lines = _loop(_merged(layer_branches, "type(module) is {}", "type(module) in {}"), backend)
    model = next(block_class for block_class in classes if block_class.is_model)
    lines += _node_lines(rules, by_name, model.definition.name, backend, None)
    for condition in dict.fromkeys(source(value) for value in rules.conditions.values()):
        conditioned = _node_lines(rules, by_name, model.definition.name, backend, condition)
        if conditioned:
            lines += [f"{INDENT}if {condition}:", *(INDENT + line for line in conditioned)]
    return [*_signature(backend, keywords), *lines] if lines else []


def init_keywords(rules: Rules, keywords: list[str]) -> list[str]:
    """Of the model's keyword params (`name: type = default`), those init_weights takes:
    the ones its rules' conditions read."""
    text = " ".join(source(condition) for condition in rules.conditions.values())
    read = set(re.findall(r"\b[A-Za-z_]\w*\b", text))
    return [keyword for keyword in keywords if keyword.partition(":")[0] in read]


def _node_lines(
    rules: Rules,
    classes: dict[str, list[BlockClass]],
    model: str,
    backend: str,
    condition: str | None,
) -> list[str]:
    """The block and `Block.node` rules under `condition` (None: those without one): a loop
    over the blocks' instances, then the model's own nodes. A block's own rule runs before its
    nodes' rules, which win."""
    block_lines: dict[str, list[str]] = {}  # a block's rules in one branch
    model_lines: list[str] = []
    for target, rule in sorted(rules.nodes.items(), key=lambda item: "." in item[0]):
        written = rules.conditions.get(target)
        if (source(written) if written is not None else None) != condition:
            continue
        scope, _, name = target.partition(".")
        covered = [
            layer
            for layer in _rule_layers(scope, name, classes)
            if rules.covers(target, layer.op.name)
        ]
        group = target in rules.groups  # every layer of a sequence, or one layer
        found = _layer_classes(covered if group else covered[:1], backend)
        if not found:
            continue  # a rule that starts no layer the model can build
        layers = found[0]
        owner, depth = ("model", 1) if scope == model else ("module", 3)
        if group:
            held = attribute(owner, name) if name else owner  # a node's layers, or a block's
            assignments = _group_assignments(held, rule, layers, backend, depth)
        else:
            assignments = _assignments(attribute(owner, name), rule, layers, backend, depth)
        if scope == model:
            model_lines += assignments
        else:
            block_lines.setdefault(scope, []).extend(assignments)
    branches = list(block_lines.items())
    lines = _loop(_merged(branches, "isinstance(module, {})", "isinstance(module, {})"), backend)
    return lines + model_lines


def _merged(
    branches: list[tuple[str, list[str]]], one: str, several: str
) -> list[tuple[str, list[str]]]:
    """(class, body) pairs as (test, body), the classes that share a body in one test
    (`type(module) in (nn.Conv2d, nn.Linear)`)."""
    by_body: dict[tuple[str, ...], list[str]] = {}
    for name, body in branches:
        by_body.setdefault(tuple(body), []).append(name)
    return [
        (
            one.format(names[0]) if len(names) == 1 else several.format(f"({', '.join(names)})"),
            list(body),
        )
        for body, names in by_body.items()
    ]


def _signature(backend: str, keywords: list[str]) -> list[str]:
    params = ["model: nn.Module"] if backend == "torch" else ["model: nnx.Module", "rngs: nnx.Rngs"]
    params += ["*", *keywords] if keywords else []
    if backend == "torch":
        doc = "The spec's init: rules, each op's layers first, then each named node."
    else:
        doc = (
            "The spec's init: rules, each op's layers first, then each named node; conv and"
            f"\n{INDENT}linear layers otherwise start as torch's do."
        )
    head = f"def init_weights({', '.join(params)}) -> None:"
    if len(head) > LINE_LIMIT:
        head = "\n".join(
            ["def init_weights(", *(f"{INDENT}{param}," for param in params), ") -> None:"]
        )
    lines = [head, f'{INDENT}"""{doc}"""']
    return lines if backend == "torch" else [*lines, f"{INDENT}generator = numpy_generator(rngs)"]


def _loop(branches: list[tuple[str, list[str]]], backend: str) -> list[str]:
    """`for module in …:` with one `if`/`elif` per branch."""
    if not branches:
        return []
    modules = (
        "module in model.modules()"
        if backend == "torch"
        else "_, module in nnx.iter_modules(model)"
    )
    lines = [f"{INDENT}for {modules}:"]
    for index, (test, body) in enumerate(branches):
        lines += [f"{INDENT * 2}{'elif' if index else 'if'} {test}:", *body]
    return lines


def _op_rules(rules: Rules, backend: str) -> dict[str, dict[str, Initialiser]]:
    by_op = dict(rules.ops)
    if backend == "flax":
        for op in FLAX_DEFAULTS:
            by_op[op] = {**TORCH_DEFAULT_LAYER, **by_op.get(op, {})}
    return by_op


def _rule_layers(
    scope: str, name: str, classes: dict[str, list[BlockClass]]
) -> Iterator[ModuleNode]:
    """The op modules a rule may start: those of the node `name` of the block `scope`, or,
    without a name, every one in the block and the blocks inside."""
    for block_class in classes.get(scope, []):
        if name:
            named = [child for child in block_class.children if child.name == name]
            yield from op_modules(named, classes, blocks=False)
        else:
            yield from op_modules(block_class.children, classes, blocks=True)


def _layer_classes(layers: list[ModuleNode], backend: str) -> list[_Layers]:
    """Each class the layers are built with, in the order the classes build them (modules
    without parameters, or that keep them inline, are not layers). A param is always there
    only where no param of the model can take it away (`bias: flag`)."""
    found: dict[str, list[tuple[dict[str, str], frozenset[str]]]] = {}
    for layer in layers:
        lowered = getattr(layer.op, f"lower_{backend}")(layer.attrs, layer.input_types)
        variants = parameter_variants(layer)
        params = {name: shape for variant in variants for name, shape in variant.items()}
        if isinstance(lowered, ModuleCall) and params:
            attributes = {
                name: layer_attribute(lowered.constructor, name, len(shape))
                for name, shape in params.items()
            }
            always = frozenset.intersection(*(frozenset(variant) for variant in variants))
            found.setdefault(lowered.constructor, []).append((attributes, always))
    return [
        _Layers(
            constructor,
            {param: name for attributes, _ in each for param, name in attributes.items()},
            frozenset.intersection(*(always for _, always in each)),
        )
        for constructor, each in found.items()
    ]


def layer_attribute(constructor: str, param: str, rank: int) -> str:
    """A param's attribute on its layer: flax's own layers name a weight `kernel` (or, of
    one axis, `scale`)."""
    if constructor.startswith("nnx.") and param == "weight":
        return "kernel" if rank >= 2 else "scale"
    return param


def _assignments(
    owner: str, rule: dict[str, Initialiser], layers: _Layers, backend: str, depth: int = 3
) -> list[str]:
    """The statements that start `owner`'s params as `rule` says; a param that some layers
    lack (bias=False) under `is not None`, one that none has left out."""
    lines: list[str] = []
    for param, initialiser in rule.items():
        if param not in layers.attributes:
            continue  # none of these layers has it (flax's default bias, all bias=False)
        target = f"{owner}.{layers.attributes[param]}"
        statement = _statement(target, initialiser, backend)
        if param in layers.always:
            lines += layout_source("", statement, depth)
        else:
            lines += [f"{INDENT * depth}if {target} is not None:"]
            lines += layout_source("", statement, depth + 1)
    read = {match.group(0) for line in lines for match in _READS_FANS.finditer(line)}
    if read:  # the resolver saw to it that these layers have a weight
        names = ", ".join(fan if fan in read else "_" for fan in FANS)
        weight = f"{owner}.{layers.attributes['weight']}"
        lines.insert(0, f"{INDENT * depth}{names} = fans({weight})")
    return lines


def _group_assignments(
    owner: str, rule: dict[str, Initialiser], layers: _Layers, backend: str, depth: int
) -> list[str]:
    """A sequence's or branches' layers started as `rule` says: a loop over the modules
    under `owner`, the assignments for each of the layers' class."""
    torch = backend == "torch"
    modules = f"layer in {owner}.modules()" if torch else f"_, layer in nnx.iter_modules({owner})"
    return [
        f"{INDENT * depth}for {modules}:",
        f"{INDENT * (depth + 1)}if type(layer) is {layers.constructor}:",
        *_assignments("layer", rule, layers, backend, depth + 2),
    ]


def _statement(target: str, initialiser: Initialiser, backend: str) -> str:
    kind = initialiser.kind
    if backend == "torch":
        negative = f"-{_argument(initialiser, UNARY)}"
        return kind.torch.format(param=target, arg=_argument(initialiser), negative=negative)
    value = kind.flax.format(key="generator", shape=f"{target}.shape", arg=_argument(initialiser))
    return f"{target}.set_value({value})"


def _argument(initialiser: Initialiser, precedence: int = 0) -> str:
    """The argument as source: a fan's name, a number, or an expression of the fans."""
    raw = initialiser.argument
    if raw is None or initialiser.kind.argument == "fan":
        return str(raw)
    if isinstance(raw, str):
        fans = {fan: Sym(fan, 64) for fan in FANS}
        raw = evaluate(raw, fans, Location("init", 0, 0))
    return source(raw, precedence)
