"""Elaboration: a model spec's bodies, blocks, repeats and conditions → the IR graph.

The same walk serves two purposes. Concretely (`elaborate`), it instantiates every node with
numbers, infers each node's shape with its op's rule as it goes (a block may use its
`in_channels`), and builds the flat IR graph. Symbolically (`archc.resolve.classes`), it runs
over `Sym` params to recover, per block definition, the expressions an emitted class needs.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from itertools import islice
from typing import Any, NamedTuple

from archc.boundary import local_name
from archc.errors import ArchcError, Location, ShapeError, SpecError, did_you_mean
from archc.ir.graph import BATCH, Graph, Node, TensorType, later_call
from archc.ir.modules import ModuleNode
from archc.ir.symbolic import Sym, choose, concrete, is_symbolic, source
from archc.limits import MAX_DEPTH, MAX_NODES, MAX_REPEAT
from archc.ops import REGISTRY
from archc.ops.base import Attrs, Op, OpChoice
from archc.resolve.init import Rules, apply_rules, init_rules
from archc.resolve.params import (
    bind_lets,
    block_args,
    channel_names,
    defaults,
    evaluate_checked,
    input_shape,
    model_args,
)
from archc.resolve.values import evaluate_names, op_attrs
from archc.spec.document import BlockDef, ModelSpec, NodeSpec, Value
from archc.train.plan import TrainPlan, train_plan

LOOP_VARIABLES = re.compile(r"\b(i|\w*channels)\b")  # `i`, a loop's width (`blocks_channels`)


class ModelBody(NamedTuple):
    """The model's body modules, what forward returns, and its detection stage: the modules
    of `postprocess:` and what each of the model's methods after forward returns."""

    children: list[ModuleNode]
    outputs: dict[str, tuple[Bound, str]]
    stage: tuple[ModuleNode, ...] = ()
    methods: dict[str, dict[str, tuple[Bound, str]]] = {}  # noqa: RUF012 (never changed)
    """Method name (`detect`, `loss`) → output name ("" for one value) → (value, local)."""


class Bound(NamedTuple):
    """A value in scope: its IR name and type."""

    name: str
    type: TensorType


@dataclass(frozen=True)
class Site:
    """One node being elaborated: its spec, its names, what it reads and its scope."""

    node: NodeSpec
    name: str
    """The local name: the node's, or its index within a repeat."""
    full_name: str
    """The parameter path, e.g. `layer1.0.conv1`."""
    refs: list[str]
    """Local names of the values it reads."""
    bounds: list[Bound]
    env: dict[str, Any]

    @property
    def input_types(self) -> list[TensorType]:
        return [bound.type for bound in self.bounds]


@dataclass
class Instance:
    """The first instance of a block definition: representative values for its class."""

    args: dict[str, Any]
    input_types: list[TensorType]


@dataclass
class Program:
    """The resolved model: its params after overrides, the IR graph, the block instances and
    the concrete module tree (the body as written, for diagrams)."""

    spec: ModelSpec
    args: dict[str, Any]
    overrides: dict[str, Any]
    graph: Graph
    instances: dict[str, Instance] = field(default_factory=dict)
    modules: list[ModuleNode] = field(default_factory=list)
    init: Rules = field(default_factory=Rules)
    """The spec's `init:` rules, checked."""
    train: TrainPlan | None = None
    """The spec's `train:` section, checked."""
    unreached_rules: dict[str, set[str]] = field(default_factory=dict)
    """Op init rules' params that no layer at these params has (op → params): refused by
    `check_op_rules_reach` unless the classes build them at other params."""


def elaborate(
    spec: ModelSpec, overrides: dict[str, str], image_size: tuple[int, int] | None = None
) -> Program:
    """Instantiate the model with concrete params: the IR graph with every shape inferred.
    `image_size` replaces the height and width of the spec's `input`."""
    args, applied = model_args(spec.root, overrides)
    env = bind_lets(spec.root, dict(args))
    shape = input_shape(spec.input, env)
    if image_size is not None:
        if len(shape) != 3:
            raise SpecError(
                f"--input sets an image's height and width, but input is {shape}",
                spec.input.location,
            )
        shape = [shape[0], *image_size]
    input_type = TensorType((BATCH, *shape))
    graph = Graph(spec.root.name, {"input": input_type})
    rules = init_rules(spec, args)
    elaborator = Elaborator(spec, graph, rules)
    body = elaborator.model_body(env, {"input": Bound("input", input_type)})
    modules = [*body.children, *body.stage]  # the module tree as drawn
    graph.outputs = {name: bound.name for name, (bound, _) in body.outputs.items()}
    graph.methods = {
        method: {name: bound.name for name, (bound, _) in returned.items()}
        for method, returned in body.methods.items()
    }
    unreached = apply_rules(rules, graph, elaborator.init_sites)
    train = None
    if spec.train:
        types = {name: graph.type_of(value) for name, value in graph.outputs.items()}
        train = train_plan(spec.train.raw, spec.train.location, args, types)
    instances = elaborator.instances
    return Program(spec, args, applied, graph, instances, modules, rules, train, unreached)


