"""Ops that combine, cut and reorder tensors: sums, products, concatenation, slices, shuffles."""

from __future__ import annotations

import math
import re
from typing import ClassVar, Literal

from archc.ir.graph import TensorType
from archc.ir.symbolic import OR, Sym, choose, concrete, is_symbolic, source
from archc.ops import register
from archc.ops.base import (
    Attrs,
    Count,
    NoAttrs,
    Op,
    Saved,
    check_axis,
    expect_channel_groups,
    expect_rank,
    flax_axis,
)
from archc.ops.lowering import InlineCall, ModuleCall


@register
class Add(Op):
    name = "add"
    commutative = True
    overwrites_in_place = True  # `out += skip`
    fresh_output = True
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


@register
class Mean(Add):
    name = "mean"
    overwrites_in_place = False
    fresh_output = False
    summary = "elementwise mean of tensors of one shape (a distilled model's two heads)"

    def lower_torch(self, attrs: NoAttrs, inputs: list[TensorType]) -> InlineCall:
        return InlineCall(f"({super().lower_torch(attrs, inputs).template}) / {len(inputs)}")

    lower_flax = lower_torch


class ConcatAttrs(Attrs):
    axis: int = 1
    """A logical (NCHW) axis; the batch axis 0 is not allowed."""


@register
class Concat(Op):
    name = "concat"
    literal_attrs = ("axis",)
    Attrs = ConcatAttrs
    arity = None
    takes_list = True
    summary = "concatenation along one axis (channels by default)"

    def check(self, attrs: ConcatAttrs, inputs: list[TensorType]) -> list[str]:
        first = inputs[0]
        if problems := check_axis(attrs.axis, first):
            return problems
        for other in inputs[1:]:
            mismatch = [
                axis
                for axis in range(first.rank)
                if axis != attrs.axis and concrete(other.shape[axis]) != concrete(first.shape[axis])
            ]
            if other.rank != first.rank or mismatch:
                spatial = first.rank == 4 and other.rank == 4 and min(mismatch) >= 2
                advice = (
                    "; crop the larger (center_crop) or pad the smaller (center_pad)"
                    if spatial
                    else ""
                )
                shape = list(first.shape)
                shape[attrs.axis] = Sym("*", None)  # any size along the concatenated axis
                expected = TensorType(tuple(shape), first.dtype)
                return [
                    f"inputs must match on every axis but {attrs.axis}: expected {expected}, "
                    f"got {other}{advice}"
                ]
        return []

    def infer(self, attrs: ConcatAttrs, inputs: list[TensorType]) -> TensorType:
        shape = list(inputs[0].shape)
        shape[attrs.axis] = sum(
            (other.shape[attrs.axis] for other in inputs[1:]), shape[attrs.axis]
        )
        return inputs[0].with_shape(tuple(shape))

    def macs(self, attrs: ConcatAttrs, inputs: list[TensorType], output: TensorType) -> int:
        return 0  # data movement only

    def lower_torch(self, attrs: ConcatAttrs, inputs: list[TensorType]) -> InlineCall:
        values = ", ".join(f"{{{index}}}" for index in range(len(inputs)))
        return InlineCall(f"torch.cat([{values}], dim={attrs.axis})")

    def lower_flax(self, attrs: ConcatAttrs, inputs: list[TensorType]) -> InlineCall:
        values = ", ".join(f"{{{index}}}" for index in range(len(inputs)))
        axis = flax_axis(attrs.axis, inputs[0])
        return InlineCall(f"jnp.concatenate([{values}], axis={axis})")


@register
class Mul(Op):
    name = "mul"
    commutative = True
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
        return first.with_shape((first.shape[0], *sizes))

    def saved(self, attrs: NoAttrs, inputs: list[TensorType], output: TensorType) -> Saved:
        return Saved(inputs=(0, 1))  # each input's gradient reads the other

    def macs(self, attrs: NoAttrs, inputs: list[TensorType], output: TensorType) -> int:
        return 0  # elementwise arithmetic is outside the core tier

    def lower_torch(self, attrs: NoAttrs, inputs: list[TensorType]) -> InlineCall:
        return InlineCall("{0} * {1}")

    lower_flax = lower_torch


