"""Normalisation layers."""

from __future__ import annotations

from typing import Any

from archc.ir.graph import TensorType
from archc.ir.symbolic import concrete
from archc.ops import register
from archc.ops.base import (
    KEEPS_INPUT,
    Attrs,
    Count,
    Epsilon,
    Op,
    Probability,
    Saved,
    expect_channel_groups,
    expect_rank,
    keywords,
)
from archc.ops.lowering import InlineCall, ModuleCall


class BatchNormAttrs(Attrs):
    eps: Epsilon = 1e-5
    momentum: Probability = 0.1
    """PyTorch's convention: running = (1 - momentum) * running + momentum * batch."""


@register
class BatchNorm(Op):
    name = "batch_norm"
    fresh_output = True
    Attrs = BatchNormAttrs
    wide_buffers = ("num_batches_tracked",)
    summary = "batch normalisation over the channels (NCHW or NC), affine, tracked stats"

    def check(self, attrs: BatchNormAttrs, inputs: list[TensorType]) -> list[str]:
        kind = inputs[0]
        if kind.rank in (2, 4) and not kind.channels_last:
            return []
        return [f"expected an NCHW or NC input, got {kind}{' (NHWC)' * kind.channels_last}"]

    def infer(self, attrs: BatchNormAttrs, inputs: list[TensorType]) -> TensorType:
        return inputs[0]

    def parameters(self, attrs: BatchNormAttrs, inputs: list[TensorType]) -> dict[str, tuple]:
        return {"weight": (inputs[0].channels,), "bias": (inputs[0].channels,)}

    def buffers(self, attrs: BatchNormAttrs, inputs: list[TensorType]) -> dict[str, tuple]:
        channels = inputs[0].channels
        return {"running_mean": (channels,), "running_var": (channels,), "num_batches_tracked": ()}

    def saved(self, attrs: BatchNormAttrs, inputs: list[TensorType], output: TensorType) -> Saved:
        return KEEPS_INPUT  # (and its per-channel batch statistics, left out)

    def macs(self, attrs: BatchNormAttrs, inputs: list[TensorType], output: TensorType) -> int:
        return 0  # normalisation is outside the core tier

    def lower_torch(self, attrs: BatchNormAttrs, inputs: list[TensorType]) -> ModuleCall:
        constructor = "nn.BatchNorm2d" if inputs[0].rank == 4 else "nn.BatchNorm1d"
        return ModuleCall(constructor, (inputs[0].channels,), self.keywords(attrs))

    @staticmethod
    def keywords(attrs: BatchNormAttrs) -> tuple[tuple[str, Any], ...]:
        """eps and momentum where they are not PyTorch's (the file's own classes agree)."""
        return keywords(("eps", attrs.eps, 1e-5), ("momentum", attrs.momentum, 0.1))

    def lower_flax(self, attrs: BatchNormAttrs, inputs: list[TensorType]) -> ModuleCall:
        # The generated file's own BatchNorm keeps PyTorch's momentum convention and its
        # unbiased running variance, so both frameworks train from the same state.
        return ModuleCall(
            "BatchNorm", (inputs[0].channels,), self.keywords(attrs), random_init=False
        )


class FrozenBatchNormAttrs(Attrs):
    eps: Epsilon = 1e-5


@register
class FrozenBatchNorm(BatchNorm):
    name = "frozen_batch_norm"
    Attrs = FrozenBatchNormAttrs
    wide_buffers = ()
    summary = "batch normalisation with fixed statistics and affine terms, all buffers (NCHW)"

    def check(self, attrs: FrozenBatchNormAttrs, inputs: list[TensorType]) -> list[str]:
        return expect_rank(inputs, 4, "NCHW")

    def parameters(self, attrs: FrozenBatchNormAttrs, inputs: list[TensorType]) -> dict:
        return {}

    def saved(
        self, attrs: FrozenBatchNormAttrs, inputs: list[TensorType], output: TensorType
    ) -> Saved:
        return Saved()  # x * scale + shift with fixed buffers: only the scale is kept

    def buffers(self, attrs: FrozenBatchNormAttrs, inputs: list[TensorType]) -> dict:
        channels = (inputs[0].channels,)
        return dict.fromkeys(("weight", "bias", "running_mean", "running_var"), channels)

    def lower_torch(self, attrs: FrozenBatchNormAttrs, inputs: list[TensorType]) -> ModuleCall:
        # The generated file's own copy of torchvision's FrozenBatchNorm2d.
        kwargs = keywords(("eps", attrs.eps, 1e-5))
        return ModuleCall("FrozenBatchNorm2d", (inputs[0].channels,), kwargs, random_init=False)

    def lower_flax(self, attrs: FrozenBatchNormAttrs, inputs: list[TensorType]) -> ModuleCall:
        kwargs = keywords(("eps", attrs.eps, 1e-5))
        return ModuleCall("FrozenBatchNorm", (inputs[0].channels,), kwargs, random_init=False)


class LayerNormAttrs(Attrs):
    eps: Epsilon = 1e-5


