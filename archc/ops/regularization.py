"""Regularisers: the identity at inference, random in training; no parameters, no MACs."""

from __future__ import annotations

from pydantic import Field

from archc.ir.graph import TensorType
from archc.ops import register
from archc.ops.base import Attrs, Op
from archc.ops.lowering import ModuleCall


class DropoutAttrs(Attrs):
    p: float = Field(0.5, ge=0, le=1)
    """The probability of zeroing an element in training."""


@register
class Dropout(Op):
    name = "dropout"
    Attrs = DropoutAttrs
    summary = "zeroes elements with probability p in training (scaling the rest); identity in eval"

    def infer(self, attrs: DropoutAttrs, inputs: list[TensorType]) -> TensorType:
        return inputs[0]

    def macs(self, attrs: DropoutAttrs, inputs: list[TensorType], output: TensorType) -> int:
        return 0

    def lower_torch(self, attrs: DropoutAttrs, inputs: list[TensorType]) -> ModuleCall:
        return ModuleCall("nn.Dropout", kwargs=(("p", attrs.p),), random_init=False)

    def lower_flax(self, attrs: DropoutAttrs, inputs: list[TensorType]) -> ModuleCall:
        # nnx.Dropout draws its masks from the `rngs` it is built with.
        return ModuleCall("nnx.Dropout", kwargs=(("rate", attrs.p),))