class SliceAttrs(Attrs):
    axis: int = 1
    """A logical (NCHW) axis, not the batch."""
    start: int = 0
    stop: int | None = None
    """Exclusive; None runs to the end."""


@register
class Slice(Op):
    name = "slice"
    returns_view = True
    literal_attrs = ("axis",)
    Attrs = SliceAttrs
    summary = "a contiguous range of one axis, channels by default (ShuffleNetV2's split)"

    def check(self, attrs: SliceAttrs, inputs: list[TensorType]) -> list[str]:
        kind = inputs[0]
        if problems := check_axis(attrs.axis, kind):
            return problems
        size = concrete(kind.shape[attrs.axis])
        stop = size if attrs.stop is None else concrete(attrs.stop)
        if not 0 <= concrete(attrs.start) < stop <= size:
            return [f"expected 0 <= start < stop <= {size}, got {attrs.start}:{attrs.stop}"]
        return []

    def infer(self, attrs: SliceAttrs, inputs: list[TensorType]) -> TensorType:
        shape = list(inputs[0].shape)
        stop = shape[attrs.axis] if attrs.stop is None else attrs.stop
        shape[attrs.axis] = stop - attrs.start
        return inputs[0].with_shape(tuple(shape))

    def macs(self, attrs: SliceAttrs, inputs: list[TensorType], output: TensorType) -> int:
        return 0  # a view

    def lower_torch(self, attrs: SliceAttrs, inputs: list[TensorType]) -> InlineCall:
        return InlineCall(_index(attrs.axis, attrs))

    def lower_flax(self, attrs: SliceAttrs, inputs: list[TensorType]) -> InlineCall:
        return InlineCall(_index(flax_axis(attrs.axis, inputs[0]), attrs))


def _index(axis: int, attrs: SliceAttrs) -> str:
    """`{0}[:, start:stop]` with the range on `axis` (-1: the last, written `...`)."""
    start = "" if not is_symbolic(attrs.start) and attrs.start == 0 else source(attrs.start)
    stop = "" if attrs.stop is None else source(attrs.stop)
    # As a formatter writes it: spaces around the colon unless the bounds are numbers (a
    # symbolic bound ends up as `self.name` in forward, which counts as an expression).
    simple = all(re.fullmatch(r"\d*", bound) for bound in (start, stop))
    colon = ":" if simple else f"{' ' if start else ''}:{' ' if stop else ''}"
    leading = "..., " if axis == -1 else ":, " * axis
    return f"{{0}}[{leading}{start}{colon}{stop}]"


class EitherAttrs(Attrs):
    first: bool
    """Whether the value is the first input; else it is the second."""


@register
class Either(Op):
    name = "either"
    arity = 2
    returns_view = True  # of the input it is
    Attrs = EitherAttrs
    summary = (
        "the first input where `first` holds, else the second: a wiring a block's params "
        "choose (torchvision's LastLevelP6P7 makes P6 from P5 or from C5); no computation"
    )

    def check(self, attrs: EitherAttrs, inputs: list[TensorType]) -> list[str]:
        if len({(kind.rank, kind.channels_last, kind.dtype) for kind in inputs}) == 1:
            return []
        return [
            f"the inputs must be of one rank, layout and dtype, got {inputs[0]} and {inputs[1]}"
        ]

    def infer(self, attrs: EitherAttrs, inputs: list[TensorType]) -> TensorType:
        first, second = inputs
        shape = tuple(choose(attrs.first, *sizes) for sizes in zip(first.shape, second.shape))
        return first.with_shape(shape)

    def macs(self, attrs: EitherAttrs, inputs: list[TensorType], output: TensorType) -> int:
        return 0

    def viewed_input(self, attrs: EitherAttrs) -> int:
        return 0 if concrete(attrs.first) else 1

    def lower_torch(self, attrs: EitherAttrs, inputs: list[TensorType]) -> InlineCall:
        if not is_symbolic(attrs.first):
            return InlineCall("{0}" if attrs.first else "{1}")
        return InlineCall(f"{{0}} if {source(attrs.first, OR)} else {{1}}")

    lower_flax = lower_torch


