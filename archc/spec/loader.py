"""YAML 1.2 loading that keeps the line:col of every key and value."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import MarkedYAMLError, YAMLError

from archc.errors import Location, SpecError


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


def load_yaml(path: Path, display: str | None = None) -> Any:
    """Parse one YAML file (YAML 1.2 semantics) into SpecMap/SpecList/plain scalars."""
    name = display or str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise SpecError(f"cannot read spec: {error.strerror}", Location(name, 1, 1)) from error
    try:
        document = YAML(typ="rt", pure=True).load(text)
    except MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        problem = error.problem or error.context or "invalid YAML"
        raise SpecError(f"invalid YAML: {problem}", Location(name, line, col)) from error
    except YAMLError as error:
        raise SpecError(f"invalid YAML: {error}", Location(name, 1, 1)) from error
    return _convert(document, name, Location(name, 1, 1))


def _convert(value: Any, file: str, location: Location) -> Any:
    if isinstance(value, CommentedMap):
        result = SpecMap()
        result.location = location
        result.key_locations, result.value_locations = {}, {}
        for key, item in value.items():
            key_line, key_col = value.lc.key(key)
            value_line, value_col = value.lc.value(key)
            key = str(key)
            result.key_locations[key] = Location(file, key_line + 1, key_col + 1)
            result.value_locations[key] = Location(file, value_line + 1, value_col + 1)
            result[key] = _convert(item, file, result.value_locations[key])
        return result
    if isinstance(value, CommentedSeq):
        items = SpecList()
        items.location = location
        items.item_locations = []
        for index, item in enumerate(value):
            line, col = value.lc.item(index)
            items.item_locations.append(Location(file, line + 1, col + 1))
            items.append(_convert(item, file, items.item_locations[-1]))
        return items
    return _plain_scalar(value)


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
