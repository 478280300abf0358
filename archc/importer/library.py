"""Imported block instances → a shipped library's block, where one builds the same thing.

A class is tried as a library block of its name (torchvision's and timm's `Bottleneck`,
archc:resnet's), then as any block of a library so found. The instance is aligned with the
block (nodes by name, the rest and a sequence's items by order, a node with `when:` present or
not), and its arguments are solved from what it has, one unknown param at a time: its ops'
attributes (`conv3: {out: planes * 4}` with 256 channels out gives `planes: 64`; lets are seen
through), the arguments of the library blocks inside it, and each `when:` true or false.
Params nothing pins keep their defaults; an op param (`bn1: norm`) takes the op found there.
What a solution builds is not trusted here: the model compiled with the library blocks must
make the same graph as with definitions of its own (`archc.importer.model`), else the
definitions stay.
"""

from __future__ import annotations

import ast
import functools
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from archc import BLOCKS
from archc.errors import ArchcError
from archc.importer.items import Instance, Op, Seq
from archc.ops import REGISTRY
from archc.ops.base import OpChoice
from archc.resolve.params import channel_names, defaults
from archc.resolve.values import evaluate_value
from archc.spec.document import BlockDef, NodeSpec, Value, load_model

SEARCHED = 4
"""An unknown int is searched up to this many times the value it must give (and 64 more):
`planes * 4 == 256`, `planes * base_width // 64 * groups == 128`."""


@dataclass(frozen=True)
class LibraryBlock:
    library: str
    """As a spec imports it: `archc:resnet`."""
    block: BlockDef


@functools.cache
def library_blocks() -> dict[str, list[LibraryBlock]]:
    """Every shipped block by name (two libraries may both have a `Stage`)."""
    found: dict[str, list[LibraryBlock]] = {}
    for path in sorted(BLOCKS.glob("*.yaml")):
        library = f"archc:{path.stem}"
        probe = (
            f"archc: 1\nname: probe\nimports: [{library}]\ninput: [3, 8, 8]\nbody: {{r: relu}}\n"
        )
        spec = load_model(Path("probe.yaml"), probe)
        for block in spec.blocks.values():
            if block.location.file.endswith(f"{path.stem}.yaml"):
                found.setdefault(block.name, []).append(LibraryBlock(library, block))
    return found


def library_args(
    candidate: LibraryBlock, instance: Instance, widths: dict[str, tuple[int, int]]
) -> dict[str, Any] | None:
    """The arguments (those away from their defaults) that make the library block this
    instance; None where they cannot be found."""
    solved = _solved(candidate, instance, widths)
    if solved is None:
        return None
    standard = defaults(candidate.block)
    return {
        name: value
        for name, value in solved.items()
        if name not in standard or value != standard[name]
    }


def _solved(
    candidate: LibraryBlock, instance: Instance, widths: dict[str, tuple[int, int]]
) -> dict[str, Any] | None:
    """Every param of the block for this instance, as a call writes it: by the attributes of
    its ops, the arguments of the library blocks it calls (solved alike, inside out) and the
    nodes it has or lacks (each `when:` true or false)."""
    block = candidate.block
    if block.outputs is not None or len(block.inputs) != 1 or instance.path not in widths:
        return None
    if block.sequential != instance.listed:
        return None
    nodes = [(node.name, node.item) for node in instance.body]
    pairs = _aligned(block, block.body, nodes, ordered=block.sequential)
    if pairs is None:
        return None
    known: dict[str, Any] = {channel_names(block)[0]: widths[instance.path][0]}
    equations: list[Equation] = []
    for spec, item in pairs:
        if spec.when is not None:
            equations.append(Equation(spec.when, item is not None))
        if item is None:
            continue
        if _picks_op(block, spec):  # the op found there, with its settings
            attrs = REGISTRY[item.name].default_attrs().replace(**_settings(item))
            known[spec.target] = OpChoice(item.name, attrs)
        elif isinstance(item, Op):
            fields = REGISTRY[item.name].Attrs.fields()
            equations += [
                Equation(value, item.attrs[key], fields[key].takes_text)
                for key, value in spec.args.items()
                if key in item.attrs
            ]
        elif isinstance(item, Instance):
            inner = _inner(candidate.library, spec, item, widths)
            if inner is None:
                return None
            params = inner.block.params
            equations += [
                Equation(value, inner.args[key], params[key].type == "str")
                for key, value in spec.args.items()
                if key in inner.args
            ]
    _read_lists(block, equations, known)
    if not _solve(block, equations, known):
        return None
    standard = defaults(block)
    if any(name not in known for name in block.params.keys() - standard.keys()):
        return None  # a required param nothing pins
    return {**standard, **{name: value for name, value in known.items() if name in block.params}}


