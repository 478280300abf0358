"""The spec's `init:` rules, checked against the model and applied to the IR's nodes.

A rule names an op (every layer of it), a block (every layer in each of its instances, as
torchvision's `for layer in self.modules()`) or `Block.node` (that node in every instance of
the block; the model's name stands for its own body). A node's rule wins over its block's, and
both over its op's, param by param; the IR keeps each node's initialisers with their arguments
evaluated at its fans. A node's rule (not a block's) may hold only `when:` an expression of
the model's params does (torchvision's `zero_init_residual`): the IR has it where the params'
values make it hold, and the generated init_weights tests the params.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from archc.errors import Location, SpecError, did_you_mean
from archc.ir.graph import Graph, Node, TensorType
from archc.ir.modules import BlockClass, by_definition, op_modules, parameter_variants
from archc.ir.symbolic import Sym, concrete, is_symbolic
from archc.ops import REGISTRY
from archc.ops.base import Op
from archc.ops.init import FANS, KINDS, Initialiser, torch_fans
from archc.ops.lowering import ModuleCall
from archc.resolve.params import evaluate_checked
from archc.spec.document import InitRule, ModelSpec, NodeSpec, Value
from archc.spec.loader import SpecMap


@dataclass
class Rules:
    """The checked rules: by op name and by `Scope.node`, each param's initialiser."""

    ops: dict[str, dict[str, Initialiser]] = field(default_factory=dict)
    nodes: dict[str, dict[str, Initialiser]] = field(default_factory=dict)
    locations: dict[str, Location] = field(default_factory=dict)
    """Each rule's target → where the spec wrote it."""
    arguments: dict[tuple[str, str], Value] = field(default_factory=dict)
    """(target, param) → the argument as written, for errors at its fans."""
    conditions: dict[str, Sym] = field(default_factory=dict)
    """A node rule's target → its condition, symbolic in the model's params."""
    groups: set[str] = field(default_factory=set)
    """The targets that name a block, or a sequence or branches of op layers, all of whose
    layers they start (torchvision's `for layer in self.conv.modules()`)."""
    layer_ops: dict[str, str] = field(default_factory=dict)
    """A group's target → the one op whose layers it starts, where its rule says `op:`."""

    def covers(self, target: str, op: str) -> bool:
        """Whether the rule `target` starts a layer of `op` that its node builds."""
        return self.layer_ops.get(target, op) == op

    def holds(self, target: str | None) -> bool:
        """Whether the rule applies at the model's params (a rule without `when:` does)."""
        return target not in self.conditions or bool(concrete(self.conditions[target]))


def init_rules(spec: ModelSpec, args: dict[str, Any]) -> Rules:
    """The spec's rules, each target and initialiser checked (not yet against the graph);
    `args`: the model's params, which conditions read."""
    rules = Rules()
    for rule in spec.init:
        initialisers = {
            param: _initialiser(rule, param, value, rules) for param, value in rule.params.items()
        }
        if "." in rule.target or rule.target in spec.blocks:
            if "." not in rule.target or _check_node_target(spec, rule):
                rules.groups.add(rule.target)  # a block's rule starts every layer in it
            if rule.op is not None:
                rules.layer_ops[rule.target] = _layer_op(rule, rules)
            if rule.when is not None and "." not in rule.target:
                raise SpecError(
                    f"init.{rule.target}: when: conditions a Block.node rule, not a block's",
                    rule.when.key_location or rule.when.location,
                    "a block's layers start alike for all params; condition a node's rule",
                )
            if rule.when is not None and not _condition(rule, args, rules):
                continue  # false whatever the params
            rules.nodes[rule.target] = initialisers
        elif rule.when is not None or rule.op is not None:
            key, value, example = (
                ("when: conditions", rule.when, "the node the condition is about: Bottleneck.bn3")
                if rule.when is not None
                else (
                    "op: picks the layers of",
                    rule.op,
                    "a block or a sequence: SSDExtra, RetinaRegressionHead.conv",
                )
            )
            raise SpecError(
                f"init.{rule.target}: {key} a block's or a Block.node rule, not an op's",
                value.key_location or value.location,
                f"name {example}",
            )
        else:
            if rule.target not in REGISTRY:
                raise SpecError(
                    f"init: unknown op or block '{rule.target}' (a rule names an op, a block, "
                    "or Block.node)",
                    rule.location,
                    did_you_mean(rule.target, [*REGISTRY, *spec.blocks]),
                )
            rules.ops[rule.target] = initialisers
        rules.locations[rule.target] = rule.location
    return rules


def _layer_op(rule: InitRule, rules: Rules) -> str:
    """`op: conv2d` of a block's or a sequence's rule: an op, and the rule one of a group."""
    assert rule.op is not None
    if rule.target not in rules.groups:
        raise SpecError(
            f"init.{rule.target}: op: picks the layers of a block, or of a seq: or branches: "
            f"node, and {rule.target} is one layer",
            rule.op.key_location or rule.op.location,
        )
    if not isinstance(rule.op.raw, str) or rule.op.raw not in REGISTRY:
        raise SpecError(
            f"init.{rule.target}.op: unknown op {concrete(rule.op.raw)!r}",
            rule.op.location,
            did_you_mean(str(rule.op.raw), REGISTRY),
        )
    return rule.op.raw


