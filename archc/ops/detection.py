"""Ops of detection heads: a head's maps as one row per anchor."""

from __future__ import annotations

from archc.ir.graph import TensorType
from archc.ir.symbolic import concrete, source
from archc.ops import register
from archc.ops.base import Attrs, Count, Op, expect_rank
from archc.ops.lowering import InlineCall


class AnchorRowsAttrs(Attrs):
    size: Count
    """The values each anchor has: its class scores, or its 4 box coordinates."""


@register
class AnchorRows(Op):
    name = "anchor_rows"
    Attrs = AnchorRowsAttrs
    summary = (
        "a head's map as one row per anchor: (N, A·size, H, W) to (N, H·W·A, size), positions "
        "row-major and each position's anchors in turn (torchvision's detection heads)"
    )

    def check(self, attrs: AnchorRowsAttrs, inputs: list[TensorType]) -> list[str]:
        problems = expect_rank(inputs, 4, "NCHW")
        channels = concrete(inputs[0].channels) if not problems else 0
        if not problems and channels % concrete(attrs.size):
            return [f"size={concrete(attrs.size)} must divide the {channels} channels"]
        return problems

    def infer(self, attrs: AnchorRowsAttrs, inputs: list[TensorType]) -> TensorType:
        n, channels, height, width = inputs[0].shape
        return TensorType((n, height * width * (channels // attrs.size), attrs.size))

    def macs(self, attrs: AnchorRowsAttrs, inputs: list[TensorType], output: TensorType) -> int:
        return 0  # a reshape

    def lower_torch(self, attrs: AnchorRowsAttrs, inputs: list[TensorType]) -> InlineCall:
        size = source(attrs.size)
        return InlineCall(f"{{0}}.permute(0, 2, 3, 1).reshape({{0}}.shape[0], -1, {size})")

    def lower_flax(self, attrs: AnchorRowsAttrs, inputs: list[TensorType]) -> InlineCall:
        return InlineCall(f"{{0}}.reshape({{0}}.shape[0], -1, {source(attrs.size)})")  # NHWC
