"""What an op lowers to, as data: the emitters turn these into source text."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from archc.ir.symbolic import Sym


@dataclass(frozen=True)
class ModuleCall:
    """A framework module built in the constructor and called in forward: `nn.Conv2d(…)`."""

    constructor: str
    args: tuple[Any, ...] = ()
    kwargs: tuple[tuple[str, Any], ...] = ()
    random_init: bool = True
    """Whether it draws random numbers, for initial parameters or in training (a flax module
    then takes `rngs`)."""


@dataclass(frozen=True)
class InlineCall:
    """An expression written straight into forward; `{0}`, `{1}` are the inputs.

    An op may own parameters as plain attributes of the enclosing module (a class token,
    nn.MultiheadAttention's `in_proj_weight`): `parameters` pairs each attribute's suffix to
    the node's name with the expression that creates it, and `{self}` in the template is
    `self.<node name>`.
    """

    template: str
    parameters: tuple[tuple[str, str], ...] = ()


def kernel_drawn_later() -> tuple[str, Sym]:
    """`kernel_init=drawn_later` for a flax conv or linear layer: a NaN placeholder (the
    helper) that the model's init_weights replaces with torch's draw, as translation
    validation checks; made in numpy, since an eager jax draw compiles once per shape, seconds
    each on a CPU."""
    return "kernel_init", Sym("drawn_later", "drawn_later")


class LoweringError(Exception):
    """An op configuration a backend cannot express; reported at the node's spec line."""
