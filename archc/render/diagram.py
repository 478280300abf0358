"""`archc diagram`: the module tree drawn with Graphviz, from the IR and its costs alone.

Blocks and sequences become nested clusters down to `depth` levels and closed boxes below it;
a run of identical consecutive blocks (same definition, arguments and input shapes) is drawn
once with a ×N badge. Edges are the IR's values, labelled with their types; every number shown
comes from the cost pass. The DOT text is ours; `dot` only lays it out.
"""

from __future__ import annotations

import html
import re
import shutil
import subprocess
from collections.abc import Collection, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from archc.errors import ArchcError, InternalError
from archc.ir.graph import TensorType, first_call
from archc.ir.modules import ModuleNode
from archc.ir.symbolic import concrete
from archc.passes.cost import TIER_NOTE, Cost, CostReport
from archc.resolve.elaborate import Program

NODE_BUDGET = 20
"""The default depth is the deepest whose drawing has at most this many boxes (before the
first block of each kind is opened)."""
MAX_ASPECT = 2.0
"""A default drawing taller than this many times its width wraps its longest list of parts
into columns (MAX_COLUMNS at most)."""
MAX_COLUMNS = 4
OPEN_BUDGET = 16
"""Boxes at most in the drawing of a block opened as the first of its kind."""
MAX_PARTS = 100
"""Parts drawn in one cluster at most: the middle of a longer sequence (a written-out body of
thousands of ops) is one box that names the span and totals its costs."""

FAMILY_COLOURS = {
    "conv": "#9ecae1",
    "linear": "#fdae6b",
    "attention": "#fb9a99",
    "tokens": "#cab2d6",
    "norm": "#fee391",
    "activation": "#c7e9c0",
    "pool": "#dadaeb",
    "resize": "#d9f0d3",
    "tensor": "#e0e0e0",
    "regularization": "#f0f0f0",
}
HEAT = ((255, 247, 236), (227, 74, 51))
"""Block fill from no cost to the costliest block drawn."""
FORMATS = ("svg", "png", "pdf", "dot")
CHANGED = ('color="#d7301f"', "penwidth=3")
"""The border of a block that `archc diff` found changed."""


@dataclass
class Part:
    """A drawn element: a box (an op, a closed block, a run of blocks) or a cluster."""

    module: ModuleNode
    members: list[str]
    """Paths of the identical consecutive modules it stands for; the first names the part."""
    prefix: str
    """The enclosing cluster's path and a dot ('' at the top)."""
    children: list[Part] | None = None
    """The representative's parts when drawn as a cluster; None for a box."""
    elided: bool = False
    """A span of unlike modules left out of a long sequence, drawn as one box."""
    fused: list[ModuleNode] = field(default_factory=list)
    """The norm and activation after a conv or linear, drawn in its box."""
    varies: str = ""
    """A run's arguments that differ between its blocks (Swin's `shift 0, 3`)."""

    @property
    def path(self) -> str:
        return self.members[0]

    @property
    def badge(self) -> str:
        return f"×{len(self.members)}" if len(self.members) > 1 and not self.elided else ""

    @property
    def title(self) -> str:
        """The name within the enclosing cluster (a bare index after its parent's name: mlp.0);
        a run as a range (layer1.1–2, encoder_layer_0–11)."""
        first = self.members[0].removeprefix(self.prefix)
        if first.isdigit():
            first = ".".join(self.members[0].split(".")[-2:])
        if self.fused:
            return " · ".join([first, *(module.name for module in self.fused)])
        if len(self.members) == 1:
            return first
        last = self.members[-1].rpartition(".")[2]
        stem, digits = re.fullmatch(r"(.*?)(\d*)", last).groups()
        shared_stem = digits and first.rpartition(".")[2].startswith(stem)
        return f"{first}–{digits if shared_stem else last}"


@dataclass
class Edge:
    source: str
    target: str
    value: TensorType
    skip: bool = False