def _aligned(
    block: BlockDef, specs: list[NodeSpec], nodes: list[tuple[str, Any]], ordered: bool
) -> list[tuple[NodeSpec, Any]] | None:
    """Each op or block node of the library block (through its sequences) with the
    instance's item in its place, or None where the instance lacks a node with `when:`: in
    a body by name (then the rest by order), in a sequence by order, where only a node with
    `when:` may be missing. None: no such pairing."""
    if ordered:
        return _in_order(block, specs, [item for _, item in nodes])
    by_name = dict(nodes)
    pairs: list[tuple[NodeSpec, Any]] = []
    for spec in specs:
        if spec.name in by_name:
            found = _pair(block, spec, by_name[spec.name])
            if found is None:
                return None
            pairs += found
    # The rest, parameterless nodes named otherwise (`relu_1`, `activation`), in order.
    rest = [item for name, item in nodes if name not in {spec.name for spec in specs}]
    unnamed = _in_order(block, [spec for spec in specs if spec.name not in by_name], rest)
    return pairs + (unnamed or [])


def _in_order(
    block: BlockDef, specs: list[NodeSpec], items: list[Any]
) -> list[tuple[NodeSpec, Any]] | None:
    """A sequence's items against the library's, those with `when:` present or not, as the
    rest of the sequence allows (a first optional 1x1 of an inverted residual)."""
    if not specs:
        return [] if not items else None
    spec, rest = specs[0], specs[1:]
    if items and (found := _pair(block, spec, items[0])) is not None:
        tail = _in_order(block, rest, items[1:])
        if tail is not None:
            return [*found, *tail]
    if spec.when is not None:
        tail = _in_order(block, rest, items)
        if tail is not None:
            return [(spec, None), *tail]
    return None


def _pair(block: BlockDef, spec: NodeSpec, item: Any) -> list[tuple[NodeSpec, Any]] | None:
    """The node and the item in its place, and a sequence's items likewise; None where the
    item cannot be what the node builds."""
    if not _fits(block, spec, item):
        return None
    if not isinstance(item, Seq):
        return [(spec, item)]
    inner = _in_order(block, spec.items, item.items)
    return None if inner is None else [*inner, (spec, item)]


def _fits(block: BlockDef, spec: NodeSpec, item: Any) -> bool:
    """Whether the instance's item can be what the library's node builds."""
    if spec.repeat is not None or spec.parallel:
        return False
    if isinstance(item, Seq):
        return spec.items is not None
    if spec.items is not None:
        return False
    if isinstance(item, Instance):
        return spec.target in library_blocks()
    return spec.target == item.name or _picks_op(block, spec)


def _picks_op(block: BlockDef, spec: NodeSpec) -> bool:
    param = block.params.get(spec.target)
    return param is not None and param.type == "op"


@dataclass(frozen=True)
class Equation:
    """A library expression (an attribute, an argument, a `when:`) and what the instance has
    there."""

    value: Value
    wanted: Any
    text: bool = False
    """The value is text where it is not an expression (`act: relu`)."""


@dataclass(frozen=True)
class Solved:
    block: BlockDef
    args: dict[str, Any]


def _inner(
    library: str, spec: NodeSpec, item: Instance, widths: dict[str, tuple[int, int]]
) -> Solved | None:
    """The params of a library block that the block calls, for the instance in its place
    (whatever its class is called: `Conv2dNormActivation` for archc:mobilenet's `ConvBNAct`)."""
    named = library_blocks().get(spec.target, [])  # its own library's, or one it imports
    ordered = sorted(named, key=lambda found: found.library != library)
    if not ordered:
        return None
    args = _solved(ordered[0], item, widths)
    return None if args is None else Solved(ordered[0].block, args)


def _settings(op: Op) -> dict[str, Any]:
    """The op's attributes away from their defaults."""
    fields = REGISTRY[op.name].Attrs.fields()
    return {key: value for key, value in op.attrs.items() if fields[key].default != value}


ELEMENT = re.compile(r"(?P<name>[A-Za-z_]\w*)\[(?P<index>\d+)\]")


