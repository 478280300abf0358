"""Definitions and the model body → the spec's YAML text, one line per node.

A run of items in a sequence that call one block alike is one item with `repeat:` (an
argument that differs only in the first copy reads `2 if i == 0 else 1`), as a hand-written
spec would say it.
"""

from __future__ import annotations

import re
from typing import Any

from archc.importer.blocks import Call, Definition, Ref
from archc.importer.modules import Node, Op, Seq
from archc.ops import REGISTRY

PLAIN = re.compile(r"[A-Za-z_][\w.]*")
"""Text YAML reads back as the same string, unquoted."""


def spec_text(
    name: str, origin: str, size: tuple[int, ...], definitions: list[Definition], body: list[Node]
) -> str:
    lines = [
        "archc: 1",
        f"name: {name}",
        f"doc: {name} as {origin} builds it, imported by archc import.",
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
    return [*lines, "    body:", *_body_lines(definition.body, "      ")]


def _body_lines(body: list[Node], indent: str) -> list[str]:
    lines = []
    previous = "input"
    for node in body:
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


def _with(item: Any, extra: dict[str, str]) -> str:
    """The item, with `from:` and `when:` where it needs them."""
    text = _item(item)
    if not extra:
        return text
    fields = ", ".join(f"{key}: {value}" for key, value in extra.items())
    if isinstance(item, Seq):
        return f"{{seq: {text}, {fields}}}"
    if text.startswith("{"):
        return f"{text[:-1]}, {fields}}}"
    key = "block" if isinstance(item, Call) else "op"
    return f"{{{key}: {text}, {fields}}}"


def _item(item: Any) -> str:
    """An op (its attributes at their defaults left out), a sequence or a block call in flow
    style."""
    if isinstance(item, Op):
        fields = REGISTRY[item.name].Attrs.fields()
        attrs = {
            key: value
            for key, value in item.attrs.items()
            if isinstance(value, Ref) or fields[key].required or fields[key].default != value
        }
        return _mapping("op", item.name, attrs)
    if isinstance(item, Call):
        return _mapping("block", item.block, item.args)
    items = _sequence(item.items)
    if len(items) == 1 and ", repeat: " in items[0]:  # one repeated block: the node itself
        return items[0]
    return f"[{', '.join(items)}]"


def _mapping(key: str, name: str, values: dict[str, Any]) -> str:
    if not values:
        return name
    fields = ", ".join(f"{field}: {_value(value)}" for field, value in values.items())
    return f"{{{key}: {name}, {fields}}}"


def _sequence(items: list[Any]) -> list[str]:
    """A sequence's items, a run of alike block calls as one item with `repeat:`."""
    written, start = [], 0
    while start < len(items):
        end = start + 1
        while end < len(items) and _repeats(items[start : end + 1]):
            end += 1
        run = items[start:end]
        if len(run) == 1:
            written.append(_item(run[0]))
        else:
            written.append(_repeated(run))
        start = end
    return written


def _repeats(run: list[Any]) -> bool:
    """Whether block calls can be one item with `repeat:`: one block and argument names, each
    argument the same in every copy, or in every copy after the first."""
    if not all(isinstance(item, Call) for item in run):
        return False
    first = run[0]
    if any(item.block != first.block or item.args.keys() != first.args.keys() for item in run):
        return False
    for key in first.args:
        values = [item.args[key] for item in run]
        numbers = all(isinstance(value, (int, float)) for value in values)
        if not _alike(values[1:]) or not (numbers or _alike(values)):
            return False
    return True


def _repeated(run: list[Call]) -> str:
    args = {}
    for key in run[0].args:
        values = [item.args[key] for item in run]
        if _alike(values):
            args[key] = values[0]
        elif isinstance(values[0], bool):
            args[key] = Ref("i == 0" if values[0] else "i != 0")
        else:
            args[key] = Ref(f"{_value(values[0])} if i == 0 else {_value(values[1])}")
    fields = ", ".join(f"{key}: {_value(value)}" for key, value in args.items())
    return f"{{block: {run[0].block}, repeat: {len(run)}{', ' if fields else ''}{fields}}}"


def _alike(values: list[Any]) -> bool:
    return len({repr(value) for value in values}) <= 1


def _value(value: Any) -> str:
    if isinstance(value, Ref):
        return value.source
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return f"[{', '.join(_value(item) for item in value)}]"
    if isinstance(value, str):
        return value if PLAIN.fullmatch(value) else '"' + value.replace('"', '\\"') + '"'
    return repr(value)


def _key(name: str) -> str:
    return name if PLAIN.fullmatch(name) and not name.isdigit() else f'"{name}"'
