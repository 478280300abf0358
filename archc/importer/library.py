"""Imported block instances → a shipped library's block, where one builds the same thing.

A class whose name a shipped block has (torchvision's and timm's `Bottleneck`, archc:resnet's)
is tried as that block: each instance's arguments are solved from the attributes of its ops,
one unknown param at a time (`conv3: {out: planes * 4}` with 256 channels out gives
`planes: 64`; a `let` is seen through), params nothing pins keep their defaults, and an op
param (`bn1: norm`) takes the op found there. What a solution builds is not trusted here: the
model compiled with the library blocks must make the same graph as with the imported
definitions (`archc.importer.model`), else the definitions stay.
"""

from __future__ import annotations

import ast
import functools
import re
from collections.abc import Iterator
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
    standard = defaults_of(candidate.block)
    return {
        name: value
        for name, value in solved.items()
        if name not in standard or value != standard[name]
    }


def _solved(
    candidate: LibraryBlock, instance: Instance, widths: dict[str, tuple[int, int]]
) -> dict[str, Any] | None:
    """Every param of the block for this instance, as a call writes it: by the attributes of
    its ops, and the arguments of the library blocks it calls (solved alike, inside out)."""
    block = candidate.block
    if block.sequential or block.outputs is not None or instance.listed:
        return None
    if len(block.inputs) != 1 or instance.path not in widths:
        return None
    known: dict[str, Any] = {channel_names(block)[0]: widths[instance.path][0]}
    equations: list[tuple[Value, Any]] = []
    for spec, item in _paired(block.body, instance.body):
        if spec.target in block.params and block.params[spec.target].type == "op":
            if not isinstance(item, Op) or _settings(item):  # its own settings: not found
                return None
            known[spec.target] = OpChoice(item.name, None)
        elif isinstance(item, Op):
            equations += [
                (value, item.attrs[key]) for key, value in spec.args.items() if key in item.attrs
            ]
        elif isinstance(item, Instance):
            inner = _inner(candidate.library, spec, item, widths)
            if inner is None:
                return None
            equations += [(value, inner[key]) for key, value in spec.args.items() if key in inner]
    _read_lists(block, equations, known)
    if not _solve(block, equations, known):
        return None
    standard = defaults_of(block)
    if any(name not in known for name in block.params.keys() - standard.keys()):
        return None  # a required param nothing pins
    written = {
        name: value.name if isinstance(value, OpChoice) else value
        for name, value in known.items()
        if name in block.params
    }
    return {**standard, **written}


def _inner(
    library: str, spec: NodeSpec, item: Instance, widths: dict[str, tuple[int, int]]
) -> dict[str, Any] | None:
    """The params of a library block that the block calls, for the instance in its place
    (whatever its class is called: `Conv2dNormActivation` for archc:mobilenet's `ConvBNAct`)."""
    same = [found for found in library_blocks().get(spec.target, []) if found.library == library]
    return _solved(same[0], item, widths) if same else None


def _settings(op: Op) -> dict[str, Any]:
    """The op's attributes away from their defaults."""
    fields = REGISTRY[op.name].Attrs.fields()
    return {key: value for key, value in op.attrs.items() if fields[key].default != value}


def defaults_of(block: BlockDef) -> dict[str, Any]:
    """The block's param defaults as a call writes them (an op param's op by name)."""
    return {
        name: value.name if isinstance(value, OpChoice) else value
        for name, value in defaults(block).items()
    }


def _paired(specs: list[NodeSpec], body: list[Any]) -> Iterator[tuple[NodeSpec, Any]]:
    """Each op node (and item of a sequence) of the library block with the instance's item of
    the same name (a sequence's by position)."""
    items = {node.name: node.item for node in body}
    for spec in specs:
        item = items.get(spec.name)
        if item is None:
            continue
        if spec.items is not None and isinstance(item, Seq) and len(spec.items) == len(item.items):
            yield from _paired(spec.items, [_Named(str(i), x) for i, x in enumerate(item.items)])
        elif spec.items is None:
            yield spec, item


@dataclass
class _Named:
    name: str
    item: Any


ELEMENT = re.compile(r"(?P<name>[A-Za-z_]\w*)\[(?P<index>\d+)\]")


def _read_lists(block: BlockDef, equations: list[tuple[Value, Any]], known: dict[str, Any]) -> None:
    """A list param read element by element (`out: widths[2]`), every element from the first
    to the last, is those elements."""
    elements: dict[str, dict[int, Any]] = {}
    for value, wanted in equations:
        read = ELEMENT.fullmatch(value.raw) if isinstance(value.raw, str) else None
        param = block.params.get(read["name"]) if read else None
        if param is not None and param.type == "list" and read["name"] not in known:
            elements.setdefault(read["name"], {})[int(read["index"])] = wanted
    for name, found in elements.items():
        if sorted(found) == list(range(len(found))):
            known[name] = [found[index] for index in range(len(found))]


def _solve(block: BlockDef, equations: list[tuple[Value, Any]], known: dict[str, Any]) -> bool:
    """Fill `known` with the params the equations pin, one unknown at a time; False where an
    equation cannot hold."""
    unknown = {name for name, param in block.params.items() if name not in known}
    pending = list(equations)
    while pending:
        progress = False
        for value, wanted in list(pending):
            free = _names(value.raw, block) & unknown
            if len(free) > 1:
                continue
            pending.remove((value, wanted))
            progress = True
            if not free:
                if not _holds(value, wanted, block, known):
                    return False
                continue
            (name,) = free
            found = [
                candidate
                for candidate in _candidates(name, block.params[name].type, value, wanted)
                if _holds(value, wanted, block, {**known, name: candidate})
            ]
            if not found:
                return False
            standard = defaults(block).get(name)
            known[name] = standard if standard in found else found[0]
            unknown.discard(name)
        if not progress:
            return True  # the rest tie unknowns together: the defaults will be checked
    return True


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


def _candidates(name: str, kind: str, value: Value, wanted: Any) -> list[Any]:
    if value.raw == name:
        return [wanted]
    if kind == "bool":
        return [False, True]
    if kind == "int" and isinstance(wanted, int) and not isinstance(wanted, bool):
        return list(range(SEARCHED * abs(wanted) + 65))
    return []


def _holds(value: Value, wanted: Any, block: BlockDef, env: dict[str, Any]) -> bool:
    scope = {**defaults(block), **env}
    for name, let in block.lets.items():  # those it can: others read params not known yet
        try:
            scope[name] = evaluate_value(let, scope, literal_strings=False)
        except ArchcError:
            continue
    try:
        got = evaluate_value(value, scope, literal_strings=False)
    except ArchcError:
        return False
    return _plain(got) == _plain(wanted)


def _plain(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        items = [_plain(item) for item in value]
        return items[0] if len(set(map(repr, items))) == 1 and len(items) == 2 else items
    return value