def _condition(rule: InitRule, args: dict[str, Any], rules: Rules) -> bool:
    """Record a node rule's condition; False when it holds for no params (true for all: no
    condition to test)."""
    assert rule.when is not None
    symbols = {name: Sym(name, value) for name, value in args.items()}
    condition = evaluate_checked(rule.when, symbols, "bool", f"init.{rule.target}.when")
    if is_symbolic(condition):
        rules.conditions[rule.target] = condition
        return True
    return bool(condition)


def _initialiser(rule: InitRule, param: str, value: Value, rules: Rules) -> Initialiser:
    """`zeros`, `{normal: 0.01}`, `{kaiming_normal: fan_out}`, `{uniform: 1 / sqrt(fan_in)}`."""
    raw, where = value.raw, f"init.{rule.target}.{param}"
    if isinstance(raw, str) and raw in KINDS:
        name, argument = raw, None
    elif isinstance(raw, SpecMap) and len(raw) == 1:
        (name,) = raw.keys()
        argument = Value(raw[name], raw.value_at(name))
    else:
        listed = ", ".join(f"{{{name}: …}}" for name, kind in KINDS.items() if kind.argument)
        raise SpecError(
            f"{where}: expected an initialiser, got {concrete(raw)!r}",
            value.location,
            f"zeros, ones, xavier_uniform, or one of {listed}",
        )
    kind = KINDS.get(name)
    if kind is None:
        raise SpecError(
            f"{where}: unknown initialiser '{name}'", value.location, did_you_mean(name, KINDS)
        )
    wanted = {"": "no argument", "number": "a number", "fan": "fan_in or fan_out"}[kind.argument]
    if (argument is None) != (kind.argument == "") or (
        kind.argument == "fan" and argument.raw not in FANS
    ):
        got = "none" if argument is None else repr(argument.raw)
        raise SpecError(f"{where}: {name} takes {wanted}, got {got}", value.location)
    if kind.argument == "number":
        # Checked now at representative fans; evaluated per layer at its own.
        fans = {fan: Sym(fan, 64) for fan in FANS}
        evaluate_checked(argument, fans, "float", where)
        rules.arguments[(rule.target, param)] = argument
    return Initialiser(name, argument.raw if argument is not None else None)


def _check_node_target(spec: ModelSpec, rule: InitRule) -> bool:
    """`Block.node`: a block of the spec (or the model), and a node of its body built
    wherever the block is (no `when:`) that makes one layer (no repeat) or is a sequence or
    branches of op layers (True)."""
    scope, _, name = rule.target.partition(".")
    definition = spec.root if scope == spec.root.name else spec.blocks.get(scope)
    if definition is None:
        scopes = [spec.root.name, *spec.blocks]
        raise SpecError(
            f"init: no block or model named '{scope}' (in {rule.target})",
            rule.location,
            did_you_mean(scope, scopes),
        )
    nodes = {node.name: node for node in definition.body}
    node = nodes.get(name)
    if node is None or definition.sequential:
        raise SpecError(
            f"init: {scope} has no node '{name}'", rule.location, did_you_mean(name, nodes)
        )
    if node.items is not None and not node.when and _op_layers(node.items):
        return True
    if node.kind == "block" or node.items is not None or node.repeat or node.when:
        raise SpecError(
            f"init: {rule.target} must be one op layer, or a sequence or branches of op "
            f"layers, built wherever {scope} is",
            rule.location,
            "a rule covers an op node without repeat: or when:, or a seq: or branches: node "
            "of ops without when: (give a block's nodes rules of their own)",
        )
    return False


def _op_layers(items: list[NodeSpec]) -> bool:
    """Whether a sequence's items are ops and sequences of ops, no block among them."""
    return all(
        item.kind not in ("block", "call") and (item.items is None or _op_layers(item.items))
        for item in items
    )


