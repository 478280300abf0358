"""Symbolic values: a Python source expression paired with one concrete value.

Code emission elaborates each block definition with its parameters bound to `Sym`s, so channel
counts flow through the ops' own shape rules as expressions (`planes * 4`) that the emitters
write into constructors. The concrete value (from the first instance of the block) lets a
shape rule branch; the batch dimension is `Sym("N", 1)`.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable
from typing import Any

from archc.boundary import string_literal

# Python operator precedence, lowest first, for parenthesising composed sources.
TERNARY, OR, AND, NOT, COMPARE, ADD, MUL, UNARY, POWER, ATOM = range(10)

BINARY = {
    "+": (ADD, operator.add),
    "-": (ADD, operator.sub),
    "*": (MUL, operator.mul),
    "/": (MUL, operator.truediv),
    "//": (MUL, operator.floordiv),
    "%": (MUL, operator.mod),
    "**": (POWER, operator.pow),
    "==": (COMPARE, operator.eq),
    "!=": (COMPARE, operator.ne),
    "<": (COMPARE, operator.lt),
    "<=": (COMPARE, operator.le),
    ">": (COMPARE, operator.gt),
    ">=": (COMPARE, operator.ge),
}


class Sym:
    """A value known as source text (`src`) with a representative concrete `value`."""

    __slots__ = ("precedence", "src", "value")

    def __init__(self, src: str, value: Any, precedence: int = ATOM) -> None:
        self.src = src
        self.value = value
        self.precedence = precedence

    def __repr__(self) -> str:
        return f"Sym({self.src!r}={self.value!r})"

    def __bool__(self) -> bool:
        return bool(self.value)

    def __hash__(self) -> int:
        return hash(self.src)

    def __index__(self) -> int:
        return int(self.value)

    # Arithmetic stays symbolic, so shape rules written in plain Python work on Syms too.
    def __add__(self, other: Any) -> Any:
        return binary("+", self, other)

    def __radd__(self, other: Any) -> Any:
        return binary("+", other, self)

    def __sub__(self, other: Any) -> Any:
        return binary("-", self, other)

    def __rsub__(self, other: Any) -> Any:
        return binary("-", other, self)

    def __mul__(self, other: Any) -> Any:
        return binary("*", self, other)

    def __rmul__(self, other: Any) -> Any:
        return binary("*", other, self)

    def __floordiv__(self, other: Any) -> Any:
        return binary("//", self, other)

    def __rfloordiv__(self, other: Any) -> Any:
        return binary("//", other, self)

    # Comparisons in a shape rule branch on the representative value.
    def __eq__(self, other: object) -> bool:
        return concrete(self) == concrete(other)

    def __lt__(self, other: Any) -> bool:
        return concrete(self) < concrete(other)

    def __le__(self, other: Any) -> bool:
        return concrete(self) <= concrete(other)

    def __gt__(self, other: Any) -> bool:
        return concrete(self) > concrete(other)

    def __ge__(self, other: Any) -> bool:
        return concrete(self) >= concrete(other)


class SizeSym(Sym):
    """A block param of type `size`: an int or an (h, w) pair, which only the running code
    knows (one class serves `kernel=3` and `kernel=(1, 7)`)."""

    __slots__ = ()


class SymPair(tuple):
    """The (h, w) halves of a `SizeSym`, written `pair(kernel)` as a whole."""

    src: str

    def __new__(cls, size: SizeSym) -> SymPair:
        value = size.value if isinstance(size.value, (list, tuple)) else (size.value,) * 2
        src = f"pair({size.src})"
        halves = super().__new__(cls, (Sym(f"{src}[{i}]", value[i]) for i in range(2)))
        halves.src = src
        return halves


def source(value: Any, precedence: int = TERNARY) -> str:
    """Python source of a concrete or symbolic value, parenthesised below `precedence`."""
    if isinstance(value, SymPair):
        return value.src
    if isinstance(value, Sym):
        return f"({value.src})" if value.precedence < precedence else value.src
    if isinstance(value, (list, tuple)):
        items = ", ".join(source(item) for item in value)
        return f"({items},)" if len(value) == 1 else f"({items})"
    if isinstance(value, dict):
        return (
            "{" + ", ".join(f"{source(key)}: {source(item)}" for key, item in value.items()) + "}"
        )
    if isinstance(value, str):
        return string_literal(value)
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, int) and value < 0 and precedence > UNARY:
        return f"({value})"
    return repr(value)


def concrete(value: Any) -> Any:
    """The representative value: Syms replaced by their values, recursively."""
    if isinstance(value, Sym):
        return value.value
    if isinstance(value, (list, tuple)):
        items = (concrete(item) for item in value)
        return tuple(items) if isinstance(value, SymPair) else type(value)(items)
    if isinstance(value, dict):
        return {key: concrete(item) for key, item in value.items()}
    return value


def is_symbolic(value: Any) -> bool:
    if isinstance(value, (list, tuple)):
        return any(is_symbolic(item) for item in value)
    if isinstance(value, dict):
        return any(is_symbolic(item) for item in value.values())
    return isinstance(value, Sym)


def binary(symbol: str, left: Any, right: Any) -> Any:
    """`left <symbol> right`, symbolic when either side is, with trivial identities folded."""
    precedence, function = BINARY[symbol]
    if not (isinstance(left, Sym) or isinstance(right, Sym)):
        return function(left, right)
    if (symbol in ("*", "//", "/") and _is_literal(right, 1)) or (
        symbol in ("+", "-") and _is_literal(right, 0)
    ):
        return left
    if (symbol == "*" and _is_literal(left, 1)) or (symbol == "+" and _is_literal(left, 0)):
        return right
    if symbol == "*" and _is_int(left) and isinstance(right, Sym):
        # `k * (m * name)` is `(k·m) * name` (Swin's stage widths: 2 * (2 * embed_dim))
        product = re.fullmatch(r"(\d+) \* ([A-Za-z_]\w*)", right.src)
        if product:
            folded = left * int(product.group(1))
            return Sym(f"{folded} * {product.group(2)}", function(left, concrete(right)), MUL)
    if symbol == "//" and isinstance(left, Sym) and isinstance(right, int):
        # `k * name // k` is `name` (packed q, k, v split back into one embedding width)
        cancelled = re.fullmatch(rf"{right} \* ([A-Za-z_]\w*)", left.src)
        if cancelled:
            return Sym(cancelled.group(1), concrete(left) // right)
    right_precedence = precedence if symbol == "**" else precedence + 1
    operands = source(left, precedence + (symbol == "**")), source(right, right_precedence)
    # Black and ruff hug a power of simple operands (`wm**s`), and so does generated code.
    hugged = symbol == "**" and all(SIMPLE_OPERAND.fullmatch(text) for text in operands)
    text = f"{operands[0]}{symbol if hugged else f' {symbol} '}{operands[1]}"
    return Sym(text, function(concrete(left), concrete(right)), precedence)


SIMPLE_OPERAND = re.compile(r"-?(\d[\d.e+-]*|[A-Za-z_]\w*)(\*\*-?(\d[\d.e+-]*|[A-Za-z_]\w*))*")
"""A name or a number, maybe negated, or a hugged power of them: a power of two is hugged."""


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_literal(value: Any, literal: int) -> bool:
    return not isinstance(value, (Sym, bool)) and value == literal


def unary(symbol: str, operand: Any) -> Any:
    function: Callable[[Any], Any] = {"-": operator.neg, "+": operator.pos, "not": operator.not_}[
        symbol
    ]
    if not isinstance(operand, Sym):
        return function(operand)
    precedence = NOT if symbol == "not" else UNARY
    spacer = " " if symbol == "not" else ""
    # A negated power is written `-(a**2)`, as ruff writes it.
    inner = source(operand, POWER + 1 if symbol != "not" else precedence)
    return Sym(f"{symbol}{spacer}{inner}", function(operand.value), precedence)


def boolean(symbol: str, operands: list[Any]) -> Any:
    """`a and b and …` / `a or b or …` with Python's short-circuit value semantics."""
    precedence = AND if symbol == "and" else OR
    if not any(isinstance(operand, Sym) for operand in operands):
        result = operands[0]
        for operand in operands[1:]:
            result = (result and operand) if symbol == "and" else (result or operand)
        return result
    value = concrete(operands[0])
    for operand in operands[1:]:
        value = (value and concrete(operand)) if symbol == "and" else (value or concrete(operand))
    text = f" {symbol} ".join(source(operand, precedence + 1) for operand in operands)
    return Sym(text, value, precedence)