@dataclass
class Drawing:
    """What will be drawn, before any DOT: parts, the box each IR node belongs to, edges."""

    parts: list[Part]
    owner: dict[str, str] = field(default_factory=dict)
    """IR node name → id of the box drawn for it."""
    edges: list[Edge] = field(default_factory=list)
    wrap: tuple[str, int] | None = None
    """The cluster ('' for the top level) whose parts are laid out in columns, and how many."""
    folded: bool = False
    """Drawn as a U: the ends of each fold (see `folds`) on one rank."""


def model_parts(
    program: Program, costs: CostReport, depth: int, open_each: bool = False
) -> list[Part]:
    """The parts drawn: clusters down to `depth` levels; with `open_each`, the first block
    of each definition below that level is opened too, all the way down, so that every kind
    of block is shown once inside."""
    opened: set[str] | None = set() if open_each else None
    return _parts(program.modules, "", 1, depth, _Signatures(costs), opened)


def _parts(
    modules: list[ModuleNode],
    prefix: str,
    level: int,
    depth: int,
    signature: _Signatures,
    opened: set[str] | None,
) -> list[Part]:
    def part(run: list[tuple[ModuleNode, str]]) -> Part:
        module, path = run[0]
        varies = _varying_args([member for member, _ in run])
        drawn = Part(module, [member for _, member in run], prefix, varies=varies)
        inner = depth
        closed = module.kind == "block" and level >= depth
        if closed and opened is not None and module.block.name not in opened:
            opened.add(module.block.name)  # the first of its kind: opened
            inner = _opening_depth(module, path, level, signature)
        if module.kind != "op" and level < inner:
            children = module.children
            drawn.children = _parts(children, path + ".", level + 1, inner, signature, opened)
        return drawn

    # a later call (`call:`) is its module's box, fed by every input, as a shared module's
    runs = _runs([module for module in modules if module.reuses is None], prefix, signature)
    if len(runs) <= MAX_PARTS:
        return _fuse([part(run) for run in runs])
    kept = MAX_PARTS // 2
    left_out = [path for run in runs[kept:-kept] for _, path in run]
    elided = Part(runs[kept][0][0], left_out, prefix, elided=True)
    return _fuse([*map(part, runs[:kept]), elided, *map(part, runs[-kept:])])


def _varying_args(modules: list[ModuleNode]) -> str:
    """The arguments that differ between the blocks of a run, as its badge says them: a
    range for numbers that only grow or shrink, else the values (`shift 0, 3 · p 0.0727–0.164`)."""
    shown = []
    for key in modules[0].args:
        values = [module.args.get(key) for module in modules]
        distinct = list(dict.fromkeys(map(_short, values)))
        if len(distinct) == 1:
            continue
        numbers = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)
        ordered = numbers and (values == sorted(values) or values == sorted(values, reverse=True))
        if ordered and len(distinct) > 2:
            shown.append(f"{key} {distinct[0]}–{distinct[-1]}")
        else:
            shown.append(f"{key} {', '.join(distinct[:4])}{', …' if len(distinct) > 4 else ''}")
    return " · ".join(shown)


def _short(value: object) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def _opening_depth(module: ModuleNode, path: str, level: int, signature: _Signatures) -> int:
    """How deep the first block of a kind is opened: as far as its drawing stays within
    OPEN_BUDGET boxes, one level at least (its kinds of blocks inside open in turn)."""
    levels = range(level + 2, level + depth_of(module.children) + 2)
    fitting = [
        inner
        for inner in levels
        if count_boxes(_parts(module.children, path + ".", level + 1, inner, signature, None))
        <= OPEN_BUDGET
    ]
    return max(fitting, default=level + 1)


FUSED_AFTER = {"conv": ("norm", "activation"), "linear": ("norm", "activation")}
"""The families drawn in the box of the op before them, in this order (conv + BN + ReLU)."""


