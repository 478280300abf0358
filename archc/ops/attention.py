"""Attention: multi-head scaled dot-product attention over packed q, k, v.

The projections around it are ordinary linear layers, so a model names them as its reference
does (timm's `qkv` and `proj`, nn.MultiheadAttention's `in_proj_weight` and `out_proj`).
"""

from __future__ import annotations

from archc.ir.graph import TensorType
from archc.ir.symbolic import concrete, source
from archc.ops import register
from archc.ops.base import Attrs, Op, expect_rank
from archc.ops.lowering import InlineCall


class AttentionAttrs(Attrs):
    heads: int


@register
class Attention(Op):
    name = "attention"
    Attrs = AttentionAttrs
    summary = "multi-head softmax(q·kᵀ/√d)·v from packed q, k, v (N, L, 3·D) to (N, L, D)"

    def check(self, attrs: AttentionAttrs, inputs: list[TensorType]) -> list[str]:
        problems = expect_rank(inputs, 3, "token (N, L, 3·D)")
        if problems:
            return problems
        packed = concrete(inputs[0].channels)
        if packed % 3:
            return [f"packed q, k, v need 3 × the embedding dim features, got {packed}"]
        heads = concrete(attrs.heads)
        if heads < 1 or (packed // 3) % heads:
            return [
                f"the embedding dim must be divisible by heads={attrs.heads}, got {packed // 3}"
            ]
        return []

    def infer(self, attrs: AttentionAttrs, inputs: list[TensorType]) -> TensorType:
        n, length, packed = inputs[0].shape
        return TensorType((n, length, packed // 3))

    def macs(self, attrs: AttentionAttrs, inputs: list[TensorType], output: TensorType) -> int:
        _, length, dim = output.shape
        return 2 * concrete(length) ** 2 * concrete(dim)  # q·kᵀ and the weights times v

    def lower_torch(self, attrs: AttentionAttrs, inputs: list[TensorType]) -> InlineCall:
        return InlineCall(f"attention({{0}}, heads={source(attrs.heads)})")

    def lower_flax(self, attrs: AttentionAttrs, inputs: list[TensorType]) -> InlineCall:
        return InlineCall(f"attention({{0}}, heads={source(attrs.heads)})")
