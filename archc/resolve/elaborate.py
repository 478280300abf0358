"""Elaboration: a model spec's bodies, blocks, repeats and conditions → the IR graph.

The same walk serves two purposes. Concretely (`elaborate`), it instantiates every node with
numbers, infers each node's shape with its op's rule as it goes (a block may use its
`in_channels`), and builds the flat IR graph. Symbolically (`archc.resolve.classes`), it runs
over `Sym` params to recover, per block definition, the expressions an emitted class needs.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from archc.errors import ShapeError, SpecError, did_you_mean
from archc.ir.graph import BATCH, Graph, Node, TensorType
from archc.ir.modules import ModuleNode
from archc.ir.symbolic import Sym, choose, concrete, is_symbolic, source
from archc.ops import REGISTRY
from archc.resolve.values import build_attrs, evaluate_value, is_string_field
from archc.spec.document import BlockDef, ModelSpec, NodeSpec, Value, matches_type
from archc.spec.loader import parse_scalar

LOOP_VARIABLES = re.compile(r"\b(i|channels)\b")


class Bound(NamedTuple):
    """A value in scope: its IR name and type."""

    name: str
    type: TensorType


@dataclass
class Instance:
    """The first instance of a block definition: representative values for its class."""

    args: dict[str, Any]
    input_types: list[TensorType]


@dataclass
class Program:
    """The resolved model: its params after overrides, the IR graph, the block instances."""

    spec: ModelSpec
    args: dict[str, Any]
    overrides: dict[str, Any]
    graph: Graph
    instances: dict[str, Instance] = field(default_factory=dict)


def elaborate(spec: ModelSpec, overrides: dict[str, str]) -> Program:
    """Instantiate the model with concrete params: the IR graph with every shape inferred."""
    root = spec.root
    applied = {key: parse_override(root, key, text) for key, text in overrides.items()}
    args = {name: _plain(param.default.raw) for name, param in root.params.items() if param.default}
    args.update(applied)
    env = bind_lets(root, dict(args))
    input_type = TensorType((BATCH, *input_shape(spec.input, env)))
    graph = Graph(root.name, {"input": input_type})
    elaborator = Elaborator(spec, graph)
    _, output, _ = elaborator.body(root, env, {"input": Bound("input", input_type)}, prefix="")
    graph.output = output.name
    return Program(spec, args, applied, graph, elaborator.instances)


def parse_override(root: BlockDef, key: str, text: str) -> Any:
    """One `--set key=value`, typed against the model param it overrides."""
    if key not in root.params:
        hint = (
            did_you_mean(key, root.params) or f"the params are: {', '.join(root.params) or 'none'}"
        )
        raise SpecError(f"--set {key}={text}: '{key}' is not a param of {root.name}", hint=hint)
    value, kind = parse_scalar(text), root.params[key].type
    if kind == "float" and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not matches_type(value, kind):
        raise SpecError(f"--set {key}={text}: expected a {kind}, got {value!r}")
    return value


def bind_lets(definition: BlockDef, env: dict[str, Any]) -> dict[str, Any]:
    for name, value in definition.lets.items():
        env[name] = evaluate_value(value, env, literal_strings=False)
    return env


def input_shape(value: Value, env: dict[str, Any]) -> list[int]:
    shape = evaluate_value(value, env, literal_strings=False)
    if (
        not isinstance(shape, list)
        or not shape
        or not all(isinstance(dim, int) and not isinstance(dim, bool) and dim > 0 for dim in shape)
    ):
        raise SpecError(
            f"input: expected a list of positive sizes without the batch axis, "
            f"e.g. [3, 224, 224], got {shape!r}",
            value.location,
        )
    return shape


def channel_names(definition: BlockDef) -> list[str]:
    """Expression names of the inputs' channel counts: `in_channels`, or `<input>_channels`."""
    if len(definition.inputs) == 1:
        return ["in_channels"]
    return [f"{name}_channels" for name in definition.inputs]


def _plain(raw: Any) -> Any:
    return [_plain(item) for item in raw] if isinstance(raw, list) else raw