def _fuse(parts: list[Part]) -> list[Part]:
    """A conv or linear with the norm and activation that read it straight after it, as
    one box: the unit a paper draws."""
    drawn: list[Part] = []
    for part in parts:
        head = drawn[-1] if drawn else None
        last = head.fused[-1] if head and head.fused else head.module if head else None
        follows = (
            head is not None
            and not head.elided
            and head.children is None
            and head.module.kind == "op"
            and part.children is None
            and part.module.kind == "op"
            and not part.elided
            and part.module.inputs in ([last.name], ["previous"])  # a sequence's next item
        )
        if follows:
            order = FUSED_AFTER.get(head.module.op.family, ())
            families = [module.op.family for module in [*head.fused, part.module]]
            if families == [family for family in order if family in families]:
                head.fused.append(part.module)
                continue
        drawn.append(part)
    return drawn


def _runs(
    modules: list[ModuleNode], prefix: str, signature: _Signatures
) -> list[list[tuple[ModuleNode, str]]]:
    """Consecutive blocks grouped while they are alike: one definition, the same input and
    output types, the same ops under the same names, the same params and MACs (Swin's blocks
    differ only in their shift and drop rate, and are drawn as one run, the badge saying
    so)."""
    runs: list[list[tuple[ModuleNode, str]]] = []
    for module in modules:
        path = prefix + module.name
        if runs and signature(runs[-1][0]) == signature((module, path)) is not None:
            runs[-1].append((module, path))
        else:
            runs.append([(module, path)])
    return runs


class _Signatures:
    """What makes two blocks alike for a run; None for anything but a block."""

    def __init__(self, costs: CostReport) -> None:
        self.costs = costs
        self.known: dict[str, tuple | None] = {}

    def __call__(self, entry: tuple[ModuleNode, str]) -> tuple | None:
        module, path = entry
        if path not in self.known:
            self.known[path] = self.signature(module, path) if module.kind == "block" else None
        return self.known[path]

    def signature(self, module: ModuleNode, path: str) -> tuple:
        nodes = frozenset(
            (node.name.removeprefix(path), node.op)
            for node in self.costs.below(path)
            if node.name != path
        )
        cost = self.costs.under([path])
        types = (tuple(module.input_types), module.output)
        return module.block.name, types, nodes, cost.params, cost.buffers, cost.macs


def depth_of(modules: list[ModuleNode]) -> int:
    """Levels of nesting in the module tree (1 when every top-level node is an op)."""
    return 1 + max((depth_of(m.children) for m in modules if m.children), default=0)


def count_boxes(parts: list[Part]) -> int:
    return sum(1 if part.children is None else count_boxes(part.children) for part in parts)


def default_depth(program: Program, costs: CostReport) -> int:
    """The deepest level whose drawing stays within NODE_BUDGET boxes (at least 1), before
    the first block of each kind is opened."""
    fitting = [
        depth
        for depth in range(1, depth_of(program.modules) + 1)
        if count_boxes(model_parts(program, costs, depth)) <= NODE_BUDGET
    ]
    return max(fitting, default=1)


def layout_drawing(
    program: Program, costs: CostReport, depth: int, open_each: bool = False
) -> Drawing:
    drawing = Drawing(model_parts(program, costs, depth, open_each))
    aliases: dict[str, str] = {}
    groups: dict[str, tuple[str, int]] = {}
    for part in _walk(drawing.parts):
        for index, member in enumerate(part.members):
            groups[member] = (part.path, index)
            if part.children is None:
                drawing.owner[member] = part.path
            else:
                aliases[member] = part.path
        for module in part.fused:
            drawing.owner[part.prefix + module.name] = part.path
    graph = program.graph
    locate = _Locator(drawing.owner, aliases, groups)
    seen: set[tuple[str, str]] = set()
    for node in graph.nodes.values():
        target, target_groups = locate(node.name)
        sizes = node.op.size_only_inputs
        for value in (value for at, value in enumerate(node.inputs) if at not in sizes):
            source, source_groups = locate(value) if value in graph.nodes else (value, {})
            crosses_members = any(
                source_groups[group] != index
                for group, index in target_groups.items()
                if group in source_groups
            )
            if source == target or crosses_members or (source, target) in seen:
                continue
            seen.add((source, target))
            drawing.edges.append(Edge(source, target, graph.type_of(value)))
    for value in graph.outputs.values():
        output, _ = locate(value)
        drawing.edges.append(Edge(output, "output", graph.type_of(value)))
    _mark_skips(drawing.edges)
    return drawing