@register
class LayerNorm(Op):
    name = "layer_norm"
    fresh_output = True
    Attrs = LayerNormAttrs
    summary = (
        "layer normalisation over the features (the last axis; an NCHW image's channels), affine"
    )

    def infer(self, attrs: LayerNormAttrs, inputs: list[TensorType]) -> TensorType:
        return inputs[0]

    def parameters(self, attrs: LayerNormAttrs, inputs: list[TensorType]) -> dict[str, tuple]:
        return {"weight": (inputs[0].channels,), "bias": (inputs[0].channels,)}

    def saved(self, attrs: LayerNormAttrs, inputs: list[TensorType], output: TensorType) -> Saved:
        positions = output.numel_per_sample() // concrete(output.channels)
        return Saved(
            inputs=(0,), own=((positions, None), (positions, None))
        )  # a mean and 1/std each

    def macs(self, attrs: LayerNormAttrs, inputs: list[TensorType], output: TensorType) -> int:
        return 0  # normalisation is outside the core tier

    def lower_torch(self, attrs: LayerNormAttrs, inputs: list[TensorType]) -> ModuleCall:
        # Over an NCHW image's channels: the file's LayerNorm2d, torchvision's ConvNeXt norm
        # (nn.LayerNorm between two permutes, with nn.LayerNorm's state_dict names).
        kind = inputs[0]
        constructor = "nn.LayerNorm" if kind.channel_axis == kind.rank - 1 else "LayerNorm2d"
        return ModuleCall(constructor, (kind.channels,), keywords(("eps", attrs.eps, 1e-5)))

    def lower_flax(self, attrs: LayerNormAttrs, inputs: list[TensorType]) -> ModuleCall:
        # Images are NHWC in flax, so the features are always last. The two-pass variance,
        # as PyTorch computes it.
        kwargs = keywords(("epsilon", attrs.eps, 1e-6), ("use_fast_variance", False, True))
        return ModuleCall("nnx.LayerNorm", (inputs[0].channels,), kwargs)


class GroupNormAttrs(Attrs):
    groups: Count
    """Groups of consecutive channels, each normalised over its channels and positions."""
    eps: Epsilon = 1e-5


@register
class GroupNorm(Op):
    name = "group_norm"
    fresh_output = True
    Attrs = GroupNormAttrs
    summary = (
        "group normalisation of an NCHW image: its channels in `groups` groups, each over its "
        "channels and positions, then a per-channel affine (nn.GroupNorm)"
    )

    def check(self, attrs: GroupNormAttrs, inputs: list[TensorType]) -> list[str]:
        return expect_channel_groups(inputs, "groups", attrs.groups)

    def infer(self, attrs: GroupNormAttrs, inputs: list[TensorType]) -> TensorType:
        return inputs[0]

    def parameters(self, attrs: GroupNormAttrs, inputs: list[TensorType]) -> dict[str, tuple]:
        return {"weight": (inputs[0].channels,), "bias": (inputs[0].channels,)}

    def saved(self, attrs: GroupNormAttrs, inputs: list[TensorType], output: TensorType) -> Saved:
        return Saved(inputs=(0,), own=((attrs.groups, None), (attrs.groups, None)))  # mean, 1/std

    def macs(self, attrs: GroupNormAttrs, inputs: list[TensorType], output: TensorType) -> int:
        return 0  # normalisation is outside the core tier

    def lower_torch(self, attrs: GroupNormAttrs, inputs: list[TensorType]) -> ModuleCall:
        kwargs = keywords(("eps", attrs.eps, 1e-5))
        return ModuleCall("nn.GroupNorm", (attrs.groups, inputs[0].channels), kwargs)

    def lower_flax(self, attrs: GroupNormAttrs, inputs: list[TensorType]) -> ModuleCall:
        # Images are NHWC: the groups are of consecutive channels, as in torch; the two-pass
        # variance, as PyTorch computes it.
        epsilon = keywords(("epsilon", attrs.eps, 1e-6), ("use_fast_variance", False, True))
        kwargs = (("num_groups", attrs.groups), *epsilon)
        return ModuleCall("nnx.GroupNorm", (inputs[0].channels,), kwargs)


class L2NormalizeAttrs(Attrs):
    eps: Epsilon = 1e-12
    """The smallest norm divided by (F.normalize's)."""


@register
class L2Normalize(Op):
    name = "l2_normalize"
    Attrs = L2NormalizeAttrs
    summary = (
        "each position's features divided by their L2 norm (an NCHW image's channels, else the "
        "last axis), as F.normalize; no parameters (SSD's conv4_3 before its learned scale)"
    )

    def infer(self, attrs: L2NormalizeAttrs, inputs: list[TensorType]) -> TensorType:
        return inputs[0]

    def saved(self, attrs: L2NormalizeAttrs, inputs: list[TensorType], output: TensorType) -> Saved:
        return KEEPS_INPUT

    def macs(self, attrs: L2NormalizeAttrs, inputs: list[TensorType], output: TensorType) -> int:
        return 0  # normalisation is outside the core tier

    def lower_torch(self, attrs: L2NormalizeAttrs, inputs: list[TensorType]) -> InlineCall:
        eps = f", eps={attrs.eps!r}" if attrs.eps != 1e-12 else ""
        return InlineCall(f"F.normalize({{0}}, dim={inputs[0].channel_axis}{eps})")

    def lower_flax(self, attrs: L2NormalizeAttrs, inputs: list[TensorType]) -> InlineCall:
        norm = "jnp.linalg.norm({0}, axis=-1, keepdims=True)"  # images are NHWC in flax
        return InlineCall(f"{{0}} / jnp.maximum({norm}, {attrs.eps!r})")
