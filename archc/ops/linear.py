"""Fully connected layers."""

from __future__ import annotations

from archc.ir.graph import TensorType
from archc.ops import register
from archc.ops.base import Attrs, Op
from archc.ops.lowering import LoweringError, ModuleCall


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
