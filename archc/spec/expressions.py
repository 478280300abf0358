"""Safe expressions in spec values: parsed with `ast`, evaluated by a whitelist, never `eval`.

The language is a small subset of Python: numbers, booleans, strings, lists, names of params and
lets, arithmetic, comparisons, `and`/`or`/`not`, `a if c else b`, indexing and a few functions.
Every operation goes through `archc.ir.symbolic`, so the same expression evaluates to a number
for the IR and to source text (a `Sym`) for code emission.
"""

from __future__ import annotations

import ast
import functools
from collections.abc import Mapping
from typing import Any

from archc.errors import Location, SpecError, did_you_mean
from archc.ir import symbolic
from archc.ir.functions import FUNCTIONS
from archc.limits import MAX_INT_BITS, MAX_SEQUENCE_LENGTH

_BINARY = {
    ast.Add: "+",
    ast.Sub: "-",
    ast.Mult: "*",
    ast.Div: "/",
    ast.FloorDiv: "//",
    ast.Mod: "%",
    ast.Pow: "**",
}
_COMPARE = {ast.Eq: "==", ast.NotEq: "!=", ast.Lt: "<", ast.LtE: "<=", ast.Gt: ">", ast.GtE: ">="}
_UNARY = {ast.USub: "-", ast.UAdd: "+", ast.Not: "not"}


def evaluate(text: str, env: Mapping[str, Any], location: Location) -> Any:
    """Evaluate one expression against `env`; errors point into the spec."""
    indent = len(text) - len(text.lstrip())
    location = Location(location.file, location.line, location.col + indent)
    try:
        tree = _parse(text.strip())
    except SyntaxError as error:
        at = Location(location.file, location.line, location.col + max((error.offset or 1) - 1, 0))
        raise SpecError(f"bad expression {text!r}: {error.msg}", at) from None
    except (RecursionError, MemoryError):
        raise SpecError(f"expression {text[:40]!r}… is nested too deeply", location) from None
    try:
        return _Evaluator(env, location, text).visit(tree.body)
    except RecursionError:
        raise SpecError(f"expression {text[:40]!r}… is nested too deeply", location) from None


@functools.cache
def _parse(text: str) -> ast.Expression:
    """Parsed once per text: repeats and block classes evaluate the same expressions often.
    The trees are only read."""
    return ast.parse(text, mode="eval")