def apply_rules(rules: Rules, graph: Graph, sites: dict[str, list[str]]) -> dict[str, set[str]]:
    """Give each graph node its initialisers (`graph.init`): its op's rule, then its blocks'
    (outermost first), then its node's where that holds (`sites`: node name → the rules that
    cover it, innermost first). Returns the op rules' params no layer here has (op → params),
    for check_op_rules_reach."""
    covered: dict[str, set[str]] = {}
    group_ops: dict[str, set[str]] = {}
    for node in graph.own_state():
        inputs = [graph.type_of(name) for name in node.inputs]
        params = node.op.parameters(node.attrs, inputs)
        layer = _is_layer(node.op, node.attrs, inputs)
        by_op = rules.ops.get(node.op.name, {}) if layer else {}
        targets = _targets(rules, sites.get(node.name, []), node, params, layer)
        chosen = {
            param: (rule_target, initialiser)
            for rule_target, rule in [(node.op.name, by_op)]
            + [(target, rules.nodes[target]) for target in reversed(targets) if rules.holds(target)]
            for param, initialiser in rule.items()
        }
        for target in targets:
            _check_params(rules, target, set(rules.nodes[target]), params, node)
            group_ops.setdefault(target, set()).add(node.op.name)
        covered.setdefault(node.op.name, set()).update(by_op.keys() & params.keys())
        settled = {
            param: _settled(rules, rule_target, param, initialiser, params, node)
            for param, (rule_target, initialiser) in chosen.items()
            if param in params  # not on a layer without it (bias=False)
        }
        if settled:
            graph.init[node.name] = settled
    sited = {target for targets in sites.values() for target in targets}
    for target in sorted(rules.groups & rules.nodes.keys() - group_ops.keys()):
        if target in sited or target in rules.layer_ops:
            layers = f"{rules.layer_ops[target]} layer" if target in rules.layer_ops else "layer"
            raise SpecError(
                f"init.{target}: builds no {layers} with parameters to start",
                rules.locations[target],
            )
    for target, ops in group_ops.items():
        if len(ops) > 1:
            raise SpecError(
                f"init.{target}: its layers are of several ops ({', '.join(sorted(ops))}), "
                "which one rule cannot start alike",
                rules.locations[target],
                "start one op's layers (op: conv2d), or name one layer",
            )
    missing = {op: rule.keys() - covered.get(op, set()) for op, rule in rules.ops.items()}
    return {op: params for op, params in missing.items() if params}


def check_op_rules_reach(
    rules: Rules, unreached: dict[str, set[str]], classes: list[BlockClass]
) -> None:
    """Refuse an op's rule that starts params (`unreached`: op → params) no layer of these
    params has, unless a layer of the classes may have them at other params (a conv under
    `when: flag`, flag false; `bias: flag`)."""
    by_name = by_definition(classes)
    reached: dict[str, set[str]] = {}
    for block_class in classes:
        for layer in op_modules(block_class.children, by_name, blocks=False):
            if layer.op.name in unreached and _is_layer(layer.op, layer.attrs, layer.input_types):
                params = {name for variant in parameter_variants(layer) for name in variant}
                if params:
                    reached.setdefault(layer.op.name, set()).update(params)
    for op, wanted in unreached.items():
        missing = wanted - reached.get(op, set())
        if missing:
            raise SpecError(
                f"init.{op}: no {op} layer of the model has {', '.join(sorted(missing))}"
                if op in reached
                else f"init.{op}: the model has no {op} layer with parameters of its own",
                rules.locations[op],
            )


def _is_layer(op: Op, attrs: Any, inputs: list[TensorType]) -> bool:
    """Whether an op is built as a module of its own (a layer), not inline in its block."""
    return isinstance(op.lower_torch(attrs, inputs), ModuleCall)


def _targets(
    rules: Rules, sites: list[str], node: Node, params: dict[str, Any], layer: bool
) -> list[str]:
    """The rules that start a node's parameters: a group's (a block's, a sequence's) only
    where it has some, as a layer of its own."""
    targets = [target for target in sites if target not in rules.groups or (params and layer)]
    for target in targets:
        if not layer:
            raise SpecError(
                f"init.{target}: {node.name} keeps its parameters on its block (inline), "
                "which starts them itself",
                rules.locations[target],
            )
    return targets


def _check_params(
    rules: Rules, target: str, wanted: set[str], params: dict[str, Any], node: Node
) -> None:
    for param in wanted - params.keys():
        raise SpecError(
            f"init.{target}: {node.op.name} layer {node.name} has no param '{param}'"
            f" (it has {', '.join(params) or 'none'})",
            rules.locations[target],
            did_you_mean(param, params),
        )


def _settled(
    rules: Rules,
    target: str,
    param: str,
    initialiser: Initialiser,
    params: dict[str, Any],
    node: Node,
) -> Initialiser:
    """The initialiser with its argument evaluated at the layer's fans (those of its
    weight, or of the param itself when it has no weight)."""
    weight = params.get("weight", params[param])
    if (initialiser.reads_fans() or initialiser.kind.argument == "fan") and len(weight) < 2:
        raise SpecError(
            f"init.{target}.{param}: {initialiser.name} needs a weight's fans, and"
            f" {node.name}'s {param} has one axis",
            rules.locations[target],
        )
    argument = rules.arguments.get((target, param))
    if argument is None:
        return initialiser
    fans = torch_fans(tuple(concrete(size) for size in weight)) if len(weight) >= 2 else {}
    value = concrete(evaluate_checked(argument, fans, "float", f"init.{target}.{param}"))
    if not math.isfinite(value) or (initialiser.name != "constant" and value <= 0):
        wanted = "a finite number" if initialiser.name == "constant" else "a positive scale"
        raise SpecError(
            f"init.{target}.{param}: {initialiser.name} needs {wanted}, got {value!r}"
            f" at {node.name}",
            argument.location,
        )
    return Initialiser(initialiser.name, value)