def choose(condition: Any, when_true: Any, when_false: Any) -> Any:
    """`when_true if condition else when_false`, symbolic when the condition is."""
    if not isinstance(condition, Sym):
        return when_true if condition else when_false
    if source(when_true) == source(when_false):
        return when_true
    text = f"{source(when_true, OR)} if {source(condition, OR)} else {source(when_false, TERNARY)}"
    value = concrete(when_true) if condition.value else concrete(when_false)
    return Sym(text, value, TERNARY)


def call(name: str, function: Callable[..., Any], arguments: list[Any]) -> Any:
    """`name(arguments…)`, symbolic when an argument is."""
    if not is_symbolic(arguments):
        return function(*arguments)
    text = f"{name}({', '.join(source(argument) for argument in arguments)})"
    return Sym(text, function(*concrete(arguments)))


def subscript(container: Any, index: Any) -> Any:
    if not (isinstance(container, Sym) or isinstance(index, Sym)):
        return container[index]
    if isinstance(index, slice):
        lower, upper = ("" if bound is None else str(bound) for bound in (index.start, index.stop))
        return Sym(f"{source(container, ATOM)}[{lower}:{upper}]", concrete(container)[index])
    return Sym(f"{source(container, ATOM)}[{source(index)}]", concrete(container)[concrete(index)])
