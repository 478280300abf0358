"""Resampling: nearest or bilinear, by an integer factor or to another tensor's size.

`align_corners` is always explicit in the generated code: PyTorch and jax disagree on defaults.
"""

from __future__ import annotations

from typing import Literal

from archc.ir.graph import TensorType
from archc.ir.symbolic import MUL, source
from archc.ops import register
from archc.ops.base import Attrs, Count, Op, expect_rank
from archc.ops.lowering import InlineCall, ModuleCall

Mode = Literal["nearest", "bilinear"]


class ResizeAttrs(Attrs):
    mode: Mode = "nearest"
    align_corners: bool = False
    """Bilinear only: sample corner to corner (True) or pixel centres (False)."""


class UpsampleAttrs(ResizeAttrs):
    scale: Count


class _Resampling(Op):
    """Shared rules: NCHW in, channels kept, no core-tier MACs."""

    def check(self, attrs: ResizeAttrs, inputs: list[TensorType]) -> list[str]:
        problems = expect_rank(inputs, 4, "NCHW")
        if not problems and attrs.align_corners and attrs.mode == "nearest":
            problems = ["align_corners applies to bilinear resampling only, got mode nearest"]
        return problems

    def macs(self, attrs: ResizeAttrs, inputs: list[TensorType], output: TensorType) -> int:
        return 0  # interpolation is outside the core tier

    @staticmethod
    def torch_options(attrs: ResizeAttrs) -> str:
        corners = f", align_corners={attrs.align_corners}" if attrs.mode == "bilinear" else ""
        return f'mode="{attrs.mode}"{corners}'

    @staticmethod
    def flax_options(attrs: ResizeAttrs) -> str:
        return f'mode="{attrs.mode}", align_corners={attrs.align_corners}'


@register
class Upsample(_Resampling):
    name = "upsample"
    Attrs = UpsampleAttrs
    summary = "enlarge height and width by an integer factor (nearest or bilinear)"

    def infer(self, attrs: UpsampleAttrs, inputs: list[TensorType]) -> TensorType:
        n, channels, height, width = inputs[0].shape
        return TensorType((n, channels, height * attrs.scale, width * attrs.scale))

    def lower_torch(self, attrs: UpsampleAttrs, inputs: list[TensorType]) -> ModuleCall:
        kwargs = [("scale_factor", attrs.scale), ("mode", attrs.mode)]
        if attrs.mode == "bilinear":
            kwargs.append(("align_corners", attrs.align_corners))
        return ModuleCall("nn.Upsample", (), tuple(kwargs), random_init=False)

    def lower_flax(self, attrs: UpsampleAttrs, inputs: list[TensorType]) -> InlineCall:
        scale = source(attrs.scale, MUL + 1)  # a factor: parenthesised unless atomic
        size = f"({{0}}.shape[1] * {scale}, {{0}}.shape[2] * {scale})"
        return InlineCall(f"resize({{0}}, {size}, {self.flax_options(attrs)})")


@register
class Resize(_Resampling):
    name = "resize"
    Attrs = ResizeAttrs
    arity = 2
    size_only_inputs = (1,)
    summary = "resample the first input to the second's height and width (nearest or bilinear)"

    def infer(self, attrs: ResizeAttrs, inputs: list[TensorType]) -> TensorType:
        given, like = inputs
        return TensorType((*given.shape[:2], *like.shape[2:]))

    def lower_torch(self, attrs: ResizeAttrs, inputs: list[TensorType]) -> InlineCall:
        return InlineCall(
            f"F.interpolate({{0}}, size={{1}}.shape[-2:], {self.torch_options(attrs)})"
        )

    def lower_flax(self, attrs: ResizeAttrs, inputs: list[TensorType]) -> InlineCall:
        return InlineCall(f"resize({{0}}, {{1}}.shape[1:3], {self.flax_options(attrs)})")
