"""YAML 1.2 loading that keeps the line:col of every key and value."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.error import MarkedYAMLError, YAMLError
from ruamel.yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from archc.errors import Location, SpecError
from archc.limits import MAX_INT_BITS, MAX_SPEC_BYTES, MAX_TEXT_LENGTH


class SpecMap(dict):
    """A YAML mapping that remembers where each key and value stands."""

    location: Location
    key_locations: dict[str, Location]
    value_locations: dict[str, Location]

    def key_at(self, key: str) -> Location:
        return self.key_locations.get(key, self.location)

    def value_at(self, key: str) -> Location:
        return self.value_locations.get(key, self.location)


class SpecList(list):
    """A YAML sequence that remembers where each item stands."""

    location: Location
    item_locations: list[Location]

    def item_at(self, index: int) -> Location:
        return self.item_locations[index] if index < len(self.item_locations) else self.location


CORE_TAGS = frozenset(
    f"tag:yaml.org,2002:{name}" for name in ("str", "int", "float", "bool", "null", "map", "seq")
)
"""YAML 1.2's core schema: any other tag (`!!python/object`, `!!binary`, a merge key) is
refused, so a spec is plain data."""


def load_yaml(path: Path, display: str | None = None) -> Any:
    """Parse one YAML file (YAML 1.2 semantics) into SpecMap/SpecList/plain scalars."""
    name = display or str(path)
    start = Location(name, 1, 1)
    try:
        size = path.stat().st_size
        if size > MAX_SPEC_BYTES:
            raise SpecError(
                f"the spec is {size:,} bytes; the limit is {MAX_SPEC_BYTES:,}",
                start,
            )
        data = path.read_bytes()
    except OSError as error:
        raise SpecError(f"cannot read spec: {error.strerror}", start) from error
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        before = data[: error.start]
        at = Location(name, before.count(b"\n") + 1, error.start - before.rfind(b"\n"))
        raise SpecError("the spec is not UTF-8 text", at, "save it as UTF-8") from None
    yaml = YAML(typ="rt", pure=True)
    try:
        root = yaml.compose(text)
    except MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        problem = error.problem or error.context or "invalid YAML"
        raise SpecError(f"invalid YAML: {problem}", Location(name, line, col)) from None
    except YAMLError as error:
        raise SpecError(f"invalid YAML: {error}", start) from None
    return None if root is None else _Converter(yaml, name).convert(root)


class _Converter:
    """Composed YAML nodes → SpecMap/SpecList/scalars, each with its line:col."""

    def __init__(self, yaml: YAML, file: str) -> None:
        self.constructor = yaml.constructor
        self.file = file

    def at(self, node: Node) -> Location:
        return Location(self.file, node.start_mark.line + 1, node.start_mark.column + 1)

    def at_text(self, node: Node) -> Location:
        """Where a value's text starts: inside the quotes of a quoted string, so that a
        column inside an expression is exact."""
        at = self.at(node)
        quoted = isinstance(node, ScalarNode) and node.style in ("'", '"')
        return Location(at.file, at.line, at.col + 1) if quoted else at

    def convert(self, node: Node) -> Any:
        if getattr(node, "anchor", None) is not None:
            raise SpecError(
                "YAML anchors and aliases are not allowed in specs",
                self.at(node),
                "write the value out, or make it a block or a param",
            )
        tag = str(node.tag)
        if tag not in CORE_TAGS:
            shown = tag.replace("tag:yaml.org,2002:", "!!")
            raise SpecError(
                f"YAML tag {shown} is not allowed in specs (a spec is plain data)",
                self.at(node),
                "only strings, numbers, booleans, null, lists and mappings",
            )
        if isinstance(node, MappingNode):
            return self.mapping(node)
        if isinstance(node, SequenceNode):
            items = SpecList()
            items.location = self.at(node)
            items.item_locations = [self.at_text(item) for item in node.value]
            items.extend(self.convert(item) for item in node.value)
            return items
        return self.scalar(node)

    def mapping(self, node: MappingNode) -> SpecMap:
        result = SpecMap()
        result.location = self.at(node)
        result.key_locations, result.value_locations = {}, {}
        for key_node, value_node in node.value:
            key = str(self.convert(key_node))
            if key in result:
                raise SpecError(
                    f"duplicate key '{key}' (first at line {result.key_locations[key].line})",
                    self.at(key_node),
                )
            result.key_locations[key] = self.at(key_node)
            result.value_locations[key] = self.at_text(value_node)
            result[key] = self.convert(value_node)
        return result

    def scalar(self, node: ScalarNode) -> Any:
        value = _plain_scalar(self.constructor.construct_object(node, deep=True))
        if isinstance(value, int) and value.bit_length() > MAX_INT_BITS:
            raise SpecError(
                f"an integer beyond the limit of {MAX_INT_BITS} bits, got {node.value[:40]}",
                self.at(node),
            )
        if isinstance(value, float) and not math.isfinite(value):
            raise SpecError(f"expected a finite number, got {node.value}", self.at(node))
        if isinstance(value, str) and len(value) > MAX_TEXT_LENGTH:
            raise SpecError(
                f"a string of {len(value):,} characters; the limit is {MAX_TEXT_LENGTH:,}",
                self.at(node),
            )
        return value


def _plain_scalar(value: Any) -> Any:
    """ruamel's ScalarInt/ScalarFloat/… → the builtin types (bool stays bool)."""
    for kind in (bool, int, float, str):
        if isinstance(value, kind):
            return kind(value)
    return value


def parse_scalar(text: str) -> Any:
    """A command-line value read as YAML 1.2 (`10`, `0.5`, `true`, `[3, 4, 6, 3]`, `name`)."""
    try:
        value = YAML(typ="safe", pure=True).load(text)
    except YAMLError:
        return text
    return text if value is None else value
