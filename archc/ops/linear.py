"""Fully connected layers and the flatten that feeds them."""

from __future__ import annotations

import math

from archc.ir.graph import TensorType
from archc.ir.symbolic import source
from archc.ops import register
from archc.ops.base import Attrs, Op
from archc.ops.lowering import InlineCall, LoweringError, ModuleCall


class LinearAttrs(Attrs):
    out: int
    bias: bool = True


@register
class Linear(Op):
    name = "linear"
    Attrs = LinearAttrs
    summary = "affine map of the last axis"

    def check(self, attrs: LinearAttrs, inputs: list[TensorType]) -> list[str]:
        got = inputs[0]
        return [] if got.rank >= 2 else [f"expected an input of rank 2 or more, got {got}"]

    def infer(self, attrs: LinearAttrs, inputs: list[TensorType]) -> TensorType:
        return TensorType((*inputs[0].shape[:-1], attrs.out))

    def parameters(self, attrs: LinearAttrs, inputs: list[TensorType]) -> dict[str, tuple]:
        weight = (attrs.out, inputs[0].shape[-1])
        return {"weight": weight, "bias": (attrs.out,)} if attrs.bias else {"weight": weight}

    def macs(self, attrs: LinearAttrs, inputs: list[TensorType], output: TensorType) -> int:
        return output.numel_per_sample() * inputs[0].shape[-1]

    def lower_torch(self, attrs: LinearAttrs, inputs: list[TensorType]) -> ModuleCall:
        return ModuleCall("nn.Linear", (inputs[0].shape[-1], attrs.out), (("bias", attrs.bias),))

    def lower_flax(self, attrs: LinearAttrs, inputs: list[TensorType]) -> ModuleCall:
        if inputs[0].rank == 4:
            raise LoweringError("a linear layer on a 4-d (NHWC in flax) tensor; flatten first")
        kwargs = (("use_bias", attrs.bias),)
        return ModuleCall("nnx.Linear", (inputs[0].shape[-1], attrs.out), kwargs)


class FlattenAttrs(Attrs):
    start: int = 1


@register
class Flatten(Op):
    name = "flatten"
    Attrs = FlattenAttrs
    summary = "merge the axes from `start` on (NCHW order, as PyTorch)"

    def check(self, attrs: FlattenAttrs, inputs: list[TensorType]) -> list[str]:
        rank = inputs[0].rank
        if 1 <= attrs.start < rank:
            return []
        return [
            f"start must be an axis after the batch axis, from 1 to {rank - 1}, got {attrs.start}"
        ]

    def infer(self, attrs: FlattenAttrs, inputs: list[TensorType]) -> TensorType:
        shape = inputs[0].shape
        return TensorType((*shape[: attrs.start], math.prod(shape[attrs.start :])))

    def macs(self, attrs: FlattenAttrs, inputs: list[TensorType], output: TensorType) -> int:
        return 0  # a view

    def lower_torch(self, attrs: FlattenAttrs, inputs: list[TensorType]) -> InlineCall:
        return InlineCall(f"torch.flatten({{0}}, {attrs.start})")

    def lower_flax(self, attrs: FlattenAttrs, inputs: list[TensorType]) -> InlineCall:
        kept = [source(dim) for dim in inputs[0].shape[1 : attrs.start]]
        shape = ", ".join(["{0}.shape[0]", *kept, "-1"])
        if inputs[0].rank == 4:  # back to NCHW first, so the merged order is PyTorch's
            return InlineCall(f"jnp.transpose({{0}}, (0, 3, 1, 2)).reshape({shape})")
        return InlineCall(f"{{0}}.reshape({shape})")
