"""Op attributes: frozen records of typed, range-checked fields, declared as class annotations.

    class ConvAttrs(Attrs):
        out: Count
        kernel: Window
        bias: bool = True

The types an attribute can take are few (an int, a float, a bool, one of some strings, an
(h, w) pair of ints, or None), so archc checks them itself: no validation library to import
before the first spec is read. Checks are strict: a bool is not an int, a string not a number.
"""

from __future__ import annotations

import typing
from dataclasses import dataclass
from typing import Any, ClassVar

REQUIRED: Any = object()
"""The default of an attribute that has none."""


class AttrsError(ValueError):
    """An attribute value the schema refuses; `key` names the attribute (empty for unknown)."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(message)
        self.key = key


@dataclass(frozen=True)
class Range:
    """Bounds on a number, or on each half of an (h, w) pair; used as `Annotated` metadata."""

    minimum: float | None = None
    maximum: float | None = None
    above: bool = False
    """Whether the minimum itself is refused (an epsilon must be more than 0)."""

    def __str__(self) -> str:
        words = []
        if self.minimum is not None:
            words.append(f"{'more than' if self.above else 'at least'} {self.minimum}")
        if self.maximum is not None:
            words.append(f"at most {self.maximum}")
        return ", ".join(words)

    def admits(self, number: float) -> bool:
        low = (
            self.minimum is None
            or number > self.minimum
            or (number == self.minimum and not self.above)
        )
        return low and (self.maximum is None or number <= self.maximum)


PAIR = tuple[int, int]
SHAPE = tuple[int, ...]
"""A tensor shape: a list of one to four integers."""
NUMBERS = tuple[float, ...]
"""A short list of numbers (an anchor's aspect ratios): one to eight."""
NUMBER_LISTS = tuple[NUMBERS, ...]
"""A short list of short lists of numbers (each level's aspect ratios): one to eight lists of
none to eight numbers."""
_WORDS = {int: "a valid integer", float: "a valid number", bool: "a valid boolean"}
_WORDS |= {PAIR: "a pair of integers", SHAPE: "a list of 1 to 4 integers", type(None): "null"}
_WORDS |= {NUMBERS: "a list of 1 to 8 numbers", NUMBER_LISTS: "1 to 8 lists of up to 8 numbers"}


@dataclass(frozen=True)
class Field:
    """One attribute: its name, declared type (the `Annotated` ranges stripped off) and default."""

    name: str
    kinds: tuple[Any, ...]
    """The types a value may have: int, float, bool, PAIR, NoneType, or Literal strings."""
    ranges: tuple[Range, ...]
    default: Any

    @classmethod
    def declared(cls, name: str, annotation: Any, default: Any) -> Field:
        kinds, ranges = _flattened(annotation)
        return cls(name, kinds, ranges, default)

    @property
    def required(self) -> bool:
        return self.default is REQUIRED

    @property
    def takes_text(self) -> bool:
        """Whether the value is text (a choice of strings), not an expression to evaluate."""
        return all(typing.get_origin(kind) is typing.Literal for kind in self.kinds)

    def describe(self) -> str:
        """`int | tuple[int, int], at least 1`: the type and its range, in words."""
        kinds = " | ".join(_spelt(kind) for kind in self.kinds)
        return ", ".join([kinds, *map(str, self.ranges)])

    def validate(self, value: Any) -> Any:
        """The value as stored (a float for an int given to a float, a pair as a tuple)."""
        for kind in self.kinds:
            checked = _as_kind(value, kind)
            if checked is not _REFUSED:
                break
        else:
            expected = " or ".join(_expected(kind) for kind in self.kinds)
            raise AttrsError(self.name, f"expected {expected}, got {_as_written(value)!r}")
        numbers = _flat(checked)
        for bounds in self.ranges:
            if checked is not None and not all(bounds.admits(number) for number in numbers):
                raise AttrsError(self.name, f"expected {bounds}, got {_as_written(value)!r}")
        return checked


_REFUSED = object()


def _as_written(value: Any) -> Any:
    """A value as the spec wrote it: its lists are lists again, not the tuples kept."""
    return [_as_written(item) for item in value] if isinstance(value, tuple) else value


def _flat(value: Any) -> tuple[Any, ...]:
    """The numbers of a value: itself, or the items of a (nested) tuple."""
    if isinstance(value, tuple):
        return tuple(number for item in value for number in _flat(item))
    return (value,)


def _flattened(annotation: Any) -> tuple[tuple[Any, ...], tuple[Range, ...]]:
    """The kinds of a possibly annotated union (`Window | None`), and the ranges on them."""
    if typing.get_origin(annotation) is typing.Annotated:
        inner, *metadata = typing.get_args(annotation)
        kinds, ranges = _flattened(inner)
        return kinds, ranges + tuple(item for item in metadata if isinstance(item, Range))
    if typing.get_origin(annotation) in (typing.Union, type(int | None)):
        parts = [_flattened(arm) for arm in typing.get_args(annotation)]
        return sum((kinds for kinds, _ in parts), ()), sum((ranges for _, ranges in parts), ())
    return (annotation,), ()


def _as_kind(value: Any, kind: Any) -> Any:
    """The value if it is of `kind` (converted where the kind allows), else _REFUSED."""
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind is bool:
        return value if isinstance(value, bool) else _REFUSED
    if kind is int:
        return value if number and isinstance(value, int) else _REFUSED
    if kind is float:
        return float(value) if number else _REFUSED
    if kind is type(None):
        return value if value is None else _REFUSED
    if kind == PAIR:
        pair = tuple(value) if isinstance(value, (tuple, list)) else ()
        good = len(pair) == 2 and all(_as_kind(item, int) is not _REFUSED for item in pair)
        return pair if good else _REFUSED
    if kind == SHAPE:
        shape = tuple(value) if isinstance(value, (tuple, list)) else ()
        good = 1 <= len(shape) <= 4 and all(_as_kind(item, int) is not _REFUSED for item in shape)
        return shape if good else _REFUSED
    if kind == NUMBERS:
        return _short_list(value, float, shortest=1)
    if kind == NUMBER_LISTS:
        lists = _short_list(value, tuple, shortest=1)
        checked = () if lists is _REFUSED else tuple(_short_list(item, float) for item in lists)
        return checked if checked and _REFUSED not in checked else _REFUSED
    return value if value in typing.get_args(kind) and isinstance(value, str) else _REFUSED


def _short_list(value: Any, kind: type, shortest: int = 0) -> Any:
    """`shortest` to 8 items each of `kind` (a tuple: any list), as a tuple, else _REFUSED."""
    items = tuple(value) if isinstance(value, (tuple, list)) else None
    if items is None or not shortest <= len(items) <= 8:
        return _REFUSED
    if kind is tuple:
        return items if all(isinstance(item, (tuple, list)) for item in items) else _REFUSED
    checked = tuple(_as_kind(item, kind) for item in items)
    return _REFUSED if _REFUSED in checked else checked


def _expected(kind: Any) -> str:
    if typing.get_origin(kind) is typing.Literal:
        options = [repr(option) for option in typing.get_args(kind)]
        return " or ".join([", ".join(options[:-1]), options[-1]] if len(options) > 1 else options)
    return _WORDS[kind]


def _spelt(kind: Any) -> str:
    if typing.get_origin(kind) is typing.Literal:
        return " | ".join(repr(option) for option in typing.get_args(kind))
    spellings = {
        type(None): "None",
        PAIR: "tuple[int, int]",
        SHAPE: "list[int]",
        NUMBERS: "list[float]",
        NUMBER_LISTS: "list[list[float]]",
    }
    return spellings.get(kind) or kind.__name__


class Attrs:
    """Base of every op's attributes: frozen, strictly typed, unknown keys refused."""

    _fields: ClassVar[dict[str, Field]]
    """Each subclass's own, made on first use (annotations are strings until then)."""

    @classmethod
    def fields(cls) -> dict[str, Field]:
        """The attributes in declaration order, base classes first (read once per class)."""
        if "_fields" not in cls.__dict__:
            hints = typing.get_type_hints(cls, include_extras=True)
            cls._fields = {
                name: Field.declared(name, hint, getattr(cls, name, REQUIRED))
                for name, hint in hints.items()
                if not name.startswith("_") and typing.get_origin(hint) is not ClassVar
            }
        return cls.__dict__["_fields"]

    def __init__(self, **values: Any) -> None:
        self._fill(values, frozenset())

    @classmethod
    def checked_but(cls, values: dict[str, Any], unchecked: frozenset[str]) -> Attrs:
        """The attributes with `unchecked` ones kept as given: values of a node switched off
        where they are taken, which need only hold where it is on."""
        attrs = object.__new__(cls)
        attrs._fill(values, unchecked)
        return attrs

    def _fill(self, values: dict[str, Any], unchecked: frozenset[str]) -> None:
        fields = self.fields()
        for key in values.keys() - fields.keys():
            raise AttrsError("", f"unknown attribute '{key}'")
        for name, field in fields.items():
            if name in values:
                value = values[name] if name in unchecked else field.validate(values[name])
            elif field.required:
                raise AttrsError(name, f"missing required attribute '{name}'")
            else:
                value = field.default
            object.__setattr__(self, name, value)

    def replace(self, **values: Any) -> Attrs:
        """A copy with some values replaced unchecked: symbolic values, whose value at the
        defaults the caller has checked."""
        copy = object.__new__(type(self))
        copy.__dict__.update(self.__dict__, **values)
        return copy

    def changed(self) -> dict[str, Any]:
        """The attributes set away from their defaults, in declaration order."""
        fields = self.fields()
        return {key: value for key, value in self if value != fields[key].default}

    def __iter__(self) -> typing.Iterator[tuple[str, Any]]:
        return iter(self.__dict__.items())

    def __setattr__(self, name: str, value: Any) -> None:
        raise TypeError(f"{type(self).__name__} is frozen")

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and other.__dict__ == self.__dict__

    def __hash__(self) -> int:
        return hash((type(self), tuple(self.__dict__.items())))

    def __repr__(self) -> str:
        items = ", ".join(f"{key}={value!r}" for key, value in self)
        return f"{type(self).__name__}({items})"
