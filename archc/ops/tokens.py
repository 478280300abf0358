"""Tokens for transformers: image patches as a sequence, class tokens, position embeddings,
and Swin's merging of 2x2 patches.

Tokens are (N, L, D) in both backends: the feature axis is the last.
"""

from __future__ import annotations

from typing import Any

from archc.ir.graph import TensorType
from archc.ir.symbolic import concrete, is_symbolic, source
from archc.ops import register
from archc.ops.base import Attrs, Count, NoAttrs, Offset, Op, expect_rank
from archc.ops.lowering import InlineCall


@register
class ToTokens(Op):
    name = "to_tokens"
    returns_view = True
    summary = "an image's positions as a token sequence: (N, C, H, W) to (N, H·W, C), row-major"

    def check(self, attrs: NoAttrs, inputs: list[TensorType]) -> list[str]:
        return expect_rank(inputs, 4, "NCHW")

    def infer(self, attrs: NoAttrs, inputs: list[TensorType]) -> TensorType:
        n, channels, height, width = inputs[0].shape
        return TensorType((n, height * width, channels))

    def macs(self, attrs: NoAttrs, inputs: list[TensorType], output: TensorType) -> int:
        return 0  # a reshape

    def lower_torch(self, attrs: NoAttrs, inputs: list[TensorType]) -> InlineCall:
        return InlineCall("{0}.flatten(2).transpose(1, 2)")

    def lower_flax(self, attrs: NoAttrs, inputs: list[TensorType]) -> InlineCall:
        return InlineCall("{0}.reshape({0}.shape[0], -1, {0}.shape[-1])")  # NHWC is row-major


class ClassTokenAttrs(Attrs):
    at: Offset = 0
    """Where the token goes in the sequence: first, or after the tokens before it (DeiT's
    distillation token follows the class token: `at: 1`)."""


@register
class ClassToken(Op):
    name = "class_token"
    Attrs = ClassTokenAttrs
    summary = "insert a learned token (a parameter named as the node) into every sequence"

    def check(self, attrs: ClassTokenAttrs, inputs: list[TensorType]) -> list[str]:
        problems = expect_rank(inputs, 3, "token (N, L, D)")
        length = concrete(inputs[0].shape[1]) if not problems else 0
        if not problems and not 0 <= attrs.at <= length:
            problems = [f"at must be from 0 to the sequence length {length}, got {attrs.at}"]
        return problems

    def infer(self, attrs: ClassTokenAttrs, inputs: list[TensorType]) -> TensorType:
        n, length, dim = inputs[0].shape
        return TensorType((n, length + 1, dim))

    def parameters(self, attrs: ClassTokenAttrs, inputs: list[TensorType]) -> dict[str, tuple]:
        return {"": (1, 1, inputs[0].channels)}

    def macs(self, attrs: ClassTokenAttrs, inputs: list[TensorType], output: TensorType) -> int:
        return 0

    @staticmethod
    def pieces(token: str, at: Any) -> str:
        """The sequence around the token: `{0}[:, :at], token, {0}[:, at:]`."""
        if not is_symbolic(at) and at == 0:
            return f"{token}, {{0}}"
        return f"{{0}}[:, :{source(at)}], {token}, {{0}}[:, {source(at)}:]"

    def lower_torch(self, attrs: ClassTokenAttrs, inputs: list[TensorType]) -> InlineCall:
        dim = source(inputs[0].channels)
        pieces = self.pieces("{self}.expand(len({0}), -1, -1)", attrs.at)
        return InlineCall(
            f"torch.cat([{pieces}], dim=1)", (("", f"nn.Parameter(torch.zeros(1, 1, {dim}))"),)
        )

    def lower_flax(self, attrs: ClassTokenAttrs, inputs: list[TensorType]) -> InlineCall:
        dim = source(inputs[0].channels)
        pieces = self.pieces(f"jnp.broadcast_to({{self}}[...], (len({{0}}), 1, {dim}))", attrs.at)
        return InlineCall(
            f"jnp.concatenate([{pieces}], axis=1)",
            (("", f"nnx.Param(jnp.zeros((1, 1, {dim})))"),),
        )


class PositionEmbeddingAttrs(Attrs):
    length: Count
    """The sequence length it is learned for (patches, plus the class token)."""


@register
class PositionEmbedding(Op):
    name = "position_embedding"
    Attrs = PositionEmbeddingAttrs
    summary = "add a learned (1, length, D) embedding (a parameter named as the node)"

    def check(self, attrs: PositionEmbeddingAttrs, inputs: list[TensorType]) -> list[str]:
        problems = expect_rank(inputs, 3, "token (N, L, D)")
        if problems:
            return problems
        got = concrete(inputs[0].shape[1])
        if got != concrete(attrs.length):
            return [f"the embedding is learned for {attrs.length} tokens, got {got}"]
        return []

    def infer(self, attrs: PositionEmbeddingAttrs, inputs: list[TensorType]) -> TensorType:
        return inputs[0]

    def parameters(self, attrs: PositionEmbeddingAttrs, inputs: list[TensorType]) -> dict:
        return {"": (1, attrs.length, inputs[0].channels)}

    def macs(
        self, attrs: PositionEmbeddingAttrs, inputs: list[TensorType], output: TensorType
    ) -> int:
        return 0

    def lower_torch(self, attrs: PositionEmbeddingAttrs, inputs: list[TensorType]) -> InlineCall:
        shape = f"1, {source(attrs.length)}, {source(inputs[0].channels)}"
        return InlineCall("{0} + {self}", (("", f"nn.Parameter(torch.randn({shape}) * 0.02)"),))

    def lower_flax(self, attrs: PositionEmbeddingAttrs, inputs: list[TensorType]) -> InlineCall:
        shape = f"(1, {source(attrs.length)}, {source(inputs[0].channels)})"
        value = f"nnx.Param(jax.random.normal(rngs.params(), {shape}) * 0.02)"
        return InlineCall("{0} + {self}[...]", (("", value),))


@register
class PatchMerge(Op):
    name = "patch_merge"
    summary = "Swin's 2x2 patch merging on NHWC: (N, H, W, C) to (N, H/2, W/2, 4C)"

    def check(self, attrs: NoAttrs, inputs: list[TensorType]) -> list[str]:
        problems = expect_rank(inputs, 4, "NHWC")
        _, height, width, _ = (concrete(size) for size in inputs[0].shape)
        if not problems and (height % 2 or width % 2):
            problems = [f"patch merging needs an even height and width, got {height}x{width}"]
        return problems

    def infer(self, attrs: NoAttrs, inputs: list[TensorType]) -> TensorType:
        n, height, width, dim = inputs[0].shape
        return inputs[0].with_shape((n, height // 2, width // 2, 4 * dim))

    def macs(self, attrs: NoAttrs, inputs: list[TensorType], output: TensorType) -> int:
        return 0  # data movement

    def lower_torch(self, attrs: NoAttrs, inputs: list[TensorType]) -> InlineCall:
        return InlineCall(self.TEMPLATE.format(cat="torch.cat", axis="dim"))

    def lower_flax(self, attrs: NoAttrs, inputs: list[TensorType]) -> InlineCall:
        return InlineCall(self.TEMPLATE.format(cat="jnp.concatenate", axis="axis"))

    # The four pixels of each 2x2 patch in torchvision's order (x0, x1, x2, x3).
    TEMPLATE = (
        "{cat}([{{0}}[:, 0::2, 0::2], {{0}}[:, 1::2, 0::2], {{0}}[:, 0::2, 1::2], "
        "{{0}}[:, 1::2, 1::2]], {axis}=-1)"
    )