class Elaborator:
    """Walks bodies; with a graph it builds IR nodes, without one it only types (symbolic)."""

    def __init__(
        self, spec: ModelSpec, graph: Graph | None = None, rules: Rules | None = None
    ) -> None:
        self.spec = spec
        self.graph = graph
        self.rules = rules if rules is not None else Rules()
        self.init_sites: dict[str, list[str]] = {}
        """IR node → the init rules that cover it (a node's, its blocks'), innermost first."""
        self.instances: dict[str, Instance] = {}
        self.active_blocks: list[str] = []
        """The blocks being elaborated, outermost first (to report recursion by its chain)."""
        self.calls: dict[str, int] = {}
        """The later calls (`call:`) of each module so far, by its path."""
        self.copies = 1
        """How many times the node being elaborated is made: the product of the enclosing
        repeats' counts."""
        self.switched_off = 0
        """In a class, how many of the nodes being elaborated a `when:` switches off at the
        class's representative values: their symbolic attributes need not hold at those."""

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
        if definition.sequential:
            (name,) = definition.inputs
            children, outputs = self.items(definition.body, prefix, inputs[name], env)
            return children, outputs[-1], children[-1].name if children else name
        children, values, producers, last = self.scope(definition, env, inputs, prefix)
        output = values[last]
        if isinstance(output, list):
            raise SpecError(
                f"'{last}' is a list of values, which a body returns only with outputs:",
                definition.body[-1].location,
                "concat them, or name them in the block's outputs:",
            )
        return children, output, producers[last]

    def model_body(self, env: dict[str, Any], inputs: dict[str, Bound]) -> ModelBody:
        """The model's body, what it returns (output name → (value, local reference)) and
        its detection stage (`postprocess:`)."""
        root, stage = self.spec.root, self.spec.postprocess
        if not self.spec.outputs and not stage:
            children, output, producer = self.body(root, env, inputs, "")
            return ModelBody(children, {"": (output, producer)})
        children, values, producers, _ = self.scope(root, env, inputs, "", stage)
        staged = [child for child in children if any(child.spec is node for node in stage)]
        children = children[: len(children) - len(staged)]
        last_node = root.body[-1]  # what forward returns without outputs:
        outputs = self.spec.outputs or {"": Value(last_node.name, last_node.location)}
        returned = {}
        for name, ref in outputs.items():
            who = f"output '{name}'" if name else "the model's output (its last node)"
            value, local = resolve_ref(ref, values, producers, who)
            if isinstance(value, list):
                raise SpecError(
                    f"{who}: '{ref.raw}' is a list of values; name one (`{ref.raw}[0]`)",
                    ref.location,
                )
            returned[name] = (value, local)
        methods = self.stage_methods(stage, values, producers)
        return ModelBody(children, returned, tuple(staged), methods)

    @staticmethod
    def stage_methods(
        stage: list[NodeSpec], values: dict[str, Any], producers: dict[str, str]
    ) -> dict[str, dict[str, tuple[Bound, str]]]:
        """What each method after forward returns: a dict of its nodes' values by name
        (`loss`'s losses, `detect`'s detections and masks), or the one value of a method
        with one node (`detect`'s detections alone)."""
        methods: dict[str, dict[str, tuple[Bound, str]]] = {}
        for node in stage:
            op = REGISTRY.get(node.target) if node.kind in ("op", "") else None
            if op is not None and op.method is not None:
                returned = methods.setdefault(op.method, {})
                returned[node.name] = (values[node.name], producers[node.name])
        detections = methods.get("detect", {})
        if len(detections) == 1:
            methods["detect"] = {"": next(iter(detections.values()))}
        return methods

    def listed_body(
        self, definition: BlockDef, env: dict[str, Any], inputs: dict[str, Bound], prefix: str
    ) -> tuple[list[ModuleNode], list[Bound], list[str]]:
        """A body whose block returns `outputs:` as a list: its modules, the values (a list
        among them spliced in) and their local references."""
        children, values, producers, _ = self.scope(definition, env, inputs, prefix)
        bounds, locals_ = [], []
        for ref in definition.outputs:
            value, local = resolve_ref(ref, values, producers, f"block {definition.name}")
            bounds += _listed(value)
            locals_.append(local)
        return children, bounds, locals_

    def scope(
        self,
        definition: BlockDef,
        env: dict[str, Any],
        inputs: dict[str, Bound],
        prefix: str,
        stage: list[NodeSpec] | None = None,
    ) -> tuple[list[ModuleNode], dict[str, Any], dict[str, str], str]:
        """A mapping body's modules, every value it makes (a Bound, or a list of them for
        branches and blocks with outputs), the local name of each, and its last node's name;
        the model's `stage` (postprocess) nodes follow its body, reading its values."""
        values: dict[str, Bound | list[Bound]] = dict(inputs)
        producers = {name: name for name in inputs}
        previous = Value(definition.inputs[0], definition.location)
        children = []
        nodes = [*definition.body, *(stage or [])]
        for index, node in enumerate(nodes):
            refs = node.sources or [previous]
            self.check_stage(node, stage or [], refs)
            resolved = [resolve_ref(ref, values, producers, f"node '{node.name}'") for ref in refs]
            self.check_list_reads(node, refs, [value for value, _ in resolved])
            local_refs = [local for _, local in resolved]
            bounds = [bound for value, _ in resolved for bound in _listed(value)]
            # the nodes before it, which a call: or within: names (copied only then: linear)
            earlier = nodes[:index] if node.kind == "call" or node.within else []
            path = prefix + within(node, earlier, self.spec.blocks) + node.name
            site = Site(node, node.name, path, local_refs, bounds, env)
            if node.kind == "call":
                modules, values[node.name] = self.call(site, earlier)
            else:
                modules, values[node.name] = self.node(site)
                for module in modules:
                    module.within = node.within.raw if node.within else None
            producers[node.name] = node.name if modules else local_refs[0]
            children += modules
            previous = Value(node.name, node.location)
        return children, values, producers, previous.raw

    def check_stage(self, node: NodeSpec, stage: list[NodeSpec], refs: list[Value]) -> None:
        """Stage ops (anchors, detections) only in `postprocess:`; there, besides them, the
        modules they feed: a node that reads a stage value (a box head on pooled boxes)."""
        in_stage = any(node is staged for staged in stage)
        called = self.is_block(node) or node.items or node.kind == "call"
        op = None if called else REGISTRY.get(node.target)
        staged = {staged.name for staged in stage}
        fed = any(_referenced(ref) in staged for ref in refs)
        if in_stage and (op is None or not op.stage) and not fed:
            raise SpecError(
                f"postprocess: node '{node.name}' must be a stage op, or a module that reads "
                "one's value",
                node.location,
                "stage ops: " + ", ".join(name for name, op in REGISTRY.items() if op.stage),
            )
        if op is not None and op.stage and not in_stage:
            raise SpecError(
                f"node '{node.name}': {op.name} is a stage op, which runs after the network",
                node.location,
                "put it in the model's postprocess: section",
            )

    def check_list_reads(self, node: NodeSpec, refs: list[Value], values: list[Any]) -> None:
        """A list of values is read whole by branches, a shared node (one call per value),
        a block (one input per value) or an op that takes a list (concat)."""
        listed = next((ref for ref, value in zip(refs, values) if isinstance(value, list)), None)
        if listed is None or node.parallel or node.shared:
            return
        op = REGISTRY.get(node.target) if node.items is None else None
        if not self.is_block(node) and not (op and op.takes_list):
            raise SpecError(
                f"node '{node.name}': '{listed.raw}' is a list of values, which only branches, "
                "a block or an op that takes a list (concat) can read whole",
                node.location,
                f"name one value: {listed.raw}[0]",
            )

    def node(self, site: Site) -> tuple[list[ModuleNode], Bound]:
        """A body node's modules (none when switched off: the identity), marked frozen as
        it says, and its value."""
        condition = self.condition(site)
        if condition is False:
            return [], site.bounds[0]
        made_before = self.node_count()
        off = is_symbolic(condition) and not concrete(condition)
        self.switched_off += off
        try:
            modules, bound = self.present_node(site, condition)
        finally:
            self.switched_off -= off
        frozen = self.frozen(site)
        if frozen is True and self.graph is not None:
            self.graph.frozen.update(islice(self.graph.nodes, made_before, None))
        scope = self.active_blocks[-1] if self.active_blocks else self.spec.root.name
        self.cover(f"{scope}.{site.node.name}", made_before)
        for module in modules if frozen is not None else ():
            module.frozen = frozen
        return modules, bound

    def frozen(self, site: Site) -> Any:
        """None without `frozen:` or when it is false, else True or the (symbolic) condition."""
        if site.node.frozen is None:
            return None
        frozen = evaluate_checked(site.node.frozen, site.env, "bool", "frozen")
        return frozen if is_symbolic(frozen) else (True if frozen else None)

    def present_node(self, site: Site, condition: Any) -> tuple[list[ModuleNode], Bound]:
        """One module when single, a sequence or a loop; the copies themselves when a repeat
        names them (`names:`), since they are attributes of the enclosing block
        (`features.denseblock1.denselayer1`); a shared module called on each input."""
        if site.node.shared:
            return self.shared(site)
        if site.node.repeat is None:
            module, bound = self.unrepeated(site)
            if isinstance(bound, list):
                if condition is not None:
                    raise SpecError(
                        f"node '{site.node.name}': a list of values cannot be switched by when:",
                        site.node.when.location,
                    )
                return [module], bound
        else:
            named = site.node.names is not None
            prefix = site.full_name.removesuffix(site.name) if named else f"{site.full_name}."
            modules, made = self.repetitions(site, prefix, 0)
            bound = made[-1]
            if named and not self.symbolic:
                return modules, bound
            module = modules[0] if self.symbolic else self.sequence_module(site, modules, bound)
        module, bound = self.conditioned(site, condition, module, bound)
        return [module], bound

    def shared(self, site: Site) -> tuple[list[ModuleNode], list[Bound]]:
        """One module called on each input in turn. The first call's IR nodes hold the
        parameters; a later call k makes its nodes under `name@k`, each sharing the state of
        the first call's node at the same path, which must have the same shapes."""
        first_call, *later = site.bounds
        module, bound = self.unrepeated(replace(site, bounds=[first_call]))
        if isinstance(bound, list):
            raise SpecError(
                f"node '{site.node.name}': a shared block must return one value per call, "
                f"but {site.node.target} returns a list (outputs:)",
                site.node.location,
            )
        outputs = [bound]
        for call, value in enumerate(later, start=1):
            made_before = self.node_count()
            name = later_call(site.full_name, call)
            _, bound = self.unrepeated(replace(site, full_name=name, bounds=[value]))
            outputs.append(bound)
            if self.graph is not None:
                made = islice(self.graph.nodes.values(), made_before, None)
                self.check_shared_state(site, call, made)
        module.calls = len(site.bounds)
        module.inputs = site.refs
        return [module], outputs

    def call(self, site: Site, earlier: list[NodeSpec]) -> tuple[list[ModuleNode], Bound]:
        """`call: name`: the module an earlier op or block node made, run on this node's
        inputs (torchvision's RoI heads on the sampled proposals in training); its IR nodes
        are that node's under `name@k`, sharing their state, which must fit."""
        node = site.node
        called = next((spec for spec in earlier if spec.name == node.target), None)
        single = called is not None and called.kind in ("op", "block")
        if not single or called.repeat or called.when or called.shared:
            raise SpecError(
                f"node '{node.name}': call: names an earlier op or block node made once (no "
                f"repeat:, when: or shared:), got '{node.target}'",
                node.location,
                did_you_mean(node.target, [spec.name for spec in earlier]),
            )
        owner = called.within.raw if called.within else None
        path = site.full_name.removesuffix(site.name) + (f"{owner}." if owner else "") + called.name
        self.calls[path] = call = self.calls.get(path, 0) + 1
        full_name = later_call(path, call)
        made_before = self.node_count()
        module, bound = self.unrepeated(replace(site, node=called, full_name=full_name))
        if self.graph is not None:
            made = islice(self.graph.nodes.values(), made_before, None)
            self.check_shared_state(site, call, made)
        return [replace(module, name=node.name, spec=node, reuses=called.name, within=owner)], bound

    def check_shared_state(self, site: Site, call: int, nodes: Iterable[Node]) -> None:
        """A later call's nodes need state of the shapes the first call's nodes have."""
        for node in nodes:
            first = self.graph.nodes[node.shares]
            if self.graph.state_shapes(node.name) != self.graph.state_shapes(first.name):
                raise ShapeError(
                    f"{site.full_name}: a shared module's calls need parameters of one shape, "
                    f"but {first.name} reads {self.graph.type_of(first.inputs[0])} in the first "
                    f"call and {self.graph.type_of(node.inputs[0])} in call {call + 1}",
                    site.node.location,
                    "every input of a shared node must have the same channels",
                )

    def items(
        self,
        items: list[NodeSpec],
        prefix: str,
        bound: Bound,
        env: dict[str, Any],
        start: int = 0,
        parallel: bool = False,
    ) -> tuple[list[ModuleNode], list[Bound]]:
        """A numbered sequence's items, numbered from `start` as they are made: a repeated
        item joins the sequence once per iteration (a repeated `seq` with all its items) and
        an item switched off by `when:` takes no number. Returns the modules and the output;
        `parallel` (branches): every item reads `bound`, and the outputs are all of theirs."""
        children: list[ModuleNode] = []
        source, outputs = bound, []
        for item in items:
            index = str(start + len(children))
            site = self.item_site(item, index, prefix, source if parallel else bound, source, env)
            condition = self.condition(site)
            if condition is False:
                continue
            if item.repeat is None:
                module, bound = self.unrepeated(site)
                modules, made = [module], [bound]
            else:
                modules, made = self.repetitions(site, prefix, start + len(children), parallel)
                bound = made[-1]
            if is_symbolic(condition):
                modules[0], bound = self.conditioned(site, condition, modules[0], bound)
                made[-1] = bound
            children += modules
            outputs += made
        return children, outputs if parallel else [bound]

    @staticmethod
    def item_site(
        item: NodeSpec, index: str, prefix: str, previous: Bound, first: Bound, env: dict
    ) -> Site:
        """An item reads the item before it, or with `from:` also the sequence's input."""
        if item.sources is None:
            return Site(item, index, prefix + index, ["previous"], [previous], env)
        scope = {"previous": previous, "input": first}
        refs = [source.raw for source in item.sources]
        return Site(item, index, prefix + index, refs, [scope[ref] for ref in refs], env)

    def condition(self, site: Site) -> Any:
        """None without `when:`, False when it is off, else the (symbolic) condition."""
        node = site.node
        if node.when is None:
            return None
        condition = evaluate_checked(node.when, site.env, "bool", "when")
        if is_symbolic(condition):
            return condition
        return None if condition else False

    def conditioned(
        self, site: Site, condition: Any, module: ModuleNode, bound: Bound
    ) -> tuple[ModuleNode, Bound]:
        if not is_symbolic(condition):
            return module, bound
        module.condition = condition
        module.output = self.conditional_type(site, condition, bound.type)
        return module, Bound(bound.name, module.output)

    def unrepeated(self, site: Site) -> tuple[ModuleNode, Any]:
        """One op, block or sequence (a Bound), or branches (a list of Bounds)."""
        node = site.node
        if node.items is None:
            return self.single(site)
        if node.parallel:
            return self.branches(site)
        children, outputs = self.items(node.items, f"{site.full_name}.", site.bounds[0], site.env)
        return self.sequence_module(site, children, outputs[-1]), outputs[-1]

    def branches(self, site: Site) -> tuple[ModuleNode, list[Bound]]:
        """Branches: every item reads the node's input, or with several inputs item k reads
        input k (a single item is copied for each, with `i` the input's index, as torchvision
        builds an FPN's convs)."""
        node, sources = site.node, site.bounds
        prefix = f"{site.full_name}."
        if len(sources) == 1:
            children, outputs = self.items(node.items, prefix, sources[0], site.env, parallel=True)
            if any(item.repeat is not None or item.when is not None for item in node.items):
                outputs = UncountedValues(outputs)
            return self.sequence_module(site, children, outputs[0], "branches"), outputs
        copied = len(node.items) == 1
        items = node.items * len(sources) if copied else node.items
        if len(items) != len(sources) or any(item.repeat is not None for item in items):
            raise SpecError(
                f"node '{node.name}': {len(sources)} inputs need one branch each (or one to "
                f"copy for each, without repeat:), got {len(node.items)}",
                node.location,
            )
        children, outputs = [], []
        for index, (item, value) in enumerate(zip(items, sources)):
            env = {**site.env, "i": index} if copied else site.env
            made, bound = self.items([item], prefix, value, env, start=index)
            children += made
            outputs += bound
        if len(children) != len(sources):
            raise SpecError(
                f"node '{node.name}': a branch over an input cannot be switched off by when:",
                node.location,
            )
        return self.sequence_module(site, children, outputs[0], "branches"), outputs

    def sequence_module(
        self, site: Site, children: list[ModuleNode], bound: Bound, kind: str = "sequence"
    ) -> ModuleNode:
        """A sequence reads its first input; branches may read several."""
        return ModuleNode(
            site.name,
            site.node,
            kind,
            site.refs,
            site.input_types if kind == "branches" else site.input_types[:1],
            bound.type,
            children=children,
        )

    def conditional_type(self, site: Site, condition: Sym, output: TensorType) -> TensorType:
        """The type of a node that may be the identity: each dim is one or the other."""
        given = site.input_types[0]
        if output.rank != given.rank:
            raise SpecError(
                f"node '{site.node.name}': a conditional node must keep its input's rank",
                site.node.when.location,
            )
        return output.with_shape(
            tuple(choose(condition, a, b) for a, b in zip(output.shape, given.shape))
        )

    def repetitions(
        self, site: Site, prefix: str, start: int, parallel: bool = False
    ) -> tuple[list[ModuleNode], list[Bound]]:
        """A repeated node's iterations, numbered on from `start` under `prefix`, and the
        output of each (in parallel, each reads the node's input); in a class, one symbolic
        loop instead."""
        node = site.node
        count = evaluate_checked(node.repeat, site.env, "int", "repeat")
        if not 1 <= concrete(count) <= MAX_REPEAT:
            raise SpecError(
                f"repeat: expected a count from 1 to {MAX_REPEAT:,}, got {concrete(count):,}",
                node.repeat.location,
            )
        if self.symbolic:
            modules, bound = self.loop(site, count, prefix, parallel)
            return modules, [bound]
        if self.copies * count > MAX_NODES:
            raise SpecError(
                f"repeat: {count:,} copies inside repeats that make {self.copies:,} make more "
                f"than the limit of {MAX_NODES:,} nodes",
                node.repeat.location,
            )
        self.copies *= count
        try:
            return self.copies_of(site, count, prefix, start, parallel)
        finally:
            self.copies //= count

    def copies_of(
        self, site: Site, count: int, prefix: str, start: int, parallel: bool
    ) -> tuple[list[ModuleNode], list[Bound]]:
        """The concrete iterations of a repeated node."""
        node = site.node
        modules, made, bound = [], [], site.bounds[0]
        for index in range(count):
            env = {**site.env, "i": index}
            reads = site.bounds[0] if parallel else bound
            if node.items is not None:
                number = start + len(modules)
                group, outputs = self.items(node.items, prefix, reads, env, number, parallel)
                modules += group
                made += outputs
                bound = outputs[-1]
                continue
            number = str(start + len(modules))
            if node.names is not None:
                number = evaluate_names(node.names, env)
            copy = replace(site, name=number, full_name=prefix + number, bounds=[reads], env=env)
            module, bound = self.single(copy)
            modules.append(module)
            made.append(bound)
        return modules, made

    def loop(
        self, site: Site, count: Any, prefix: str, parallel: bool = False
    ) -> tuple[list[ModuleNode], Bound]:
        """One symbolic iteration `i`, reading `channels` (the previous iteration's output);
        in parallel, every iteration reads the input, and the output stands for all of theirs
        side by side (as a concat reads them)."""
        first = site.input_types[0]
        channels = Sym("channels", concrete(first.channels))
        iteration_input = (
            site.bounds[0]
            if parallel
            else Bound(site.bounds[0].name, first.with_channels(channels))
        )
        env = {**site.env, "i": Sym("i", 0)}
        if site.node.items is not None:
            body, outputs = self.items(site.node.items, prefix, iteration_input, env, 0, parallel)
            bound = outputs[-1]
        else:
            iteration = replace(
                site, name="0", full_name=prefix + "0", bounds=[iteration_input], env=env
            )
            module, bound = self.single(iteration)
            body = [module]
        out_channels = bound.type.channels
        if parallel:
            out_channels = count * out_channels
        elif source(out_channels) == "channels":  # each iteration keeps its width
            out_channels = first.channels
        elif self.names_iteration_values(out_channels, site):
            # named after the loop: a later loop reuses `channels` for its own iterations
            out_channels = Sym(loop_width_name(site.node.name), concrete(out_channels))
        output = bound.type.with_channels(out_channels)
        names = site.node.names
        module = ModuleNode(
            site.node.name,
            site.node,
            "loop",
            site.refs,
            [first],
            output,
            children=body,
            count=count,
            loop_output=None if parallel else bound.type.channels,
            names=None if names is None else source(evaluate_names(names, env)),
        )
        return [module], Bound(bound.name, output)

    @staticmethod
    def names_iteration_values(width: Any, site: Site) -> bool:
        """Whether a loop's iteration width names what only the loop has (its `channels` and
        `i`, or the width of a loop inside it), rather than widths in scope before it (a
        width the block was given, as `out: in_channels` where in_channels is a loop's)."""
        before = [site.input_types[0].channels, *site.env.values()]
        known = " ".join(source(value) for value in before if is_symbolic(value))
        outer = set(LOOP_VARIABLES.findall(known)) - {"channels", "i"}
        return bool(set(LOOP_VARIABLES.findall(source(width))) - outer)

    def is_block(self, node: NodeSpec) -> bool:
        """Whether a node instantiates a block (written out, or by the `Stem`-style shorthand)."""
        return node.kind == "block" or (not node.kind and node.target in self.spec.blocks)

    def single(self, site: Site) -> tuple[ModuleNode, Bound]:
        return self.block(site) if self.is_block(site.node) else self.op(site)

    def op(self, site: Site) -> tuple[ModuleNode, Bound]:
        op, choice, chosen_by = self.lookup_op(site)
        attrs = self.op_attrs(site, op, choice, self.switched_off > 0)
        types = site.input_types
        if not self.symbolic:
            problems = op.check(attrs, types)
            if problems:
                raise _picked_here(
                    ShapeError(
                        f"{site.full_name} ({op.name}): {problems[0]}",
                        _blamed(site.node, problems[0]),
                    ),
                    choice,
                )
        try:
            output = op.infer(attrs, types)
        except Exception:
            if self.switched_off:  # an attribute that holds only where the node is on
                self.op_attrs(site, op, choice)  # refused as it is, located
            raise
        if self.graph is not None:
            if len(self.graph.nodes) >= MAX_NODES:
                raise SpecError(f"the model has more than {MAX_NODES:,} nodes", site.node.location)
            if site.full_name in self.graph.nodes:  # two copies named alike by `names:`
                raise SpecError(
                    f"two nodes are named {site.full_name}",
                    site.node.location,
                    "a names: template must give each copy a name of its own",
                )
            inputs = [bound.name for bound in site.bounds]
            self.graph.add(Node(site.full_name, op, attrs, inputs, output, site.node.location))
        module = ModuleNode(
            site.name,
            site.node,
            "op",
            site.refs,
            types,
            output,
            op=op,
            attrs=attrs,
            chosen_by=chosen_by,
        )
        return module, Bound(site.full_name, output)

    @staticmethod
    def leaks_a_loop_variable(output: Bound, given: list[Any]) -> bool:
        """Whether a block's output width names a loop variable of its own body (one the
        caller did not pass in, so cannot know)."""
        names = set(LOOP_VARIABLES.findall(source(output.type.channels)))
        passed = set(LOOP_VARIABLES.findall(" ".join(source(value) for value in given)))
        return bool(names - passed)

    def promised_output(
        self, site: Site, definition: BlockDef, env: dict[str, Any], output: Bound
    ) -> Bound:
        """A block's declared `output_channels`: it must equal what its body infers, and it
        is the simpler expression to write where the output feeds a loop."""
        promise = definition.output_channels
        channels = evaluate_checked(promise, env, "int", "output_channels")
        # Checked on the concrete graph: in a class, a loop's width stands for one iteration.
        if not self.symbolic and concrete(channels) != concrete(output.type.channels):
            raise ShapeError(
                f"{site.full_name}: block {definition.name} promises output_channels "
                f"{concrete(channels)}, but its body gives {concrete(output.type.channels)}",
                promise.location,
            )
        return Bound(output.name, output.type.with_channels(channels))

    def lookup_op(self, site: Site) -> tuple[Op, OpChoice | None, str | None]:
        """The node's op; in a class, the `op` param that picks it (`bn1: norm`), with what
        the param holds, and the param's name in code."""
        node = site.node
        chosen = site.env.get(node.target) if node.target not in REGISTRY else None
        picked = concrete(chosen)
        choice = picked if isinstance(picked, OpChoice) else None
        if chosen is not None and choice is None:
            typed = f"{node.target}: {{type: op, default: {picked}}}"
            raise SpecError(
                f"node '{node.name}': '{node.target}' is {picked!r}, not an op",
                node.location,
                f"to pick an op, declare the param as one: {typed}" if picked in REGISTRY else "",
            )
        chosen_by = source(chosen) if is_symbolic(chosen) else None
        name = node.target if choice is None else choice.name
        op = REGISTRY.get(name)
        if op is None and choice is not None:
            raise SpecError(
                f"node '{node.name}': '{node.target}' is {name!r}, not an op",
                node.location,
                did_you_mean(name, REGISTRY),
            )
        if choice is not None and choice.attrs is None:
            raise _picked_here(
                SpecError(
                    f"node '{node.name}': the param '{node.target}' picks {op.name} without the "
                    "attributes it needs",
                    node.location,
                    f"give them with the op where the param is set: {{op: {op.name}, …}}",
                ),
                choice,
            )
        if (
            choice is not None
            and site.bounds
            and not op.pickable(choice.attrs, site.bounds[0].type)
        ):
            raise _picked_here(
                SpecError(
                    f"node '{node.name}': the param '{node.target}' picks {op.name}, which is not "
                    f"a module built from its input width alone in every backend, of the class it "
                    f"is for an image, for this {site.bounds[0].type} input",
                    node.location,
                    "a param can pick a norm for images (batch_norm, frozen_batch_norm, "
                    "layer_norm, {op: group_norm, groups: …}); write other ops out",
                ),
                choice,
            )
        if choice is not None and node.args:
            raise SpecError(
                f"node '{node.name}': an op picked by the param '{node.target}' takes its "
                "attributes from the param, not the node",
                node.location,
                f"set them where the param is given: {node.target}: {{op: {op.name}, …}}",
            )
        if op is None:
            raise SpecError(
                f"node '{node.name}': unknown op '{node.target}'",
                node.location,
                did_you_mean(node.target, [*REGISTRY, *self.spec.blocks]),
            )
        count = len(site.bounds)
        if (count != op.arity) if op.arity else (count < 2):
            wanted = f"{op.arity} input{'s' * (op.arity != 1)}" if op.arity else "2 or more inputs"
            raise SpecError(
                f"{site.full_name} ({op.name}) takes {wanted}, got {count}", node.location
            )
        return op, choice, chosen_by

    def op_attrs(
        self, site: Site, op: Op, choice: OpChoice | None, switched_off: bool = False
    ) -> Attrs:
        """The node's attributes; a picked op's are the param's (`{op: batch_norm, eps: …}`);
        `switched_off`: its symbolic ones unchecked at these values (build_attrs)."""
        if choice is not None:
            return choice.attrs
        where = f"{site.full_name} ({op.name})"
        return op_attrs(op, site.node.args, site.env, where, site.node.location, switched_off)

    def block(self, site: Site) -> tuple[ModuleNode, Bound | list[Bound]]:
        node = site.node
        definition = self.spec.blocks.get(node.target)
        if definition is None:
            raise SpecError(
                f"node '{node.name}': unknown block '{node.target}'",
                node.location,
                did_you_mean(node.target, self.spec.blocks),
            )
        if definition.name in self.active_blocks:
            chain = " → ".join([*self.active_blocks, definition.name])
            raise SpecError(
                f"block {definition.name} contains itself: {chain}",
                node.location,
                "a block cannot use itself, directly or through other blocks",
            )
        if len(self.active_blocks) >= MAX_DEPTH:
            raise SpecError(
                f"blocks nested more than {MAX_DEPTH} deep", node.location, "the limit of nesting"
            )
        made_before = self.node_count()
        self.active_blocks.append(definition.name)
        try:
            made = self.block_body(site, definition)
        finally:
            self.active_blocks.pop()
        self.cover(definition.name, made_before)
        return made

    def node_count(self) -> int:
        """The IR nodes made so far (none while only typing)."""
        return len(self.graph.nodes) if self.graph is not None else 0

    def cover(self, target: str, made_before: int) -> None:
        """The layers made since the graph had `made_before` nodes are covered by the init rule
        `target` too where it has one (a block's or a node's), after the rules inside."""
        if target not in self.rules.nodes or self.graph is None:
            return
        for name in islice(self.graph.nodes, made_before, None):
            if self.rules.covers(target, self.graph.nodes[name].op.name):
                self.init_sites.setdefault(name, []).append(target)

    def block_body(
        self, site: Site, definition: BlockDef
    ) -> tuple[ModuleNode, Bound | list[Bound]]:
        node = site.node
        args = block_args(node, definition, site.env, site.full_name)
        if len(site.bounds) != len(definition.inputs):
            raise SpecError(
                f"{site.full_name}: block {definition.name} takes {len(definition.inputs)} "
                f"input(s) ({', '.join(definition.inputs)}), got {len(site.bounds)}",
                node.location,
            )
        inner = {**defaults(definition), **args}
        # Representative values for the block's class: concrete ones, or in a class those of
        # the class's own representatives (for a block only a switched-off branch uses).
        self.instances.setdefault(
            definition.name,
            Instance(concrete(inner), [_concrete_type(kind) for kind in site.input_types]),
        )
        inner.update(zip(channel_names(definition), (t.channels for t in site.input_types)))
        bind_lets(definition, inner)
        inputs = dict(zip(definition.inputs, site.bounds))
        prefix = site.full_name + "."
        if definition.outputs is not None:  # a list of values
            children, value, _ = self.listed_body(definition, inner, inputs, prefix)
            output_type = value[-1].type
        else:
            children, value, _ = self.body(definition, inner, inputs, prefix)
            value = self.checked_output(site, definition, inner, args, value)
            output_type = value.type
        module = ModuleNode(
            site.name,
            node,
            "block",
            site.refs,
            site.input_types,
            output_type,
            block=definition,
            args=args,
            children=children,
        )
        return module, value

    def checked_output(
        self, site: Site, definition: BlockDef, env: dict[str, Any], args: dict, output: Bound
    ) -> Bound:
        """A block's output with the width it promises, or its own where the caller can
        name it."""
        if definition.output_channels is not None:
            return self.promised_output(site, definition, env, output)
        if self.leaks_a_loop_variable(
            output, [*args.values(), *(kind.channels for kind in site.input_types)]
        ):
            raise SpecError(
                f"{site.full_name}: the output width of block {definition.name} comes out of a "
                "loop, which its caller cannot name",
                definition.location,
                "declare it with output_channels: <expression of the params>",
            )
        return output