class ChannelShuffleAttrs(Attrs):
    groups: Count


@register
class ChannelShuffle(Op):
    name = "channel_shuffle"
    Attrs = ChannelShuffleAttrs
    summary = "interleave the channels of `groups` groups (ShuffleNet)"

    def check(self, attrs: ChannelShuffleAttrs, inputs: list[TensorType]) -> list[str]:
        return expect_channel_groups(inputs, "groups", attrs.groups)

    def infer(self, attrs: ChannelShuffleAttrs, inputs: list[TensorType]) -> TensorType:
        return inputs[0]

    def macs(self, attrs: ChannelShuffleAttrs, inputs: list[TensorType], output: TensorType) -> int:
        return 0  # data movement only

    def lower_torch(self, attrs: ChannelShuffleAttrs, inputs: list[TensorType]) -> ModuleCall:
        return ModuleCall("nn.ChannelShuffle", (attrs.groups,), random_init=False)

    def lower_flax(self, attrs: ChannelShuffleAttrs, inputs: list[TensorType]) -> InlineCall:
        # A helper function of the generated file, in PyTorch's channel order.
        return InlineCall(f"channel_shuffle({{0}}, {source(attrs.groups)})")


class FlattenAttrs(Attrs):
    start: int = 1


@register
class Flatten(Op):
    name = "flatten"
    reshapes = True
    literal_attrs = ("start",)
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

    def torch_module(self, attrs: FlattenAttrs, inputs: list[TensorType]) -> ModuleCall:
        return ModuleCall(
            "nn.Flatten", (attrs.start,) if attrs.start != 1 else (), random_init=False
        )

    def lower_flax(self, attrs: FlattenAttrs, inputs: list[TensorType]) -> InlineCall:
        kept = [source(dim) for dim in inputs[0].shape[1 : attrs.start]]
        shape = ", ".join(["{0}.shape[0]", *kept, "-1"])
        if inputs[0].rank == 4 and not inputs[0].channels_last:  # back to NCHW first, so the
            # merged order is PyTorch's
            return InlineCall(f"jnp.transpose({{0}}, (0, 3, 1, 2)).reshape({shape})")
        return InlineCall(f"{{0}}.reshape({shape})")


class _Centred(Op):
    """The first input, centred in the second's height and width: cropped or padded (U-Net's
    skips), by a helper of the same name in each backend."""

    arity = 2
    size_only_inputs = (1,)
    shrinks: ClassVar[bool]

    def check(self, attrs: NoAttrs, inputs: list[TensorType]) -> list[str]:
        problems = expect_rank(inputs, 4, "NCHW") or expect_rank(inputs[1:], 4, "NCHW")
        if problems:
            return problems
        given, like = (concrete(kind.shape[2:]) for kind in inputs)
        if any(a < b if self.shrinks else a > b for a, b in zip(given, like)):
            verb = "crop" if self.shrinks else "pad"
            return [f"cannot {verb} {inputs[0]} to the height and width of {inputs[1]}"]
        return []

    def infer(self, attrs: NoAttrs, inputs: list[TensorType]) -> TensorType:
        given, like = inputs
        return TensorType((*given.shape[:2], *like.shape[2:]))

    def macs(self, attrs: NoAttrs, inputs: list[TensorType], output: TensorType) -> int:
        return 0  # data movement only

    def lower_torch(self, attrs: NoAttrs, inputs: list[TensorType]) -> InlineCall:
        return InlineCall(f"{self.name}({{0}}, {{1}})")

    def lower_flax(self, attrs: NoAttrs, inputs: list[TensorType]) -> InlineCall:
        return InlineCall(f"{self.name}({{0}}, {{1}})")


