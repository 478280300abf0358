"""YAML 1.2 loading that keeps the line:col of every key and value.

PyYAML's parser (libyaml's, in C, where the wheel has it) reads the text into events; archc
builds the values itself from them, resolving plain scalars by YAML 1.2's core schema, so that
a spec is plain data: no anchors, aliases, merge keys or tags beyond the core ones.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

import yaml
from yaml import events

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


CORE = "tag:yaml.org,2002:"
CORE_SCALARS = {  # YAML 1.2's core schema: how each tag's plain text looks, in resolution order
    "null": re.compile(r"null|Null|NULL|~|"),
    "bool": re.compile(r"true|True|TRUE|false|False|FALSE"),
    "int": re.compile(r"[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+"),
    "float": re.compile(
        r"[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?|[-+]?\.(inf|Inf|INF)|\.(nan|NaN|NAN)"
    ),
}
"""Any other tag (`!!python/object`, `!!binary`, `!custom`) is refused, so a spec is plain data."""

_PARSER = yaml.CBaseLoader if yaml.__with_libyaml__ else yaml.BaseLoader


def load_yaml(path: Path, display: str | None = None) -> Any:
    """Parse one YAML file (YAML 1.2 semantics) into SpecMap/SpecList/plain scalars."""
    name = display or str(path)
    start = Location(name, 1, 1)
    try:
        _check_size(path.stat().st_size, start)
        data = path.read_bytes()
    except OSError as error:
        raise SpecError(f"cannot read spec: {error.strerror}", start) from error
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        before = data[: error.start]
        at = Location(name, before.count(b"\n") + 1, error.start - before.rfind(b"\n"))
        raise SpecError("the spec is not UTF-8 text", at, "save it as UTF-8") from None
    return load_text(text, name)


def load_spec_text(text: str, file: str) -> Any:
    """A spec given as text (`archc.load` of a string), under the file size limit."""
    _check_size(len(text.encode("utf-8", "surrogatepass")), Location(file, 1, 1))
    return load_text(text, file)


def _check_size(size: int, start: Location) -> None:
    if size > MAX_SPEC_BYTES:
        raise SpecError(f"the spec is {size:,} bytes; the limit is {MAX_SPEC_BYTES:,}", start)


def load_text(text: str, file: str) -> Any:
    """One YAML document as SpecMap/SpecList/plain scalars (None when empty)."""
    parser = _PARSER(text)
    try:
        return _Builder(parser, file).document()
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        problem = error.problem or error.context or "invalid YAML"
        raise SpecError(f"invalid YAML: {problem}", Location(file, line, col)) from None
    except yaml.reader.ReaderError as error:  # a character YAML does not allow
        at = _at_offset(text, error.position, file)
        raise SpecError(f"invalid YAML: {error.reason}", at) from None
    except yaml.YAMLError as error:
        raise SpecError(f"invalid YAML: {error}", Location(file, 1, 1)) from None
    finally:
        parser.dispose()


def _at_offset(text: str, offset: int, file: str) -> Location:
    """The line:col of an offset into the text (into its UTF-8 bytes, for libyaml)."""
    before = (
        text.encode()[:offset].decode(errors="ignore")
        if _PARSER is not yaml.BaseLoader
        else text[:offset]
    )
    return Location(file, before.count("\n") + 1, len(before) - before.rfind("\n"))


class _Builder:
    """Parser events → SpecMap/SpecList/scalars, each with its line:col."""

    def __init__(self, parser: Any, file: str) -> None:
        self.parser = parser
        self.file = file

    def at(self, event: events.Event) -> Location:
        return Location(self.file, event.start_mark.line + 1, event.start_mark.column + 1)

    def at_text(self, event: events.Event) -> Location:
        """Where a value's text starts: inside the quotes of a quoted string, so that a
        column inside an expression is exact."""
        at = self.at(event)
        quoted = isinstance(event, events.ScalarEvent) and event.style in ("'", '"')
        return Location(at.file, at.line, at.col + 1) if quoted else at

    def document(self) -> Any:
        self.parser.get_event()  # the stream's start
        if isinstance(self.parser.peek_event(), events.StreamEndEvent):
            return None
        self.parser.get_event()  # the document's start
        root = self.value(self.parser.get_event())
        self.parser.get_event()  # the document's end
        extra = self.parser.get_event()
        if not isinstance(extra, events.StreamEndEvent):
            raise SpecError("a spec is one YAML document; this is a second", self.at(extra))
        return root

    def value(self, event: events.Event) -> Any:
        if isinstance(event, events.AliasEvent) or event.anchor is not None:
            raise SpecError(
                "YAML anchors and aliases are not allowed in specs",
                self.at(event),
                "write the value out, or make it a block or a param",
            )
        if isinstance(event, events.MappingStartEvent):
            self.check_tag(event, "map")
            return self.mapping(event)
        if isinstance(event, events.SequenceStartEvent):
            self.check_tag(event, "seq")
            items = SpecList()
            items.location, items.item_locations = self.at(event), []
            while not isinstance(self.parser.peek_event(), events.SequenceEndEvent):
                item = self.parser.get_event()
                items.item_locations.append(self.at_text(item))
                items.append(self.value(item))
            self.parser.get_event()
            return items
        return self.scalar(event)

    def check_tag(self, event: events.Event, allowed: str) -> None:
        if event.tag not in (None, "!", CORE + allowed):
            self.refuse_tag(event)

    def refuse_tag(self, event: events.Event) -> None:
        shown = event.tag.replace(CORE, "!!")
        raise SpecError(
            f"YAML tag {shown} is not allowed in specs (a spec is plain data)",
            self.at(event),
            "only strings, numbers, booleans, null, lists and mappings",
        )

    def mapping(self, start: events.MappingStartEvent) -> SpecMap:
        result = SpecMap()
        result.location = self.at(start)
        result.key_locations, result.value_locations = {}, {}
        while not isinstance(self.parser.peek_event(), events.MappingEndEvent):
            key_event = self.parser.get_event()
            if _is_plain(key_event) and key_event.value == "<<":
                raise SpecError("YAML merge keys (<<) are not allowed in specs", self.at(key_event))
            key = str(self.value(key_event))
            if key in result:
                raise SpecError(
                    f"duplicate key '{key}' (first at line {result.key_locations[key].line})",
                    self.at(key_event),
                )
            value_event = self.parser.get_event()
            result.key_locations[key] = self.at(key_event)
            result.value_locations[key] = self.at_text(value_event)
            result[key] = self.value(value_event)
        self.parser.get_event()
        return result

    def scalar(self, event: events.ScalarEvent) -> Any:
        text = event.value
        if _is_plain(event):
            kind = next(
                (kind for kind, form in CORE_SCALARS.items() if form.fullmatch(text)), "str"
            )
        elif event.tag in (None, "!"):
            kind = "str"
        else:
            kind = event.tag.removeprefix(CORE)
            if kind not in ("str", *CORE_SCALARS):
                self.refuse_tag(event)
            if kind != "str" and not CORE_SCALARS[kind].fullmatch(text):
                raise SpecError(f"cannot read {text[:40]!r} as !!{kind}", self.at(event))
        value = _constructed(kind, text)
        if isinstance(value, int) and value.bit_length() > MAX_INT_BITS:
            raise SpecError(
                f"an integer beyond the limit of {MAX_INT_BITS} bits, got {text[:40]}",
                self.at(event),
            )
        if isinstance(value, float) and not math.isfinite(value):
            raise SpecError(f"expected a finite number, got {text}", self.at(event))
        if isinstance(value, str) and len(value) > MAX_TEXT_LENGTH:
            raise SpecError(
                f"a string of {len(value):,} characters; the limit is {MAX_TEXT_LENGTH:,}",
                self.at(event),
            )
        return value


def _is_plain(event: events.Event) -> bool:
    """A scalar written without quotes or tag, whose type its text decides."""
    return isinstance(event, events.ScalarEvent) and event.tag is None and event.implicit[0]


def _constructed(kind: str, text: str) -> Any:
    """The value of core-schema text already matched to `kind`."""
    if kind == "null":
        return None
    if kind == "bool":
        return text.lower() == "true"
    if kind == "int":
        base = {"0o": 8, "0x": 16}.get(text[:2], 10)
        return int(text[2:] if base != 10 else text, base)
    if kind == "float":  # YAML spells infinity `.inf`: without the dot, Python reads it
        return float(text.replace(".", "", 1) if text[-1].isalpha() else text)
    return text


def parse_scalar(text: str) -> Any:
    """A command-line value read as YAML 1.2 (`10`, `0.5`, `true`, `[3, 4, 6, 3]`, `name`)."""
    try:
        value = load_text(text, "--set")
    except SpecError:
        return text
    return text if value is None else value
