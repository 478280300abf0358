"""Learned tensors as nodes: a scale multiplied in (ConvNeXt's layer scale) or a bias added.

The tensor is a parameter named as the node, of the shape the spec writes, broadcast against
the input as PyTorch broadcasts (aligned to the last axes, no batch axis). On an NCHW image it
spans the channel axis, `[C, 1, 1]` for a per-channel scale, so flax can hold it in PyTorch's
shape and move the channels last where it applies it.
"""

from __future__ import annotations

from typing import Annotated, ClassVar

from archc.ir.graph import TensorType
from archc.ir.symbolic import concrete, is_symbolic, source
from archc.ops import register
from archc.ops.attributes import SHAPE, Range
from archc.ops.base import KEEPS_INPUT, Attrs, Op, Saved
from archc.ops.lowering import InlineCall


class LearnedAttrs(Attrs):
    shape: Annotated[SHAPE, Range(1)]
    """The tensor's shape, e.g. `[C, 1, 1]` against an NCHW image, `[D]` against tokens."""
    fill: float | None = None
    """The initial value of every element (the op's neutral value unless set)."""
    std: Annotated[float, Range(0, above=True)] | None = None
    """Initialise from a normal distribution of this standard deviation instead."""
    per_channel: bool = False
    """A tensor of the channels alone, `[C]`, applied along an NCHW image's channel axis (as
    torchvision's SSD holds its scale_weight), rather than broadcast from the last axes."""


class Learned(Op):
    """A tensor combined elementwise with the input; subclasses say how."""

    Attrs = LearnedAttrs
    combine: ClassVar[str]
    """The forward expression, `{0} * {1}`: the input, then the tensor."""
    neutral: ClassVar[float]

    def check(self, attrs: LearnedAttrs, inputs: list[TensorType]) -> list[str]:
        kind, shape = inputs[0], concrete(attrs.shape)
        sizes = concrete(kind.shape)[-len(shape) :]
        if attrs.fill is not None and attrs.std is not None:
            return ["give fill or std, not both"]
        if attrs.per_channel:
            image = kind.rank == 4 and not kind.channels_last
            if not image or list(shape) != [concrete(kind.channels)]:
                return [
                    f"per_channel: expected [C] for an NCHW image's channels, got {list(shape)}"
                ]
            return []
        if len(shape) > kind.rank - 1 and not (len(shape) == kind.rank and shape[0] == 1):
            return [f"a shape of at most {kind.rank - 1} axes (no batch axis), got {list(shape)}"]
        if kind.rank == 4 and not kind.channels_last and len(shape) < 3:
            return [f"on an NCHW image it spans the channels, as [C, 1, 1]: got {list(shape)}"]
        if any(size not in (1, got) for size, got in zip(shape, sizes)):
            return [f"shape {list(shape)} does not broadcast to the input {kind}"]
        return []

    def infer(self, attrs: LearnedAttrs, inputs: list[TensorType]) -> TensorType:
        return inputs[0]

    def parameters(self, attrs: LearnedAttrs, inputs: list[TensorType]) -> dict[str, tuple]:
        return {"": tuple(attrs.shape)}

    def macs(self, attrs: LearnedAttrs, inputs: list[TensorType], output: TensorType) -> int:
        return 0  # elementwise arithmetic is outside the core tier

    def initial(self, attrs: LearnedAttrs, library: str, random: str) -> str:
        """The tensor's initial value: `torch.full((C, 1, 1), 1e-06)`, or `random` (a call
        template that draws a standard normal tensor of a shape) times the std."""
        listed = isinstance(attrs.shape, (list, tuple))  # else a param holds the whole shape
        shape = source(tuple(attrs.shape) if listed else attrs.shape)
        if attrs.std is not None:
            return f"{random.format(shape)} * {source(attrs.std)}"
        fill = self.neutral if attrs.fill is None else attrs.fill
        named = None if is_symbolic(fill) else {0.0: "zeros", 1.0: "ones"}.get(fill)
        return (
            f"{library}.{named}({shape})" if named else f"{library}.full({shape}, {source(fill)})"
        )

    def lower_torch(self, attrs: LearnedAttrs, inputs: list[TensorType]) -> InlineCall:
        value = f"nn.Parameter({self.initial(attrs, 'torch', 'torch.randn({})')})"
        tensor = "{self}.view(-1, 1, 1)" if attrs.per_channel else "{self}"
        return InlineCall(self.combine.format("{0}", tensor), (("", value),))

    def lower_flax(self, attrs: LearnedAttrs, inputs: list[TensorType]) -> InlineCall:
        value = f"nnx.Param({self.initial(attrs, 'jnp', 'jax.random.normal(rngs.params(), {})')})"
        tensor = "{self}[...]"  # a per_channel one spans the last axis of NHWC as it is
        image = inputs[0].rank == 4 and not inputs[0].channels_last
        if image and not attrs.per_channel:  # held as in PyTorch, applied NHWC: the channels
            # are the third axis from the last
            axis = len(attrs.shape) - 3 if isinstance(attrs.shape, (list, tuple)) else -3
            tensor = f"jnp.moveaxis({tensor}, {axis}, -1)"
        return InlineCall(self.combine.format("{0}", tensor), (("", value),))


@register
class Scale(Learned):
    name = "scale"
    combine = "{0} * {1}"
    neutral = 1.0

    def saved(self, attrs: LearnedAttrs, inputs: list[TensorType], output: TensorType) -> Saved:
        return KEEPS_INPUT  # for the tensor's gradient

    summary = "multiply by a learned tensor (a parameter named as the node): a layer scale"


@register
class Bias(Learned):
    name = "bias"
    combine = "{0} + {1}"
    neutral = 0.0
    summary = "add a learned tensor (a parameter named as the node): a bias or an embedding"
