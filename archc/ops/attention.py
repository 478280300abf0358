"""Attention: multi-head scaled dot-product attention over packed q, k, v, and Swin's
shifted-window attention over a channels-last grid.

Around plain attention the projections are ordinary linear layers, so a model names them as
its reference does (timm's `qkv` and `proj`, nn.MultiheadAttention's `in_proj_weight`).
"""

from __future__ import annotations

from archc.ir.graph import TensorType
from archc.ir.symbolic import concrete, source
from archc.ops import register
from archc.ops.base import Attrs, Count, Offset, Op, Saved, expect_rank
from archc.ops.lowering import InlineCall, ModuleCall


class AttentionAttrs(Attrs):
    heads: Count


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
        return check_heads(packed // 3, concrete(attrs.heads))

    def infer(self, attrs: AttentionAttrs, inputs: list[TensorType]) -> TensorType:
        n, length, packed = inputs[0].shape
        return TensorType((n, length, packed // 3))

    def saved(self, attrs: AttentionAttrs, inputs: list[TensorType], output: TensorType) -> Saved:
        # SDPA keeps q, k, v (views of the packed input), its output (laid out so that merging
        # the heads back is a view: the op's output) and a log-sum-exp per head and position.
        _, length, _ = output.shape
        lse = concrete(attrs.heads) * concrete(length)
        return Saved(inputs=(0,), output=True, own=((lse, None),))

    def macs(self, attrs: AttentionAttrs, inputs: list[TensorType], output: TensorType) -> int:
        _, length, dim = output.shape
        return 2 * concrete(length) ** 2 * concrete(dim)  # q·kᵀ and the weights times v

    def lower_torch(self, attrs: AttentionAttrs, inputs: list[TensorType]) -> InlineCall:
        return InlineCall(f"attention({{0}}, heads={source(attrs.heads)})")

    def lower_flax(self, attrs: AttentionAttrs, inputs: list[TensorType]) -> InlineCall:
        return InlineCall(f"attention({{0}}, heads={source(attrs.heads)})")


def check_heads(dim: int, heads: int) -> list[str]:
    """Heads split the embedding evenly."""
    if heads >= 1 and dim % heads == 0:
        return []
    return [f"the embedding dim must be divisible by heads={heads}, got {dim}"]


class WindowAttentionAttrs(Attrs):
    heads: Count
    window: Count
    """The window's side; a map it does not divide is padded with zeros to whole windows (at
    the bottom and right) and cropped back, as torchvision does."""
    shift: Offset = 0
    """Cyclic shift of the grid before windowing (window // 2 in every other Swin block); none
    where the window covers the whole (padded) map."""


@register
class WindowAttention(Op):
    name = "window_attention"
    Attrs = WindowAttentionAttrs
    layers = 2  # the qkv and proj linears
    wide_buffers = ("relative_position_index",)
    summary = (
        "Swin's (shifted) window attention on NHWC: qkv and proj linears, a relative position "
        "bias per head, the −100 mask across shifted windows"
    )

    def check(self, attrs: WindowAttentionAttrs, inputs: list[TensorType]) -> list[str]:
        problems = expect_rank(inputs, 4, "NHWC")
        if problems:
            return problems
        dim, window, heads = (
            concrete(value) for value in (inputs[0].channels, attrs.window, attrs.heads)
        )
        if problems := check_heads(dim, heads):
            return problems
        if not 0 <= concrete(attrs.shift) < window:
            return [f"shift must be from 0 to {window - 1}, got {concrete(attrs.shift)}"]
        return []

    def infer(self, attrs: WindowAttentionAttrs, inputs: list[TensorType]) -> TensorType:
        return inputs[0]

    def parameters(self, attrs: WindowAttentionAttrs, inputs: list[TensorType]) -> dict:
        dim = inputs[0].channels
        return {
            "relative_position_bias_table": ((2 * attrs.window - 1) ** 2, attrs.heads),
            "qkv.weight": (3 * dim, dim),
            "qkv.bias": (3 * dim,),
            "proj.weight": (dim, dim),
            "proj.bias": (dim,),
        }

    def buffers(self, attrs: WindowAttentionAttrs, inputs: list[TensorType]) -> dict:
        return {"relative_position_index": (attrs.window**4,)}

    def saved(
        self, attrs: WindowAttentionAttrs, inputs: list[TensorType], output: TensorType
    ) -> Saved:
        # Over the map padded to whole windows: the windows (the qkv linear's input), q, k
        # and v, the proj linear's input, and the attention weights of each head (PyTorch's
        # CPU attention with a mask keeps them). Not the input, which the roll copies.
        tokens, dim = self.padded(attrs, inputs)
        weights = tokens * concrete(attrs.heads) * concrete(attrs.window) ** 2
        return Saved(own=((5 * tokens * dim, None), (weights, None)))

    def macs(
        self, attrs: WindowAttentionAttrs, inputs: list[TensorType], output: TensorType
    ) -> int:
        return sum(self.macs_by_kind(attrs, inputs, output).values())

    def macs_by_kind(
        self, attrs: WindowAttentionAttrs, inputs: list[TensorType], output: TensorType
    ) -> dict:
        tokens, dim = self.padded(attrs, inputs)  # the padded tokens are computed too
        window = concrete(attrs.window)
        return {
            "linear": tokens * dim * 3 * dim + tokens * dim * dim,  # qkv and proj
            "attention": 2 * tokens * window**2 * dim,  # q·kᵀ and the weights times v
        }

    @staticmethod
    def padded(attrs: WindowAttentionAttrs, inputs: list[TensorType]) -> tuple[int, int]:
        """Tokens of the map padded to whole windows, and their width."""
        _, height, width, dim = (concrete(size) for size in inputs[0].shape)
        window = concrete(attrs.window)
        return (height + -height % window) * (width + -width % window), dim

    def lower_torch(self, attrs: WindowAttentionAttrs, inputs: list[TensorType]) -> ModuleCall:
        return ModuleCall("ShiftedWindowAttention", *self._arguments(attrs, inputs))

    def lower_flax(self, attrs: WindowAttentionAttrs, inputs: list[TensorType]) -> ModuleCall:
        return ModuleCall("ShiftedWindowAttention", *self._arguments(attrs, inputs))

    @staticmethod
    def _arguments(attrs: WindowAttentionAttrs, inputs: list[TensorType]) -> tuple:
        kwargs = (("window", attrs.window), ("shift", attrs.shift), ("heads", attrs.heads))
        return (inputs[0].channels,), kwargs
