"""Definitions and the model body → the spec's YAML text, one line per node.

Written as a hand-written spec would say it: an op's attributes at their defaults left out;
a run of items in a sequence that call one block alike one item with `repeat:` (an argument
that differs only in the first copy reads `2 if i == 0 else 1`, a switch `i == 0`); a
sequence of one such item the node itself; a chain of numbered nodes that call one block
alike (`encoder_layer_0` … `encoder_layer_11`) one node with `repeat:` and `names:`.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass
from typing import Any

from archc.importer.blocks import Call, Definition, Ref
from archc.importer.items import Node, Op, Seq
from archc.ops import REGISTRY
from archc.ops.base import OpChoice

PLAIN = re.compile(r"[A-Za-z_][\w.]*")
"""Text YAML reads back as the same string, unquoted."""


def spec_text(
    name: str,
    origin: str,
    size: tuple[int, ...],
    definitions: list[Definition],
    body: list[Node],
    imports: list[str],
) -> str:
    lines = [
        "archc: 1",
        f"name: {name}",
        f"doc: {name} as {origin} builds it, imported by archc import.",
        *([f"imports: [{', '.join(imports)}]"] if imports else []),
        f"input: [{', '.join(map(str, size))}]",
    ]
    if definitions:
        lines += ["", "blocks:"]
        for definition in definitions:
            lines += _definition_lines(definition)
    lines += ["", "body:", *_body_lines(body, "  ")]
    return "\n".join(lines) + "\n"


def _definition_lines(definition: Definition) -> list[str]:
    lines = [f"  {definition.name}:"]
    if definition.params:
        params = ", ".join(f"{key}: {kind}" for key, kind in definition.params.items())
        lines.append(f"    params: {{{params}}}")
    if definition.listed:
        return [*lines, "    body:", *(f"      - {_item(node.item)}" for node in definition.body)]
    body = _body_lines(definition.body, "      ")
    if definition.output_channels and len(body) < len(definition.body):  # a loop: say its width
        lines.append(f"    output_channels: {definition.output_channels}")
    return [*lines, "    body:", *body]


def _body_lines(body: list[Node], indent: str) -> list[str]:
    lines = []
    previous = "input"
    for node in _named_runs(body):
        extra = {}
        if node.inputs != [previous]:
            extra["from"] = (
                node.inputs[0] if len(node.inputs) == 1 else f"[{', '.join(node.inputs)}]"
            )
        if node.when is not None:
            extra["when"] = node.when
        lines.append(f"{indent}{_key(node.name)}: {_with(node.item, extra)}")
        previous = node.name
    return lines


NUMBERED = re.compile(r"(?P<stem>.*?)(?P<index>\d+)")


def _named_runs(body: list[Node]) -> list[Node]:
    """Chained nodes that call one block with the same arguments and are numbered in their
    names (`encoder_layer_0` … `encoder_layer_11`) as one node with `repeat:` and `names:`,
    where nothing else reads the run but after its last node."""
    nodes: list[Node] = []
    renamed: dict[str, str] = {}
    start = 0
    while start < len(body):
        end = start + 1
        while end < len(body) and _numbered_run(body[start : end + 1], body):
            end += 1
        run = body[start:end]
        node = run[0] if len(run) == 1 else _run_node(run, {n.name for n in body})
        if len(run) > 1:
            renamed[run[-1].name] = node.name
        inputs = [renamed.get(value, value) for value in node.inputs]
        nodes.append(Node(node.name, node.item, inputs, node.when))
        start = end
    return nodes


def _run_node(run: list[Node], taken: set[str]) -> Node:
    match = NUMBERED.fullmatch(run[0].name)
    first = int(match["index"])
    template = f"{match['stem']}{{i + {first}}}" if first else f"{match['stem']}{{i}}"
    name = match["stem"].rstrip("_-") or "layers"
    while name in taken:
        name += "_"
    return Node(
        name, _RepeatedCall(_repeated([node.item for node in run]), template), run[0].inputs
    )


@dataclass(frozen=True)
class _RepeatedCall:
    text: str
    names: str


def _numbered_run(run: list[Node], body: list[Node]) -> bool:
    matches = [NUMBERED.fullmatch(node.name) for node in run]
    if not all(matches) or len({match["stem"] for match in matches}) != 1:
        return False
    indices = [int(match["index"]) for match in matches]
    consecutive = indices == list(range(indices[0], indices[0] + len(run)))
    chained = all(node.inputs == [before.name] for before, node in itertools.pairwise(run))
    calls = [node.item for node in run if isinstance(node.item, Call) and node.when is None]
    alike = len(calls) == len(run) and _alike([(call.block, call.args) for call in calls])
    inner = {node.name for node in run[:-1]}
    read_inside = all(not inner & set(node.inputs) for node in body if node not in run[1:])
    return consecutive and chained and alike and read_inside


def _with(item: Any, extra: dict[str, str]) -> str:
    """A node's item, with `from:` and `when:` where it needs them."""
    text = _node_text(item)
    if not extra:
        return text
    fields = ", ".join(f"{key}: {value}" for key, value in extra.items())
    if text.startswith("["):
        return f"{{seq: {text}, {fields}}}"
    if text.startswith("{"):
        return f"{text[:-1]}, {fields}}}"
    key = "block" if isinstance(item, Call) else "op"
    return f"{{{key}: {text}, {fields}}}"


