"""Laying out generated Python: calls that wrap one argument per line past the line limit,
and readable local names in forward."""

from __future__ import annotations

import ast
import builtins
import contextlib
import functools
import keyword
import re
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass, field

from archc.boundary import GENERATED_GLOBALS, docstring_text, local_name

LINE_LIMIT = 100
INDENT = "    "
RESERVED = frozenset({"self", "x", "out", "channels", "i"}) | GENERATED_GLOBALS
"""Names the emitted code uses itself, and the file's globals; `x` is free for a multi-input
block's inputs."""
INPUT_RESERVED = RESERVED - {"x"}


@dataclass
class Call:
    """`head(args…)trailing` (or with other brackets, for a literal); an argument is source
    text or a nested Call."""

    head: str
    args: list[str | Call] = field(default_factory=list)
    trailing: str = ""
    brackets: str = "()"

    def flat(self) -> str:
        inner = ", ".join(arg if isinstance(arg, str) else arg.flat() for arg in self.args)
        return f"{self.head}{self.brackets[0]}{inner}{self.brackets[1]}{self.trailing}"


_NAMED: list[tuple[str, str]] = []
"""(expression, local name) pairs that `layout` writes by name (see `named_expressions`)."""


@contextlib.contextmanager
def named_expressions(names: list[tuple[str, str]]) -> Iterator[None]:
    """Within the block, `layout` writes each expression (or its parenthesised form) as its
    local name, before measuring lines."""
    _NAMED[:0] = names
    try:
        yield
    finally:
        del _NAMED[: len(names)]


def substitute_names(value: str | Call) -> str | Call:
    """`value` with every named expression written as its name."""
    if isinstance(value, Call):
        return Call(
            value.head,
            [substitute_names(arg) for arg in value.args],
            value.trailing,
            value.brackets,
        )
    for expression, name in _NAMED:
        value = value.replace(f"({expression})", name).replace(expression, name)
    return value


def layout(prefix: str, value: str | Call, indent: int, reserve: int = 0) -> list[str]:
    """Physical lines for `prefix + value` at `indent` levels, wrapping calls as needed;
    `reserve` characters stay free at the end (an argument's comma)."""
    value = substitute_names(value)
    pad = INDENT * indent
    text = value if isinstance(value, str) else value.flat()
    fits = len(pad + prefix + text) + reserve <= LINE_LIMIT
    if isinstance(value, str) or fits or not value.args:
        return [pad + prefix + text]
    lines = [f"{pad}{prefix}{value.head}{value.brackets[0]}"]
    for arg in value.args:
        lines += _with_comma(_layout_argument(arg, indent + 1))
    lines.append(f"{pad}{value.brackets[1]}{value.trailing}")
    return lines


def layout_source(prefix: str, text: str, indent: int, reserve: int = 0) -> list[str]:
    """Like `layout`, for an expression already in source form: a call, tuple, list or
    lookup table that does not fit has its arguments (items, entries) broken one per line."""
    text = substitute_names(text)
    pad = INDENT * indent
    if len(pad + prefix + text) + reserve <= LINE_LIMIT:
        return [pad + prefix + text]
    tree = ast.parse(text, mode="eval").body
    trailing = ""
    if isinstance(tree, ast.Subscript) and isinstance(tree.value, ast.Dict):
        trailing = text[tree.value.end_col_offset :]
        tree = tree.value
    segment = functools.partial(ast.get_source_segment, text)
    if isinstance(tree, ast.Dict):
        entries = [f"{segment(key)}: {segment(item)}" for key, item in zip(tree.keys, tree.values)]
        return layout(prefix, Call("", entries, trailing, brackets="{}"), indent, reserve)
    if isinstance(tree, (ast.Tuple, ast.List)):
        brackets = "()" if isinstance(tree, ast.Tuple) else "[]"
        items = [segment(item) for item in tree.elts]
        return layout(prefix, Call("", items, brackets=brackets), indent, reserve)
    if not isinstance(tree, ast.Call):
        return [pad + prefix + text]
    arguments = [segment(piece) for piece in [*tree.args, *tree.keywords]]
    return layout(prefix, Call(segment(tree.func), arguments), indent, reserve)


def _layout_argument(arg: str | Call, indent: int) -> list[str]:
    """An argument on its own lines; a long `keyword=value` in source form is broken too."""
    if isinstance(arg, Call):
        return layout("", arg, indent, reserve=1)
    keyword_value = re.fullmatch(r"(\w+=)(.*)", arg, re.DOTALL)
    keyword, text = keyword_value.groups() if keyword_value else ("", arg)
    return layout_source(keyword, text, indent, reserve=1)


def _with_comma(lines: list[str]) -> list[str]:
    return [*lines[:-1], lines[-1] + ","]


def variable_name(name: str, reserved: frozenset[str] = RESERVED) -> str:
    """A local variable for a node name that shadows no builtin, keyword or fixed name."""
    name = local_name(name)
    clash = keyword.iskeyword(name) or hasattr(builtins, name) or name in reserved
    return f"{name}_" if clash else name


def wrap_text(text: str, indent: int) -> list[str]:
    """Prose wrapped to the line limit at `indent` levels, without the indent, and escaped
    for a docstring; any run of whitespace (a newline, unicode's line separators) is a space."""
    words = " ".join(text.split())
    lines = textwrap.wrap(words, LINE_LIMIT - len(INDENT * indent) - 3) or [""]
    return [docstring_text(line) for line in lines]


def wrap_exact(text: str, indent: int) -> list[str]:
    """Text that must read exactly as it is (a command, a path), escaped for a docstring
    and broken only at its spaces: a word longer than a line stays whole."""
    width = LINE_LIMIT - len(INDENT * indent) - 3
    whole = dict(break_long_words=False, break_on_hyphens=False, replace_whitespace=False)
    return textwrap.wrap(docstring_text(text), width, **whole) or [""]


def layout_assignment(name: str, text: str, indent: int) -> list[str]:
    """`name = text`; an arithmetic expression too long for a line is built up in steps
    from its parenthesised left part (`n = a + b`, `n = n // 2 + c`, …), as one would write
    a running width by hand; one that cannot be split so (a conditional) is put in
    parentheses on a line of its own."""
    text = substitute_names(text)
    lines = layout_source(f"{name} = ", text, indent)
    if all(len(line) <= LINE_LIMIT for line in lines):
        return lines
    inner = _parenthesised_left(text)
    if inner is None:
        pad = INDENT * indent
        return [f"{pad}{name} = (", f"{pad}{INDENT}{text}", f"{pad})"]
    start, end = inner
    rest = text[: start - 1] + name + text[end + 1 :]
    return [
        *layout_assignment(name, text[start:end], indent),
        *layout_source(f"{name} = ", rest, indent),
    ]


def _parenthesised_left(text: str) -> tuple[int, int] | None:
    """The outermost parenthesised operand on the left spine of a binary expression, as
    (start, end) offsets inside its parentheses."""
    node = ast.parse(text, mode="eval").body
    while isinstance(node, ast.BinOp):
        node = node.left
        start, end = node.col_offset, node.end_col_offset
        if text[start - 1 : start] == "(" and text[end : end + 1] == ")":
            return start, end
    return None