INDEXED = re.compile(r"([\w-]+)\[(-?\d+)\]")


class UncountedValues(list):
    """The values of branches whose number a repeat or a condition decides: read whole (a
    concat), never one by index, since a class cannot know which one an index would be."""


def within(node: NodeSpec, earlier: list[NodeSpec], blocks: dict[str, BlockDef]) -> str:
    """The path of the module a node's module is kept in (`within: roi_heads` →
    `roi_heads.`), or '' for its own place: an earlier block node made once, whose block is
    not a sequence (which would run what it holds) and has no node of this one's name."""
    if node.within is None:
        return ""
    owner = next((spec for spec in earlier if spec.name == node.within.raw), None)
    block = owner is not None and owner.kind in ("block", "") and not owner.items
    definition = blocks.get(owner.target) if block else None
    made_once = owner is not None and not (owner.repeat or owner.when or owner.shared)
    if definition is None or definition.sequential or not made_once or owner.within:
        raise SpecError(
            f"node '{node.name}': within: names an earlier block node made once (no repeat:, "
            f"when:, shared: or within:) whose block is not a sequence, got '{node.within.raw}'",
            node.within.location,
            did_you_mean(node.within.raw, [spec.name for spec in earlier]),
        )
    if any(child.name == node.name for child in definition.body):
        raise SpecError(
            f"node '{node.name}': block {definition.name} of '{owner.name}' has a node of "
            "that name already",
            node.within.location,
        )
    return f"{owner.name}."


