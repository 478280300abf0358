"""Ops that combine tensors: elementwise sum and concatenation."""

from __future__ import annotations

from archc.ir.graph import TensorType
from archc.ir.symbolic import concrete
from archc.ops import register
from archc.ops.base import Attrs, NoAttrs, Op, flax_axis
from archc.ops.lowering import InlineCall


@register
class Add(Op):
    name = "add"
    Attrs = NoAttrs
    arity = None
    summary = "elementwise sum of tensors of one shape (residual connections)"

    def check(self, attrs: NoAttrs, inputs: list[TensorType]) -> list[str]:
        first = inputs[0]
        for other in inputs[1:]:
            if concrete(other.shape) != concrete(first.shape):
                return [f"inputs must have the same shape, got {first} and {other}"]
        return []

    def infer(self, attrs: NoAttrs, inputs: list[TensorType]) -> TensorType:
        return inputs[0]

    def macs(self, attrs: NoAttrs, inputs: list[TensorType], output: TensorType) -> int:
        return 0  # elementwise arithmetic is outside the core tier

    def lower_torch(self, attrs: NoAttrs, inputs: list[TensorType]) -> InlineCall:
        return InlineCall(" + ".join(f"{{{index}}}" for index in range(len(inputs))))

    lower_flax = lower_torch


class ConcatAttrs(Attrs):
    axis: int = 1
    """A logical (NCHW) axis; the batch axis 0 is not allowed."""


@register
class Concat(Op):
    name = "concat"
    Attrs = ConcatAttrs
    arity = None
    summary = "concatenation along one axis (channels by default)"

    def check(self, attrs: ConcatAttrs, inputs: list[TensorType]) -> list[str]:
        first = inputs[0]
        if not 1 <= attrs.axis < first.rank:
            return [f"axis must be from 1 to {first.rank - 1}, got {attrs.axis}"]
        for other in inputs[1:]:
            mismatch = [
                axis
                for axis in range(first.rank)
                if axis != attrs.axis and concrete(other.shape[axis]) != concrete(first.shape[axis])
            ]
            if other.rank != first.rank or mismatch:
                return [
                    f"inputs must match on every axis but {attrs.axis}, got {first} and {other}"
                ]
        return []

    def infer(self, attrs: ConcatAttrs, inputs: list[TensorType]) -> TensorType:
        shape = list(inputs[0].shape)
        shape[attrs.axis] = sum(
            (other.shape[attrs.axis] for other in inputs[1:]), shape[attrs.axis]
        )
        return TensorType(tuple(shape))

    def macs(self, attrs: ConcatAttrs, inputs: list[TensorType], output: TensorType) -> int:
        return 0  # data movement only

    def lower_torch(self, attrs: ConcatAttrs, inputs: list[TensorType]) -> InlineCall:
        values = ", ".join(f"{{{index}}}" for index in range(len(inputs)))
        return InlineCall(f"torch.cat([{values}], dim={attrs.axis})")

    def lower_flax(self, attrs: ConcatAttrs, inputs: list[TensorType]) -> InlineCall:
        values = ", ".join(f"{{{index}}}" for index in range(len(inputs)))
        axis = flax_axis(attrs.axis, inputs[0].rank)
        return InlineCall(f"jnp.concatenate([{values}], axis={axis})")


@register
class Mul(Op):
    name = "mul"
    Attrs = NoAttrs
    arity = 2
    summary = "elementwise product, broadcasting size-1 axes (squeeze-excitation scaling)"

    def check(self, attrs: NoAttrs, inputs: list[TensorType]) -> list[str]:
        first, second = (concrete(kind.shape) for kind in inputs)
        fits = len(first) == len(second) and all(
            a == b or 1 in (a, b) for a, b in zip(first[1:], second[1:])
        )
        return [] if fits else [f"shapes must broadcast, got {inputs[0]} and {inputs[1]}"]

    def infer(self, attrs: NoAttrs, inputs: list[TensorType]) -> TensorType:
        first, second = inputs
        sizes = [b if concrete(a) == 1 else a for a, b in zip(first.shape[1:], second.shape[1:])]
        return TensorType((first.shape[0], *sizes))

    def macs(self, attrs: NoAttrs, inputs: list[TensorType], output: TensorType) -> int:
        return 0  # elementwise arithmetic is outside the core tier

    def lower_torch(self, attrs: NoAttrs, inputs: list[TensorType]) -> InlineCall:
        return InlineCall("{0} * {1}")

    lower_flax = lower_torch