def _read_lists(block: BlockDef, equations: list[Equation], known: dict[str, Any]) -> None:
    """A list param read element by element (`out: widths[2]`), every element from the first
    to the last, is those elements."""
    elements: dict[str, dict[int, Any]] = {}
    for equation in equations:
        raw = equation.value.raw
        read = ELEMENT.fullmatch(raw) if isinstance(raw, str) else None
        param = block.params.get(read["name"]) if read else None
        if param is not None and param.type == "list" and read["name"] not in known:
            elements.setdefault(read["name"], {})[int(read["index"])] = equation.wanted
    for name, found in elements.items():
        if sorted(found) == list(range(len(found))):
            known[name] = [found[index] for index in range(len(found))]


def _solve(block: BlockDef, equations: list[Equation], known: dict[str, Any]) -> bool:
    """Fill `known` with the params the equations pin, one unknown at a time; False where an
    equation cannot hold."""
    unknown = {name for name, param in block.params.items() if name not in known}
    standard = defaults(block)  # what an unknown param holds while others are tried
    pending = sorted(equations, key=lambda equation: equation.wanted is False)  # a node
    # lacked says least (`act == 'relu'` is false for any other act): it comes last
    while pending:
        progress = False
        for equation in list(pending):
            free = _names(equation.value.raw, block) & unknown
            if len(free) > 1:
                continue
            if not free:
                if not _holds(equation, block, {**standard, **known}):
                    return False
                pending.remove(equation)
                progress = True
                continue
            (name,) = free
            candidates = _candidates(name, block.params[name].type, equation)
            if not candidates:  # nothing to search (`expand_ratio != 1`): others may pin it
                continue
            pending.remove(equation)
            progress = True
            found = [
                candidate
                for candidate in candidates
                if _holds(equation, block, {**standard, **known, name: candidate})
            ]
            if not found:
                return False
            default = standard.get(name)
            known[name] = default if default in found else min(found, key=_plainness)
            unknown.discard(name)
        if not progress:
            return True  # the rest tie unknowns together: defaults, which the graphs judge
    return True


def _plainness(value: Any) -> tuple[int, Any]:
    """Of values that all fit, the one a designer would have written first: the int with
    the most factors of two (a group width of 16 rather than 11, when both make 2 groups of
    32), then the smallest; otherwise the first."""
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return -((value & -value).bit_length()), value
    return 0, 0


def _names(raw: Any, block: BlockDef) -> set[str]:
    """The params an expression reads, through the block's lets."""
    if not isinstance(raw, str):
        return set()
    try:
        tree = ast.parse(raw, mode="eval")
    except SyntaxError:
        return set()
    names = {node.id for node in ast.walk(tree) if isinstance(node, ast.Name)}
    for let in names & block.lets.keys():
        names |= _names(block.lets[let].raw, block)
    return names


def _candidates(name: str, kind: str, equation: Equation) -> list[Any]:
    """The values of the param `name` worth trying in the equation: none where there is
    nothing to search."""
    value, wanted = equation.value, equation.wanted
    if value.raw == name:
        return [wanted]
    if kind == "bool":
        return [False, True]
    if kind == "int" and isinstance(wanted, int) and not isinstance(wanted, bool):
        return list(range(SEARCHED * abs(wanted) + 65))
    if kind == "str" and isinstance(value.raw, str):  # `act == 'relu6'`: the texts it names,
        try:  # or `none`, the libraries' word for no op
            tree = ast.parse(value.raw, mode="eval")
        except SyntaxError:
            return []
        named = [node.value for node in ast.walk(tree) if isinstance(node, ast.Constant)]
        return [*named, "none"]
    return []


def _holds(equation: Equation, block: BlockDef, env: dict[str, Any]) -> bool:
    """Whether the equation holds with the params in `env` (and the lets it allows)."""
    scope = dict(env)
    for name, let in block.lets.items():  # those it can: others read params not known yet
        try:
            scope[name] = evaluate_value(let, scope, literal_strings=False)
        except ArchcError:
            continue
    try:
        got = evaluate_value(equation.value, scope, literal_strings=equation.text)
    except ArchcError:
        return False
    return _plain(got) == _plain(equation.wanted)


def _plain(value: Any) -> Any:
    """A value as compared: lists and tuples alike, a pair of equal sizes one (3 is (3, 3))."""
    if isinstance(value, (list, tuple)):
        items = [_plain(item) for item in value]
        return items[0] if len(set(map(repr, items))) == 1 and len(items) == 2 else items
    return value