def _referenced(ref: Value) -> str:
    """The node a reference reads: `roi_heads` of `roi_heads[0]`."""
    indexed = INDEXED.fullmatch(ref.raw)
    return indexed.group(1) if indexed else ref.raw


def resolve_ref(
    ref: Value, values: dict[str, Any], producers: dict[str, str], who: str
) -> tuple[Bound | list[Bound], str]:
    """What a reference reads and its local name: a value in scope, or one value of a list
    (`inner_blocks[3]`: branches, or a block's outputs)."""
    indexed = INDEXED.fullmatch(ref.raw)
    name = _referenced(ref)
    if name not in values:
        hint = did_you_mean(name, values) or "from: names an earlier node or an input"
        raise SpecError(f"{who}: unknown reference '{name}'", ref.location, hint)
    value = values[name]
    if indexed is None:
        return value, producers[name]
    index = int(indexed.group(2))
    if not isinstance(value, list):
        raise SpecError(f"{who}: '{name}' is one value, not a list to index", ref.location)
    if isinstance(value, UncountedValues):
        raise SpecError(
            f"{who}: '{name}' has a repeated or conditional branch, so its values cannot be "
            "read by index",
            ref.location,
            "read them whole (a concat), or give each branch its own item",
        )
    if not -len(value) <= index < len(value):
        raise SpecError(
            f"{who}: '{ref.raw}' is out of range: {name} has {len(value)} values", ref.location
        )
    return value[index], f"{producers[name]}[{index}]"


def loop_width_name(node: str) -> str:
    """The local name of a loop's output width in a class (`denseblock1_channels`)."""
    return f"{local_name(node)}_channels"


def _picked_here(error: ArchcError, choice: OpChoice | None) -> ArchcError:
    """`error` at a node that builds what an `op` param picks, noting where the spec gives
    the param that value (a call or a default, often far from the node)."""
    if choice is not None and choice.location is not None:
        error.notes.append((choice.location, f"the op is picked here: {choice}"))
    return error


def _blamed(node: NodeSpec, problem: str) -> Location:
    """Where a constraint's message points: the attribute it starts with (`groups=3 must
    divide …`, `padding must be …`) where the spec writes it, else the node."""
    first = re.match(r"\w+", problem)
    value = node.args.get(first.group()) if first else None
    return value.location if value is not None else node.location


def _listed(value: Bound | list[Bound]) -> list[Bound]:
    return value if isinstance(value, list) else [value]


def _concrete_type(kind: TensorType) -> TensorType:
    return kind.with_shape(tuple(concrete(dim) for dim in kind.shape))