class Elaborator:
    """Walks bodies; with a graph it builds IR nodes, without one it only types (symbolic)."""

    def __init__(self, spec: ModelSpec, graph: Graph | None = None) -> None:
        self.spec = spec
        self.graph = graph
        self.instances: dict[str, Instance] = {}

    @property
    def symbolic(self) -> bool:
        return self.graph is None

    def body(
        self, definition: BlockDef, env: dict[str, Any], inputs: dict[str, Bound], prefix: str
    ) -> tuple[list[ModuleNode], Bound, str]:
        """Elaborate a body in order; each node reads the previous one unless it says `from:`.

        Returns the modules, the output value and the local name that produces it (a node
        switched off by `when:` is the identity, so references to it reach its input).
        """
        values = dict(inputs)
        producers = {name: name for name in inputs}
        previous = definition.inputs[0]
        children = []
        for node in definition.body:
            refs = [source.raw for source in node.sources] if node.sources else [previous]
            for ref, at in zip(refs, node.sources or []):
                if ref not in values:
                    hint = did_you_mean(ref, values) or "from: names an earlier node or an input"
                    raise SpecError(
                        f"node '{node.name}': unknown reference '{ref}'", at.location, hint
                    )
            local_refs = [producers[ref] for ref in refs]
            module, values[node.name] = self.node(
                node, local_refs, [values[ref] for ref in refs], env, prefix
            )
            producers[node.name] = node.name if module is not None else local_refs[0]
            if module is not None:
                children.append(module)
            previous = node.name
        return children, values[previous], producers[previous]

    def node(
        self, node: NodeSpec, refs: list[str], bounds: list[Bound], env: dict[str, Any], prefix: str
    ) -> tuple[ModuleNode | None, Bound]:
        condition = None
        if node.when is not None:
            condition = self.scalar(node.when, env, "bool", "when")
            if not is_symbolic(condition) and not condition:
                return None, bounds[0]  # a node switched off is the identity on its first input
        if node.repeat is not None:
            module, bound = self.repeat(node, refs, bounds, env, prefix)
        elif node.items is not None:
            module, bound = self.sequence(node, refs, bounds, env, prefix)
        else:
            module, bound = self.single(node, node.name, refs, bounds, env, prefix + node.name)
        if is_symbolic(condition):
            module.condition = condition
            if bound.type.rank != bounds[0].type.rank:
                raise SpecError(
                    f"node '{node.name}': a conditional node must keep its input's rank",
                    node.when.location,
                )
            shape = tuple(
                choose(condition, out, inp)
                for out, inp in zip(bound.type.shape, bounds[0].type.shape)
            )
            module.output = TensorType(shape)
            bound = Bound(bound.name, module.output)
        return module, bound

    def scalar(self, value: Value, env: dict[str, Any], kind: str, what: str) -> Any:
        result = evaluate_value(value, env, literal_strings=False)
        if not matches_type(concrete(result), kind):
            raise SpecError(f"{what}: expected a {kind}, got {concrete(result)!r}", value.location)
        return result

    def repeat(
        self, node: NodeSpec, refs: list[str], bounds: list[Bound], env: dict[str, Any], prefix: str
    ) -> tuple[ModuleNode, Bound]:
        if node.items is not None:
            raise SpecError(
                "repeat: applies to an op or block node, not a sequence", node.repeat.location
            )
        count = self.scalar(node.repeat, env, "int", "repeat")
        if concrete(count) < 1:
            raise SpecError(
                f"repeat: expected a count of at least 1, got {concrete(count)}",
                node.repeat.location,
            )
        full_name = prefix + node.name
        first = bounds[0].type
        if self.symbolic:
            return self.loop(node, refs, bounds, env, full_name, count)
        children, bound = [], bounds[0]
        for index in range(count):
            module, bound = self.single(
                node, str(index), [refs[0]], [bound], {**env, "i": index}, f"{full_name}.{index}"
            )
            children.append(module)
        module = ModuleNode(
            node.name, node, "sequence", refs, [first], bound.type, children=children
        )
        return module, bound

    def loop(
        self,
        node: NodeSpec,
        refs: list[str],
        bounds: list[Bound],
        env: dict[str, Any],
        full_name: str,
        count: Any,
    ) -> tuple[ModuleNode, Bound]:
        """One symbolic iteration `i`, reading `channels` (the previous iteration's output)."""
        first = bounds[0].type
        channels = Sym("channels", concrete(first.channels))
        iteration_input = TensorType((first.shape[0], channels, *first.shape[2:]))
        iteration_env = {**env, "i": Sym("i", 0)}
        body, bound = self.single(
            node,
            "0",
            refs,
            [Bound(bounds[0].name, iteration_input)],
            iteration_env,
            f"{full_name}.0",
        )
        out_channels = bound.type.channels
        if LOOP_VARIABLES.search(source(out_channels)):
            out_channels = Sym("channels", concrete(out_channels))
        output = TensorType((bound.type.shape[0], out_channels, *bound.type.shape[2:]))
        module = ModuleNode(
            node.name,
            node,
            "loop",
            refs,
            [first],
            output,
            children=[body],
            count=count,
            loop_output=bound.type.channels,
        )
        return module, Bound(bound.name, output)

    def sequence(
        self, node: NodeSpec, refs: list[str], bounds: list[Bound], env: dict[str, Any], prefix: str
    ) -> tuple[ModuleNode, Bound]:
        children, bound, previous = [], bounds[0], refs[0]
        for item in node.items or []:
            module, bound = self.node(item, [previous], [bound], env, f"{prefix}{node.name}.")
            if module is not None:
                children.append(module)
            previous = item.name
        module = ModuleNode(
            node.name, node, "sequence", refs, [bounds[0].type], bound.type, children=children
        )
        return module, bound

    def single(
        self,
        node: NodeSpec,
        local_name: str,
        refs: list[str],
        bounds: list[Bound],
        env: dict[str, Any],
        full_name: str,
    ) -> tuple[ModuleNode, Bound]:
        kind = node.kind or ("block" if node.target in self.spec.blocks else "op")
        if kind == "block":
            return self.block(node, local_name, refs, bounds, env, full_name)
        return self.op(node, local_name, refs, bounds, env, full_name)

    def op(
        self,
        node: NodeSpec,
        local_name: str,
        refs: list[str],
        bounds: list[Bound],
        env: dict[str, Any],
        full_name: str,
    ) -> tuple[ModuleNode, Bound]:
        op = REGISTRY.get(node.target)
        if op is None:
            known = [*REGISTRY, *self.spec.blocks]
            raise SpecError(
                f"node '{node.name}': unknown op '{node.target}'",
                node.location,
                did_you_mean(node.target, known),
            )
        arity_ok = len(bounds) == op.arity if op.arity else len(bounds) >= 2
        if not arity_ok:
            wanted = (
                f"{op.arity} input" + ("s" * (op.arity != 1)) if op.arity else "2 or more inputs"
            )
            raise SpecError(
                f"{full_name} ({op.name}) takes {wanted}, got {len(bounds)}", node.location
            )
        fields = op.Attrs.model_fields
        unknown = next((key for key in node.args if key not in fields), None)
        if unknown is not None:
            raise SpecError(
                f"unknown attribute '{unknown}' for {full_name} ({op.name})",
                node.args[unknown].key_location or node.args[unknown].location,
                did_you_mean(unknown, fields) or f"expected one of: {', '.join(fields)}",
            )
        values = {
            key: evaluate_value(value, env, is_string_field(fields[key].annotation))
            for key, value in node.args.items()
        }
        locations = {key: value.location for key, value in node.args.items()}
        attrs = build_attrs(op.Attrs, values, locations, f"{full_name} ({op.name})", node.location)
        types = [bound.type for bound in bounds]
        if not self.symbolic:
            problems = op.check(attrs, types)
            if problems:
                raise ShapeError(f"{full_name} ({op.name}): {problems[0]}", node.location)
        output = op.infer(attrs, types)
        if self.graph is not None:
            inputs = [bound.name for bound in bounds]
            self.graph.add(Node(full_name, op, attrs, inputs, output, node.location))
        module = ModuleNode(local_name, node, "op", refs, types, output, op=op, attrs=attrs)
        return module, Bound(full_name, output)

    def block(
        self,
        node: NodeSpec,
        local_name: str,
        refs: list[str],
        bounds: list[Bound],
        env: dict[str, Any],
        full_name: str,
    ) -> tuple[ModuleNode, Bound]:
        definition = self.spec.blocks[node.target]
        args = self.block_args(node, definition, env, full_name)
        if len(bounds) != len(definition.inputs):
            raise SpecError(
                f"{full_name}: block {definition.name} takes {len(definition.inputs)} "
                f"input(s) ({', '.join(definition.inputs)}), got {len(bounds)}",
                node.location,
            )
        defaults = {
            name: _plain(param.default.raw)
            for name, param in definition.params.items()
            if param.default is not None
        }
        inner = {**defaults, **args}
        if not self.symbolic:
            self.instances.setdefault(
                definition.name, Instance(dict(inner), [b.type for b in bounds])
            )
        for name, bound in zip(channel_names(definition), bounds):
            inner[name] = bound.type.channels
        bind_lets(definition, inner)
        inputs = dict(zip(definition.inputs, bounds))
        children, output, _ = self.body(definition, inner, inputs, full_name + ".")
        types = [bound.type for bound in bounds]
        module = ModuleNode(
            local_name,
            node,
            "block",
            refs,
            types,
            output.type,
            block=definition,
            args=args,
            children=children,
        )
        return module, output

    def block_args(
        self, node: NodeSpec, definition: BlockDef, env: dict[str, Any], full_name: str
    ) -> dict[str, Any]:
        args = {}
        for key, value in node.args.items():
            param = definition.params.get(key)
            if param is None:
                raise SpecError(
                    f"unknown param '{key}' for block {definition.name}",
                    value.key_location or value.location,
                    did_you_mean(key, definition.params)
                    or f"its params are: {', '.join(definition.params) or 'none'}",
                )
            args[key] = evaluate_value(value, env, literal_strings=param.type == "str")
            if not matches_type(concrete(args[key]), param.type):
                raise SpecError(
                    f"{full_name}.{key}: expected a {param.type}, got {concrete(args[key])!r}",
                    value.location,
                )
        for name, param in definition.params.items():
            if param.default is None and name not in args:
                raise SpecError(
                    f"{full_name}: block {definition.name} needs param '{name}'", node.location
                )
        return args