def _node_text(item: Any) -> str:
    """A node's item; a sequence of one repeated block is that block repeated (numbered the
    same), which only a node can say (in a sequence, a repeated item joins it)."""
    if isinstance(item, Seq):
        items = _sequence(item.items)
        if len(items) == 1 and ", repeat: " in items[0]:
            return items[0]
    return _item(item)


def _item(item: Any) -> str:
    """An op (its attributes at their defaults left out), a sequence or a block call in flow
    style."""
    if isinstance(item, _RepeatedCall):
        return f'{item.text[:-1]}, names: "{item.names}"}}'
    if isinstance(item, Op):
        fields = REGISTRY[item.name].Attrs.fields()
        attrs = {
            key: value
            for key, value in item.attrs.items()
            if isinstance(value, Ref) or fields[key].required or fields[key].default != value
        }
        return _mapping("op", item.name, attrs)
    if isinstance(item, Call):
        args = {key: value for key, value in item.args.items() if not _default(item, key, value)}
        return _mapping("block", item.block, args)
    return f"[{', '.join(_sequence(item.items))}]"


def _mapping(key: str, name: str, values: dict[str, Any]) -> str:
    if not values:
        return name
    fields = ", ".join(f"{field}: {_value(value)}" for field, value in values.items())
    return f"{{{key}: {name}, {fields}}}"


def _sequence(items: list[Any]) -> list[str]:
    """A sequence's items, runs of alike block calls each one item with `repeat:`: the
    fewest items, and of those the fewest arguments that differ in a run's first copy (a
    stage's first block, strided, opens its run rather than closing the run before)."""
    unreached = (len(items) + 1, 0)
    cost = [(0, 0)] + [unreached] * len(items)
    start_of = [0] * (len(items) + 1)
    for end in range(1, len(items) + 1):
        for start in range(end):
            run = items[start:end]
            if len(run) > 1 and not _repeats(run):
                continue
            items_so_far, firsts = cost[start]
            candidate = (items_so_far + 1, firsts + (_first_differs(run) if len(run) > 1 else 0))
            if candidate < cost[end]:
                cost[end], start_of[end] = candidate, start
    runs, end = [], len(items)
    while end:
        runs.insert(0, items[start_of[end] : end])
        end = start_of[end]
    return [_item(run[0]) if len(run) == 1 else _repeated(run) for run in runs]


def _repeats(run: list[Any]) -> bool:
    """Whether block calls can be one item with `repeat:`: one block and argument names, each
    argument the same in every copy, or in every copy after the first."""
    if not all(isinstance(item, Call) for item in run):
        return False
    first = run[0]
    args = _filled(run)
    if any(item.block != first.block for item in run) or args is None:
        return False
    for key in args[0]:
        values = [item_args[key] for item_args in args]
        numbers = all(isinstance(value, (int, float)) for value in values)
        if not _alike(values[1:]) or not (numbers or _alike(values)):
            return False
    return True


def _first_differs(run: list[Call]) -> int:
    """How many arguments a run writes as `… if i == 0 else …`."""
    filled = _filled(run)
    return sum(not _alike([args[key] for args in filled]) for key in filled[0])


def _filled(run: list[Call]) -> list[dict[str, Any]] | None:
    """The calls' arguments under the same names, a library block's defaults filled in
    where a call leaves one out; None where a call lacks one that has no default."""
    keys = list(dict.fromkeys(key for call in run for key in call.args))
    if any(key not in call.args and key not in call.defaults for call in run for key in keys):
        return None
    return [{key: call.args.get(key, call.defaults.get(key)) for key in keys} for call in run]


def _repeated(run: list[Call]) -> str:
    args = {}
    filled = _filled(run)
    for key in filled[0]:
        values = [item_args[key] for item_args in filled]
        if _alike(values) and _default(run[0], key, values[0]):
            continue
        if _alike(values):
            args[key] = values[0]
        elif isinstance(values[0], bool):
            args[key] = Ref("i == 0" if values[0] else "i != 0")
        else:
            args[key] = Ref(f"{_value(values[0])} if i == 0 else {_value(values[1])}")
    fields = ", ".join(f"{key}: {_value(value)}" for key, value in args.items())
    return f"{{block: {run[0].block}, repeat: {len(run)}{', ' if fields else ''}{fields}}}"


def _default(call: Call, key: str, value: Any) -> bool:
    """Whether a library block's argument is its default, which a spec leaves out."""
    return (
        key in call.defaults and not isinstance(value, Ref) and _alike([value, call.defaults[key]])
    )


def _alike(values: list[Any]) -> bool:
    return len({repr(value) for value in values}) <= 1


def _value(value: Any) -> str:
    if isinstance(value, Ref):
        return value.source
    if isinstance(value, OpChoice):  # `batch_norm`, `{op: batch_norm, eps: 0.001}`
        return str(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return f"[{', '.join(_value(item) for item in value)}]"
    if isinstance(value, str):
        return value if PLAIN.fullmatch(value) else '"' + value.replace('"', '\\"') + '"'
    return repr(value)


def _key(name: str) -> str:
    return name if PLAIN.fullmatch(name) and not name.isdigit() else f'"{name}"'
