"""Laying out generated Python: calls that wrap one argument per line past the line limit,
and readable local names in forward."""

from __future__ import annotations

import ast
import builtins
import keyword
import textwrap
from dataclasses import dataclass, field

LINE_LIMIT = 100
INDENT = "    "
RESERVED = frozenset({"self", "x", "out", "torch", "nn", "channels", "i"})
"""Names the emitted code uses itself; `x` is free for a multi-input block's inputs."""
INPUT_RESERVED = RESERVED - {"x"}


@dataclass
class Call:
    """`head(args…)`; an argument is source text or a nested Call."""

    head: str
    args: list[str | Call] = field(default_factory=list)
    trailing: str = ""

    def flat(self) -> str:
        inner = ", ".join(arg if isinstance(arg, str) else arg.flat() for arg in self.args)
        return f"{self.head}({inner}){self.trailing}"


def layout(prefix: str, value: str | Call, indent: int) -> list[str]:
    """Physical lines for `prefix + value` at `indent` levels, wrapping calls as needed."""
    pad = INDENT * indent
    text = value if isinstance(value, str) else value.flat()
    if isinstance(value, str) or len(pad + prefix + text) <= LINE_LIMIT or not value.args:
        return [pad + prefix + text]
    lines = [f"{pad}{prefix}{value.head}("]
    for arg in value.args:
        lines += _with_comma(layout("", arg, indent + 1))
    lines.append(f"{pad}){value.trailing}")
    return lines


def layout_source(prefix: str, text: str, indent: int) -> list[str]:
    """Like `layout`, for an expression already in source form: a call that does not fit has
    its arguments broken one per line."""
    pad = INDENT * indent
    if len(pad + prefix + text) <= LINE_LIMIT:
        return [pad + prefix + text]
    tree = ast.parse(text, mode="eval").body
    if not isinstance(tree, ast.Call):
        return [pad + prefix + text]
    pieces = [*tree.args, *tree.keywords]
    arguments = [ast.get_source_segment(text, piece) for piece in pieces]
    call = Call(ast.get_source_segment(text, tree.func), arguments)
    return layout(prefix, call, indent)


def _with_comma(lines: list[str]) -> list[str]:
    return [*lines[:-1], lines[-1] + ","]


def variable_name(name: str, reserved: frozenset[str] = RESERVED) -> str:
    """A local variable for a node name that shadows no builtin, keyword or fixed name."""
    clash = keyword.iskeyword(name) or hasattr(builtins, name) or name in reserved
    return f"{name}_" if clash else name


def wrap_text(text: str, indent: int) -> list[str]:
    """Prose (docstrings) wrapped to the line limit at `indent` levels, without the indent."""
    return textwrap.wrap(text, LINE_LIMIT - len(INDENT * indent) - 3) or [""]
