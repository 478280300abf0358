"""Functions of the spec language, which generated code defines too (by their source).

Shape rules use them on concrete values, expressions call them, and an emitted file that
calls one carries its definition, so the code runs without archc.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any


def make_divisible(value: float, divisor: int, min_value: int | None = None) -> int:
    """Round `value` to a multiple of `divisor`, never more than 10% below it (MobileNet's rule)."""
    min_value = divisor if min_value is None else min_value
    rounded = max(min_value, int(value + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * value else rounded


def pair(value: Any) -> tuple[Any, ...]:
    """An int or an (h, w) pair, as an (h, w) tuple."""
    return tuple(value) if isinstance(value, (tuple, list)) else (value, value)


def ceil(value: float) -> int:
    """The least integer not below `value` (EfficientNet's depth scaling)."""
    return math.ceil(value)


def floor(value: float) -> int:
    """The greatest integer not above `value`."""
    return math.floor(value)


def log(value: float, base: float = math.e) -> float:
    """The logarithm of `value` (natural, or to `base`): RegNet's width quantisation."""
    return math.log(value, base)


def log2(value: float) -> float:
    """The base-2 logarithm of `value`."""
    return math.log2(value)


def exp(value: float) -> float:
    """e to the power `value`."""
    return math.exp(value)


def sqrt(value: float) -> float:
    """The square root of `value` (an initialiser's scale: `1 / sqrt(fan_in)`)."""
    return math.sqrt(value)


FUNCTIONS: dict[str, Callable[..., Any]] = {
    "make_divisible": make_divisible,
    "pair": pair,
    "min": min,
    "max": max,
    "int": int,
    "round": round,
    "len": len,
    "abs": abs,
    "sum": sum,
    "range": range,
    "ceil": ceil,
    "floor": floor,
    "log": log,
    "log2": log2,
    "exp": exp,
    "sqrt": sqrt,
}
"""Functions a spec may call; generated code defines the non-builtin ones itself."""