def _walk(parts: list[Part]) -> Iterator[Part]:
    for part in parts:
        yield part
        if part.children is not None:
            yield from _walk(part.children)


class _Locator:
    """An IR node's box, and the runs it lies in (run → which member)."""

    def __init__(
        self, owner: dict[str, str], aliases: dict[str, str], groups: dict[str, tuple[str, int]]
    ) -> None:
        self.owner, self.aliases, self.groups = owner, aliases, groups

    def __call__(self, name: str) -> tuple[str, dict[str, int]]:
        path: list[str] = []
        runs: dict[str, int] = {}
        for segment in name.split("."):
            path.append(first_call(segment))  # a shared module's later call: its box
            prefix = ".".join(path)
            if prefix in self.groups:
                group, index = self.groups[prefix]
                runs[group] = index
            if prefix in self.owner:
                return self.owner[prefix], runs
            # A later member of a run drawn as a cluster: drawn as the first member.
            path = self.aliases.get(prefix, prefix).split(".")
        raise InternalError("diagram", f"IR node {name} lies in no drawn part")


def _mark_skips(edges: list[Edge]) -> None:
    """An edge that jumps over levels of the longest-path layering is a skip: dashed, and
    left out of the ranking so the main path runs straight."""
    level: dict[str, int] = {}
    for edge in edges:  # edges come in topological order of their targets
        level[edge.target] = max(level.get(edge.target, 0), level.get(edge.source, 0) + 1)
    for edge in edges:
        edge.skip = level[edge.target] - level.get(edge.source, 0) > 2


def shape_label(value: TensorType) -> str:
    """A value's shape per sample, as drawn on an edge: C×H×W."""
    return "×".join(str(concrete(dim)) for dim in value.shape[1:])


