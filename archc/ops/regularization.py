"""Regularisers: the identity at inference, random in training; no parameters, no MACs."""

from __future__ import annotations

from archc.ir.graph import TensorType
from archc.ops import register
from archc.ops.base import Attrs, Op, Probability, Saved, keywords
from archc.ops.lowering import ModuleCall


class DropoutAttrs(Attrs):
    p: Probability = 0.5
    """The probability of zeroing an element in training."""


@register
class Dropout(Op):
    name = "dropout"
    may_return_input = True  # in eval mode
    Attrs = DropoutAttrs
    summary = "zeroes elements with probability p in training (scaling the rest); identity in eval"

    def infer(self, attrs: DropoutAttrs, inputs: list[TensorType]) -> TensorType:
        return inputs[0]

    def saved(self, attrs: DropoutAttrs, inputs: list[TensorType], output: TensorType) -> Saved:
        # The mask, in the input's dtype (none at p = 0, where the input passes unchanged).
        return Saved(own=((output.numel_per_sample(), None),)) if attrs.p > 0 else Saved()

    def macs(self, attrs: DropoutAttrs, inputs: list[TensorType], output: TensorType) -> int:
        return 0

    def lower_torch(self, attrs: DropoutAttrs, inputs: list[TensorType]) -> ModuleCall:
        return ModuleCall("nn.Dropout", kwargs=keywords(("p", attrs.p, 0.5)), random_init=False)

    def lower_flax(self, attrs: DropoutAttrs, inputs: list[TensorType]) -> ModuleCall:
        # nnx.Dropout draws its masks from the `rngs` it is built with.
        return ModuleCall("nnx.Dropout", kwargs=(("rate", attrs.p),))


class StochasticDepthAttrs(Attrs):
    p: Probability
    """The probability of dropping a sample's whole branch in training."""


@register
class StochasticDepth(Op):
    name = "stochastic_depth"
    Attrs = StochasticDepthAttrs
    summary = (
        "drops a sample's whole residual branch with probability p in training; identity in eval"
    )

    def infer(self, attrs: StochasticDepthAttrs, inputs: list[TensorType]) -> TensorType:
        return inputs[0]

    def macs(
        self, attrs: StochasticDepthAttrs, inputs: list[TensorType], output: TensorType
    ) -> int:
        return 0

    def lower_torch(self, attrs: StochasticDepthAttrs, inputs: list[TensorType]) -> ModuleCall:
        # A helper class of the generated file: torchvision's StochasticDepth(p, "row").
        return ModuleCall("StochasticDepth", kwargs=(("p", attrs.p),), random_init=False)

    def lower_flax(self, attrs: StochasticDepthAttrs, inputs: list[TensorType]) -> ModuleCall:
        # One mask value per sample: dropout shared across every other axis.
        others = tuple(range(1, inputs[0].rank))
        return ModuleCall("nnx.Dropout", kwargs=(("rate", attrs.p), ("broadcast_dims", others)))