@register
class CenterCrop(_Centred):
    name = "center_crop"
    returns_view = True
    shrinks = True
    summary = "crop the first input's centre to the second's height and width (U-Net skips)"


@register
class CenterPad(_Centred):
    name = "center_pad"
    shrinks = False
    summary = (
        "zero-pad the first input, centred, to the second's height and width (the odd row "
        "or column at the bottom or right, as U-Net ports pad their skips)"
    )


class SelectAttrs(Attrs):
    axis: int = 1
    index: int = 0


@register
class Select(Op):
    name = "select"
    returns_view = True
    literal_attrs = ("axis",)
    Attrs = SelectAttrs
    summary = "one index along an axis, which goes away (the class token: x[:, 0])"

    def check(self, attrs: SelectAttrs, inputs: list[TensorType]) -> list[str]:
        kind = inputs[0]
        if problems := check_axis(attrs.axis, kind):
            return problems
        size = concrete(kind.shape[attrs.axis])
        if not 0 <= attrs.index < size:
            return [f"index must be from 0 to {size - 1} on axis {attrs.axis}, got {attrs.index}"]
        return []

    def infer(self, attrs: SelectAttrs, inputs: list[TensorType]) -> TensorType:
        shape = inputs[0].shape
        return inputs[0].with_shape((*shape[: attrs.axis], *shape[attrs.axis + 1 :]))

    def macs(self, attrs: SelectAttrs, inputs: list[TensorType], output: TensorType) -> int:
        return 0  # a view

    def lower_torch(self, attrs: SelectAttrs, inputs: list[TensorType]) -> InlineCall:
        return InlineCall("{0}[" + ":, " * attrs.axis + f"{source(attrs.index)}]")

    def lower_flax(self, attrs: SelectAttrs, inputs: list[TensorType]) -> InlineCall:
        axis = flax_axis(attrs.axis, inputs[0])
        return InlineCall("{0}[" + ":, " * (axis % inputs[0].rank) + f"{source(attrs.index)}]")


class PermuteAttrs(Attrs):
    layout: Literal["NHWC", "NCHW"]
    """The layout it moves an image to."""


@register
class Permute(Op):
    name = "permute"
    returns_view = True
    Attrs = PermuteAttrs
    summary = "move an image between NCHW and NHWC (channels last, a grid of tokens)"

    def check(self, attrs: PermuteAttrs, inputs: list[TensorType]) -> list[str]:
        given = "NCHW" if attrs.layout == "NHWC" else "NHWC"
        return expect_rank(inputs, 4, given)

    def infer(self, attrs: PermuteAttrs, inputs: list[TensorType]) -> TensorType:
        n, a, b, c = inputs[0].shape
        shape = (n, b, c, a) if attrs.layout == "NHWC" else (n, c, a, b)
        return TensorType(shape, inputs[0].dtype, channels_last=attrs.layout == "NHWC")

    def macs(self, attrs: PermuteAttrs, inputs: list[TensorType], output: TensorType) -> int:
        return 0  # a view

    def lower_torch(self, attrs: PermuteAttrs, inputs: list[TensorType]) -> ModuleCall:
        dims = (0, 2, 3, 1) if attrs.layout == "NHWC" else (0, 3, 1, 2)
        return ModuleCall("Permute", (dims,), random_init=False)  # torchvision's, a helper

    def lower_flax(self, attrs: PermuteAttrs, inputs: list[TensorType]) -> InlineCall:
        return InlineCall("{0}")  # flax keeps every image NHWC already