class _Evaluator:
    def __init__(self, env: Mapping[str, Any], location: Location, text: str) -> None:
        self.env = env
        self.location = location
        self.text = text

    def fail(self, node: ast.AST, message: str, hint: str = "") -> SpecError:
        at = Location(
            self.location.file,
            self.location.line,
            self.location.col + getattr(node, "col_offset", 0),
        )
        return SpecError(f"in expression {self.text!r}: {message}", at, hint)

    def visit(self, node: ast.AST) -> Any:
        method = getattr(self, f"visit_{type(node).__name__}", None)
        if method is None:
            raise self.fail(node, f"'{ast.unparse(node)}' is not allowed in spec expressions")
        return method(node)

    def visit_Constant(self, node: ast.Constant) -> Any:
        if not isinstance(node.value, (int, float, str, bool)):
            raise self.fail(node, f"unsupported literal {node.value!r}")
        return self.bounded(node, node.value)

    def visit_Name(self, node: ast.Name) -> Any:
        if node.id in ("True", "False", "true", "false"):
            return node.id in ("True", "true")
        if node.id not in self.env:
            raise self.fail(node, f"unknown name '{node.id}'", did_you_mean(node.id, self.env))
        return self.env[node.id]

    def visit_List(self, node: ast.List) -> list[Any]:
        return [self.visit(item) for item in node.elts]

    visit_Tuple = visit_List

    def visit_ListComp(self, node: ast.ListComp) -> Any:
        """`[f(c) for c in xs]`: one `for`, no `if`. Over a list a param decides (`range(depth)`
        in a model), it is symbolic: generated code computes it as written."""
        (loop,) = node.generators if len(node.generators) == 1 else (None,)
        if loop is None or loop.ifs or loop.is_async or not isinstance(loop.target, ast.Name):
            raise self.fail(node, "a comprehension takes one plain `for name in …`, no `if`")
        iterable = self.visit(loop.iter)
        items = symbolic.concrete(iterable)
        if not isinstance(items, (list, tuple, range)):
            raise self.fail(loop.iter, "a comprehension runs over a list or a range")
        values = [self.with_name(loop.target.id, item, node.elt) for item in items]
        if not symbolic.is_symbolic(iterable):
            return values
        if not items:
            raise self.fail(loop.iter, "a comprehension over a param's list needs an item")
        # The element's source, with the loop variable as a name (its value: the first item).
        element = self.with_name(loop.target.id, symbolic.Sym(loop.target.id, items[0]), node.elt)
        text = f"[{symbolic.source(element)} for {loop.target.id} in {symbolic.source(iterable)}]"
        return symbolic.Sym(text, symbolic.concrete(values))

    def with_name(self, name: str, value: Any, node: ast.AST) -> Any:
        """`node` evaluated with `name` bound to `value` (a comprehension's variable)."""
        outer = self.env
        try:
            self.env = {**outer, name: value}
            return self.visit(node)
        finally:
            self.env = outer

    def visit_Slice(self, node: ast.Slice) -> slice:
        bounds = [None if part is None else self.visit(part) for part in (node.lower, node.upper)]
        if node.step is not None or symbolic.is_symbolic(bounds):
            raise self.fail(node, "slices take literal bounds, without a step")
        return slice(*bounds)

    def visit_Dict(self, node: ast.Dict) -> dict[Any, Any]:
        """A lookup table, e.g. `{11: [1, 1, 2, 2, 2], 16: [2, 2, 3, 3, 3]}[depth]`."""
        if not all(isinstance(key, ast.Constant) for key in node.keys):
            raise self.fail(node, "dictionary keys must be literals")
        keys = [self.visit(key) for key in node.keys]
        return dict(zip(keys, (self.visit(value) for value in node.values)))

    def visit_BinOp(self, node: ast.BinOp) -> Any:
        symbol = _BINARY.get(type(node.op))
        if symbol is None:
            raise self.fail(node, "unsupported operator")
        left, right = self.visit(node.left), self.visit(node.right)
        if symbol == "**":
            self.check_power(node, symbolic.concrete(left), symbolic.concrete(right))
        if symbol == "*":
            self.check_repetition(node, symbolic.concrete(left), symbolic.concrete(right))
        try:
            return self.bounded(node, symbolic.binary(symbol, left, right))
        except (TypeError, ZeroDivisionError, OverflowError, MemoryError) as error:
            raise self.fail(node, str(error)) from error

    def check_power(self, node: ast.AST, base: Any, exponent: Any) -> None:
        """Refuse a power whose integer result would exceed the limit before computing it."""
        if not all(isinstance(value, int) for value in (base, exponent)) or exponent < 2:
            return
        if abs(base) > 1 and (abs(base).bit_length() - 1) * exponent > MAX_INT_BITS:
            raise self.fail(node, f"the result exceeds the limit of {MAX_INT_BITS}-bit integers")

    def check_repetition(self, node: ast.AST, left: Any, right: Any) -> None:
        """Refuse `[x] * n` or `"s" * n` beyond the sequence limit before building it."""
        sequence, count = (left, right) if isinstance(right, int) else (right, left)
        if isinstance(sequence, (list, tuple, str)) and isinstance(count, int):
            size = len(sequence) * count
            if size > MAX_SEQUENCE_LENGTH:
                raise self.fail(
                    node, f"a sequence of {size:,} items; the limit is {MAX_SEQUENCE_LENGTH:,}"
                )

    def bounded(self, node: ast.AST, value: Any) -> Any:
        """`value`, unless it is an integer or a sequence beyond the limits."""
        concrete = symbolic.concrete(value)
        if isinstance(concrete, int) and concrete.bit_length() > MAX_INT_BITS:
            raise self.fail(node, f"the result exceeds the limit of {MAX_INT_BITS}-bit integers")
        if isinstance(concrete, (list, tuple, range, str)) and len(concrete) > MAX_SEQUENCE_LENGTH:
            raise self.fail(
                node,
                f"a sequence of {len(concrete):,} items; the limit is {MAX_SEQUENCE_LENGTH:,}",
            )
        return value

    def visit_UnaryOp(self, node: ast.UnaryOp) -> Any:
        operand = self.visit(node.operand)
        try:
            return self.bounded(node, symbolic.unary(_UNARY[type(node.op)], operand))
        except (KeyError, TypeError) as error:
            raise self.fail(node, "unsupported unary operator") from error

    def visit_BoolOp(self, node: ast.BoolOp) -> Any:
        symbol = "and" if isinstance(node.op, ast.And) else "or"
        return symbolic.boolean(symbol, [self.visit(value) for value in node.values])

    def visit_Compare(self, node: ast.Compare) -> Any:
        if len(node.ops) != 1:
            raise self.fail(node, "chained comparisons are not supported; use 'and'")
        symbol = _COMPARE.get(type(node.ops[0]))
        if symbol is None:
            raise self.fail(node, "unsupported comparison")
        left, right = self.visit(node.left), self.visit(node.comparators[0])
        try:
            return symbolic.binary(symbol, left, right)
        except TypeError as error:
            raise self.fail(node, str(error)) from error

    def visit_IfExp(self, node: ast.IfExp) -> Any:
        condition = self.visit(node.test)
        return symbolic.choose(condition, self.visit(node.body), self.visit(node.orelse))

    def visit_Subscript(self, node: ast.Subscript) -> Any:
        container, index = self.visit(node.value), self.visit(node.slice)
        try:
            return symbolic.subscript(container, index)
        except (IndexError, TypeError, KeyError) as error:
            raise self.fail(node, f"cannot index: {error}") from error

    def visit_Call(self, node: ast.Call) -> Any:
        name = node.func.id if isinstance(node.func, ast.Name) else ast.unparse(node.func)
        function = FUNCTIONS.get(name)
        if function is None or node.keywords:
            raise self.fail(node, f"unknown function '{name}'", did_you_mean(name, FUNCTIONS))
        arguments = [self.visit(argument) for argument in node.args]
        try:
            return self.bounded(node, symbolic.call(name, function, arguments))
        except (TypeError, ValueError, ZeroDivisionError, OverflowError) as error:
            raise self.fail(node, f"{name}(): {error}") from error
