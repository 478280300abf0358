"""Initialisers: how a layer's parameters start, as the spec's `init:` names them.

Each is declared once here, with its argument and how each backend writes it. An argument is
a number or an expression of the layer's `fan_in` and `fan_out`: those of its weight, as
torch counts them (a bias's bound follows its weight's fan-in, as in torch's own layers).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

FANS = ("fan_in", "fan_out")


@dataclass(frozen=True)
class Kind:
    """An initialiser: its argument ('' none, 'number', or 'fan': fan_in or fan_out), its
    torch call (`{param}`, `{arg}`, `{negative}`: minus it) and its flax value (`{key}`,
    `{shape}`, `{arg}`)."""

    argument: str
    torch: str
    flax: str
    summary: str


KINDS: dict[str, Kind] = {
    "zeros": Kind("", "nn.init.zeros_({param})", "constant({shape}, 0.0)", "all zero"),
    "ones": Kind("", "nn.init.ones_({param})", "constant({shape}, 1.0)", "all one"),
    "constant": Kind(
        "number", "nn.init.constant_({param}, {arg})", "constant({shape}, {arg})", "all `value`"
    ),
    "normal": Kind(
        "number",
        "nn.init.normal_({param}, std={arg})",
        "normal({key}, {shape}, {arg})",
        "N(0, std²)",
    ),
    "trunc_normal": Kind(
        "number",
        "nn.init.trunc_normal_({param}, std={arg})",
        "trunc_normal({key}, {shape}, {arg})",
        "N(0, std²) cut at ±2 (absolute, as torch's trunc_normal_)",
    ),
    "uniform": Kind(
        "number",
        "nn.init.uniform_({param}, {negative}, {arg})",
        "uniform({key}, {shape}, {arg})",
        "U(-bound, bound)",
    ),
    "kaiming_normal": Kind(
        "fan",
        'nn.init.kaiming_normal_({param}, mode="{arg}", nonlinearity="relu")',
        "normal({key}, {shape}, sqrt(2 / {arg}))",
        "N(0, 2 / fan) for fan_in or fan_out (He et al., for ReLU)",
    ),
    "kaiming_uniform": Kind(
        "fan",
        'nn.init.kaiming_uniform_({param}, mode="{arg}", nonlinearity="relu")',
        "uniform({key}, {shape}, sqrt(6 / {arg}))",
        "U(±sqrt(6 / fan)) for fan_in or fan_out",
    ),
    "xavier_uniform": Kind(
        "",
        "nn.init.xavier_uniform_({param})",
        "uniform({key}, {shape}, sqrt(6 / (fan_in + fan_out)))",
        "U(±sqrt(6 / (fan_in + fan_out))) (Glorot and Bengio)",
    ),
}


@dataclass(frozen=True)
class Initialiser:
    """One param's initialiser: a name of KINDS and its argument (a number, an expression
    text over FANS, or `fan_in` / `fan_out`)."""

    name: str
    argument: Any = None

    @property
    def kind(self) -> Kind:
        return KINDS[self.name]

    def reads_fans(self) -> bool:
        """Whether the emitted code needs the layer's fans computed first."""
        if self.name == "xavier_uniform":
            return True
        return isinstance(self.argument, str) and any(fan in self.argument for fan in FANS)

    def __str__(self) -> str:
        return self.name if self.argument is None else f"{self.name}({self.argument})"


TORCH_DEFAULT_LAYER = {
    "weight": Initialiser("uniform", "1 / sqrt(fan_in)"),
    "bias": Initialiser("uniform", "1 / sqrt(fan_in)"),
}
"""What torch's conv and linear layers start from (kaiming_uniform with a = sqrt(5) is
U(±1 / sqrt(fan_in))): flax's own defaults differ, so flax writes these out."""


def torch_fans(shape: tuple[int, ...]) -> dict[str, int]:
    """A weight's fans as torch counts them: (out, in, *kernel)."""
    receptive = math.prod(shape[2:])
    return {"fan_in": shape[1] * receptive, "fan_out": shape[0] * receptive}


def canonical_start(name: str, argument: Any, fans: dict[str, int]) -> tuple[str, float]:
    """What an initialiser draws from, whatever spells it: ('normal', std), ('trunc_normal',
    std), ('uniform', bound) or ('constant', value), at a layer's fans."""
    if name in ("zeros", "ones"):
        return "constant", float(name == "ones")
    if name == "kaiming_normal":
        return "normal", math.sqrt(2 / fans[argument])
    if name == "kaiming_uniform":
        return "uniform", math.sqrt(6 / fans[argument])
    if name == "xavier_uniform":
        return "uniform", math.sqrt(6 / (fans["fan_in"] + fans["fan_out"]))
    return name, float(argument)