class _Dot:
    """DOT text for a drawing, with the costs of every part."""

    def __init__(
        self, program: Program, costs: CostReport, drawing: Drawing, changed: Collection[str]
    ) -> None:
        self.program, self.drawing, self.changed = program, drawing, changed
        self.total = costs.total
        self.part_costs = {part.path: costs.under(part.members) for part in _walk(drawing.parts)}
        boxes = [p for p in _walk(drawing.parts) if p.children is None and p.module.kind != "op"]
        self.hottest = max((self.part_costs[p.path].macs for p in boxes), default=0)
        self.elides = any(part.elided for part in _walk(drawing.parts))

    def render(self, rankdir: str) -> str:
        graph = self.program.graph
        ranks, climbs = self.columns()
        lines = [
            f"digraph {_quote(graph.name)} {{",
            f"  rankdir={rankdir}; newrank=true; nodesep=0.25; ranksep=0.3;",
            '  fontname="Helvetica";',
            '  node [fontname="Helvetica", fontsize=10, shape=box, style="rounded,filled",'
            " penwidth=0.8];",
            '  edge [fontname="Helvetica", fontsize=8, color="#555555", arrowsize=0.6];',
            f'  input [id="input", shape=ellipse, fillcolor="#ffffff", '
            f"label={_quote('input ' + shape_label(graph.inputs['input']))}];",
            '  output [id="output", shape=ellipse, fillcolor="#ffffff", label="output"];',
            *self.parts(self.drawing.parts, "  "),
            *(self.edge(edge, (edge.source, edge.target) in climbs) for edge in self.drawing.edges),
            *ranks,
            *self.folds(),
            self.legend(),
            "}",
        ]
        return "\n".join(lines) + "\n"

    def columns(self) -> tuple[list[str], set[tuple[str, str]]]:
        """The rank constraints that lay the wrapped list's parts out in columns (each
        column's head beside the first part), and the edges that climb from the foot of one
        column to the head of the next (left out of the ranking)."""
        if self.drawing.wrap is None:
            return [], set()
        path, count = self.drawing.wrap
        parts = dict(_lists(self.drawing.parts))[path]
        height = -(-len(parts) // count)
        heads = range(height, len(parts), height)
        top = _quote(_boxes(parts[0])[0])
        ranks = [f"  {{rank=same; {top}; {_quote(_boxes(parts[head])[0])};}}" for head in heads]
        climbs = {
            (source, target)
            for head in heads
            for source in _boxes(parts[head - 1])
            for target in _boxes(parts[head])
        }
        return ranks, climbs

    def folds(self) -> Iterator[str]:
        for edge in folds(self.drawing) if self.drawing.folded else []:
            yield f"  {{rank=same; {_quote(edge.source)}; {_quote(edge.target)};}}"

    def parts(self, parts: list[Part], indent: str) -> Iterator[str]:
        for part in parts:
            if part.children is None:
                yield indent + self.box(part)
                continue
            cost = self.part_costs[part.path]
            name = _name(part)
            label = f"<B>{html.escape(part.title)}</B>{name}"
            label += f"<BR/>{self.figures(cost)}"
            changed = self.is_changed(part)
            # set either way: a cluster inherits what its enclosing cluster sets
            unchanged = 'color="#888888"; penwidth=1; class="";'
            border = "; ".join(CHANGED) + '; class="changed";' if changed else unchanged
            caption = _quote(f"caption:{part.path}")
            yield f"{indent}subgraph {_quote('cluster:' + part.path)} {{"
            yield (
                f'{indent}  id={_quote("cluster:" + part.path)}; label=""; fontsize=10; '
                f'style="rounded,filled"; fillcolor="{self.heat(cost, light=True)}"; '
                f"{border}"
            )
            # The caption is a node, which edges go round (a cluster's label they cross).
            yield (
                f'{indent}  {caption} [id={caption}, class="caption", shape=plaintext, '
                f'style="", margin=0, height=0, label=<{label}>];'
            )
            yield from self.parts(part.children, indent + "  ")
            yield f"{indent}  {{rank=same; {caption}; {_quote(_boxes(part)[0])};}}"
            yield f"{indent}}}"

    def box(self, part: Part) -> str:
        module = part.module
        title = html.escape(part.title)
        if part.elided:
            cost = self.part_costs[part.path]
            label = f"<B>⋯ {title}</B><BR/>{len(part.members):,} modules not drawn"
            label += f"<BR/>{self.figures(cost)}"
            colour, family = "#ffffff", "elided"
        elif module.kind == "op":
            summary = " + ".join(_op_summary(op) for op in [module, *part.fused])
            label = f"<B>{title}</B><BR/>{html.escape(summary)}"
            colour, family = FAMILY_COLOURS.get(module.op.family, "#ffffff"), module.op.family
        else:
            cost = self.part_costs[part.path]
            label = f"<B>{title}</B>{_name(part)}<BR/>{self.figures(cost)}"
            colour, family = self.heat(cost), "block"
        changed = ", ".join(CHANGED) if self.is_changed(part) else ""
        kind = f"{family} changed" if changed else family
        return (
            f"{_quote(part.path)} [id={_quote(part.path)}, class={_quote(kind)}, "
            f'label=<{label}>, fillcolor="{colour}"{", " * bool(changed)}{changed}];'
        )

    def is_changed(self, part: Part) -> bool:
        return any(member in self.changed for member in part.members)

    def figures(self, cost: Cost) -> str:
        params = f"{_compact(cost.params)} params ({_percent(cost.params, self.total.params)})"
        macs = f"{_compact(cost.macs)} MACs ({_percent(cost.macs, self.total.macs)})"
        return f'<FONT POINT-SIZE="8">{params} · {macs}</FONT>'

    def heat(self, cost: Cost, light: bool = False) -> str:
        share = cost.macs / self.hottest if self.hottest else 0.0
        share = min(share, 1.0) * (0.25 if light else 1.0)
        low, high = HEAT
        return "#" + "".join(f"{round(a + (b - a) * share):02x}" for a, b in zip(low, high))

    def edge(self, edge: Edge, climbs: bool = False) -> str:
        label = shape_label(edge.value)
        style = ', style=dashed, constraint=false, color="#999999"' if edge.skip else ""
        style += ", constraint=false" if climbs and not edge.skip else ""
        return (
            f"  {_quote(edge.source)} -> {_quote(edge.target)} "
            f"[id={_quote(f'edge:{edge.source}->{edge.target}')}, label={_quote(label)}{style}];"
        )

    def legend(self) -> str:
        graph, total = self.program.graph, self.total
        drawn = {
            op.op.family
            for part in _walk(self.drawing.parts)
            if part.children is None and not part.elided
            for op in [part.module, *part.fused]
            if op.kind == "op"
        }
        swatches = "".join(
            f'<TD BGCOLOR="{colour}">{family}</TD>'
            for family, colour in FAMILY_COLOURS.items()
            if family in drawn
        )
        scale = "".join(
            f'<TD BGCOLOR="{self.heat(Cost(macs=round(self.hottest * step / 4)))}">'
            f"{_compact(round(self.hottest * step / 4))}</TD>"
            for step in range(5)
        )
        rows = [
            f"<B>{html.escape(graph.name)}</B>: input "
            f"{shape_label(graph.inputs['input'])} (batch 1)",
            f"{total.params:,} params · {total.macs:,} MACs · FLOPs = 2 × MACs",
            html.escape(f"MACs: {TIER_NOTE}"),
            "edges: tensor shape per sample (C×H×W for NCHW images); dashed: skip",
            "×N: a run of N blocks alike in shape and cost, drawn once",
            "blocks: params and MACs with their share of the total",
            *(["red border: differs from the model compared (archc diff)"] if self.changed else []),
            *(["⋯: the middle of a long sequence, not drawn; its total"] if self.elides else []),
        ]
        span = max(len(FAMILY_COLOURS), 5)
        cells = "".join(f'<TR><TD ALIGN="LEFT" COLSPAN="{span}">{row}</TD></TR>' for row in rows)
        keys = [f"<TR>{swatches}</TR>" if swatches else ""]
        if self.hottest:
            caption = f'<TD ALIGN="LEFT" COLSPAN="{span}">block fill: MACs</TD>'
            keys.append(f"<TR>{caption}</TR><TR>{scale}</TR>")
        table = f'<TABLE BORDER="0" CELLBORDER="0" CELLSPACING="1">{cells}{"".join(keys)}</TABLE>'
        return f'  legend [id="legend", shape=plaintext, style="", label=<{table}>];'


def _lists(parts: list[Part], path: str = "") -> Iterator[tuple[str, list[Part]]]:
    """Every list of sibling parts drawn, by the path of its cluster ('' at the top)."""
    yield path, parts
    for part in parts:
        if part.children is not None:
            yield from _lists(part.children, part.path)


def _boxes(part: Part) -> list[str]:
    """The ids of the boxes a part draws, in drawing order."""
    if part.children is None:
        return [part.path]
    return [box for child in part.children for box in _boxes(child)]


def folds(drawing: Drawing) -> list[Edge]:
    """Edges between top-level parts that are not neighbours (U-Net's encoder stage to its
    decoder stage): their ends are put on one rank, so that the decoder climbs back beside
    the encoder, a U; a model with two or more is drawn at the top level, the first block of
    each kind open."""
    order = {part.path: at for at, part in enumerate(drawing.parts)}
    return [
        edge
        for edge in drawing.edges
        if _top(edge.source) in order
        and _top(edge.target) in order
        and order[_top(edge.target)] - order[_top(edge.source)] > 1
    ]


def _top(path: str) -> str:
    return path.split(".", 1)[0]


def _name(part: Part) -> str:
    """A block's definition name and run badge, after its title."""
    module = part.module
    name = f" {module.block.name}" if module.block is not None else ""
    badge = f' <FONT COLOR="#b30000"><B>{part.badge}</B></FONT>' if part.badge else ""
    if part.badge and part.varies:
        badge += f' <FONT POINT-SIZE="8" COLOR="#b30000">{html.escape(part.varies)}</FONT>'
    return html.escape(name) + badge


def _op_summary(module: ModuleNode) -> str:
    """The op and the attributes set away from their defaults (three at most)."""
    attrs = module.attrs.changed()
    shown = [f"{key}={_value(value)}" for key, value in list(attrs.items())[:3]]
    return " ".join([module.op.name, *shown])


def _value(value: object) -> str:
    if isinstance(value, (list, tuple)):
        return "×".join(map(str, value))
    return str(value)


def _compact(number: int) -> str:
    for scale, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if number >= scale:
            return f"{number / scale:.3g}{suffix}"
    return str(number)


def _percent(part: int, total: int) -> str:
    return f"{100 * part / total:.1f}%" if total else "0%"


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def diagram_dot(
    program: Program,
    costs: CostReport,
    depth: int | None,
    rankdir: str,
    changed: Collection[str] = (),
) -> str:
    """The drawing as DOT; module paths in `changed` are drawn with a red border."""
    if depth is not None:
        drawing = layout_drawing(program, costs, depth)
        return _Dot(program, costs, drawing, changed).render(rankdir)
    drawing = layout_drawing(program, costs, 1, open_each=True)
    drawing.folded = len(folds(drawing)) >= 2
    if not drawing.folded:  # not a U: as deep as fits a page
        drawing = layout_drawing(program, costs, default_depth(program, costs), True)
    text = _Dot(program, costs, drawing, changed).render(rankdir)
    if rankdir != "TB" or shutil.which("dot") is None:
        return text
    path, parts = max(_lists(drawing.parts), key=lambda entry: len(entry[1]))
    for count in range(2, MAX_COLUMNS + 1):  # a tall drawing wraps its longest list
        width, height = _laid_out_size(text)
        if height <= MAX_ASPECT * width or len(parts) < 2 * count:
            break
        drawing.wrap = (path, count)
        text = _Dot(program, costs, drawing, changed).render(rankdir)
    return text


def _laid_out_size(dot: str) -> tuple[float, float]:
    """The width and height of the drawing as `dot` lays it out."""
    plain = _run_dot(dot, "plain", "laying out the drawing")
    _, _, width, height = plain.split(b"\n", 1)[0].split()[:4]
    return float(width), float(height)


def _run_dot(dot: str, fmt: str, doing: str) -> bytes:
    """Graphviz's `dot -T<fmt>` of the text; `doing` says what for, in its error."""
    result = subprocess.run(["dot", f"-T{fmt}"], input=dot.encode(), capture_output=True)
    if result.returncode != 0:
        raise ArchcError(f"dot failed {doing}: {result.stderr.decode().strip()}")
    return result.stdout


def render_dot(dot: str, path: Path) -> bytes:
    """The drawing in the format `path`'s suffix names; `dot` lays out all but .dot."""
    fmt = path.suffix.lstrip(".").lower()
    if fmt not in FORMATS:
        raise ArchcError(
            f"cannot draw to {path}: expected a .svg, .png, .pdf or .dot file, got '.{fmt}'"
        )
    if fmt == "dot":
        return dot.encode()
    if shutil.which("dot") is None:
        raise ArchcError(
            f"drawing {path} needs Graphviz's `dot` (Debian: apt-get install graphviz); "
            "a .dot file needs nothing"
        )
    return _run_dot(dot, fmt, f"drawing {path}")
