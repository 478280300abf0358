"""Convolutions."""

from __future__ import annotations

from archc.ir.graph import Dim, TensorType
from archc.ir.symbolic import Sym, SymPair, concrete
from archc.ops import register
from archc.ops.base import (
    KEEPS_INPUT,
    Attrs,
    Count,
    Op,
    Padding,
    Saved,
    Window,
    expect_rank,
    keywords,
    pair,
)
from archc.ops.lowering import ModuleCall, kernel_drawn_later


class ConvAttrs(Attrs):
    """What plain and transposed convolutions share."""

    out: Count
    kernel: Window
    stride: Window = 1
    padding: Padding = 0
    dilation: Window = 1
    bias: bool = True


class Conv2dAttrs(ConvAttrs):
    groups: Count = 1


def conv_output_size(size: Dim, kernel: Dim, stride: Dim, padding: Dim, dilation: Dim) -> Dim:
    """PyTorch's output length of a convolution or pooling window along one axis."""
    return (size + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1


@register
class Conv2d(Op):
    name = "conv2d"
    fresh_output = True
    Attrs = Conv2dAttrs
    summary = "2-d convolution over NCHW; symmetric padding per axis"

    def check(self, attrs: Conv2dAttrs, inputs: list[TensorType]) -> list[str]:
        problems = expect_rank(inputs, 4, "NCHW")
        if problems:
            return problems
        channels = inputs[0].channels
        if attrs.groups < 1 or channels % attrs.groups or attrs.out % attrs.groups:
            return [
                f"groups={attrs.groups} must divide both the input channels and out, "
                f"got {channels} input channels and out={attrs.out}"
            ]
        output = self.infer(attrs, inputs)
        if min(output.shape[2:]) < 1:
            return [f"the kernel does not fit the input: {inputs[0]} gives {output}"]
        return []

    def infer(self, attrs: Conv2dAttrs, inputs: list[TensorType]) -> TensorType:
        n, _, h, w = inputs[0].shape
        sizes = zip(
            (h, w),
            pair(attrs.kernel),
            pair(attrs.stride),
            pair(attrs.padding),
            pair(attrs.dilation),
        )
        return TensorType((n, attrs.out, *(conv_output_size(*axis) for axis in sizes)))

    def parameters(self, attrs: Conv2dAttrs, inputs: list[TensorType]) -> dict[str, tuple]:
        weight = (attrs.out, inputs[0].channels // attrs.groups, *pair(attrs.kernel))
        return {"weight": weight, "bias": (attrs.out,)} if attrs.bias else {"weight": weight}

    def saved(self, attrs: Conv2dAttrs, inputs: list[TensorType], output: TensorType) -> Saved:
        return KEEPS_INPUT  # for the weight's gradient

    def macs(self, attrs: Conv2dAttrs, inputs: list[TensorType], output: TensorType) -> int:
        kh, kw = pair(attrs.kernel)
        return output.numel_per_sample() * (inputs[0].channels // attrs.groups) * kh * kw

    def lower_torch(self, attrs: Conv2dAttrs, inputs: list[TensorType]) -> ModuleCall:
        kwargs = (
            ("kernel_size", attrs.kernel),
            *keywords(
                ("stride", attrs.stride, 1),
                ("padding", attrs.padding, 0),
                ("dilation", attrs.dilation, 1),
                ("groups", attrs.groups, 1),
                ("bias", attrs.bias, True),
            ),
        )
        return ModuleCall("nn.Conv2d", (inputs[0].channels, attrs.out), kwargs)

    def lower_flax(self, attrs: Conv2dAttrs, inputs: list[TensorType]) -> ModuleCall:
        sides = pair(attrs.padding)
        padding = (  # explicit, never 'SAME'
            Sym(f"tuple((side, side) for side in {sides.src})", tuple(concrete(sides)))
            if isinstance(sides, SymPair)
            else tuple((side, side) for side in sides)
        )
        kwargs = (
            ("kernel_size", pair(attrs.kernel)),
            ("padding", padding),  # always written: flax's default is 'SAME'
            *keywords(
                ("strides", pair(attrs.stride), 1),
                ("kernel_dilation", pair(attrs.dilation), 1),
                ("feature_group_count", attrs.groups, 1),
                ("use_bias", attrs.bias, True),
            ),
            kernel_drawn_later(),
        )
        return ModuleCall("nnx.Conv", (inputs[0].channels, attrs.out), kwargs)


class ConvTranspose2dAttrs(ConvAttrs):
    output_padding: Padding = 0
    """Extra rows and columns at the bottom and right, to reach an exact size."""


@register
class ConvTranspose2d(Op):
    name = "conv_transpose2d"
    fresh_output = True
    Attrs = ConvTranspose2dAttrs
    summary = "2-d transposed convolution (up-convolution) over NCHW, as PyTorch's"

    def check(self, attrs: ConvTranspose2dAttrs, inputs: list[TensorType]) -> list[str]:
        problems = expect_rank(inputs, 4, "NCHW")
        for extra, stride, dilation in zip(
            pair(attrs.output_padding), pair(attrs.stride), pair(attrs.dilation)
        ):
            if not problems and extra >= max(stride, dilation):
                problems = [f"output_padding must be smaller than stride or dilation, got {extra}"]
        output = None if problems else self.infer(attrs, inputs)
        if output is not None and min(output.shape[2:]) < 1:
            return [f"the padding leaves no output: {inputs[0]} gives {output}"]
        return problems

    def infer(self, attrs: ConvTranspose2dAttrs, inputs: list[TensorType]) -> TensorType:
        n, _, h, w = inputs[0].shape
        sizes = [
            (size - 1) * stride - 2 * padding + dilation * (kernel - 1) + extra + 1
            for size, kernel, stride, padding, extra, dilation in zip(
                (h, w),
                pair(attrs.kernel),
                pair(attrs.stride),
                pair(attrs.padding),
                pair(attrs.output_padding),
                pair(attrs.dilation),
            )
        ]
        return TensorType((n, attrs.out, *sizes))

    def parameters(self, attrs: ConvTranspose2dAttrs, inputs: list[TensorType]) -> dict:
        weight = (inputs[0].channels, attrs.out, *pair(attrs.kernel))
        return {"weight": weight, "bias": (attrs.out,)} if attrs.bias else {"weight": weight}

    def saved(
        self, attrs: ConvTranspose2dAttrs, inputs: list[TensorType], output: TensorType
    ) -> Saved:
        return KEEPS_INPUT  # for the weight's gradient

    def macs(
        self, attrs: ConvTranspose2dAttrs, inputs: list[TensorType], output: TensorType
    ) -> int:
        kh, kw = pair(attrs.kernel)  # every input element meets every kernel tap once
        return inputs[0].numel_per_sample() * attrs.out * kh * kw

    def lower_torch(self, attrs: ConvTranspose2dAttrs, inputs: list[TensorType]) -> ModuleCall:
        kwargs = (
            ("kernel_size", attrs.kernel),
            *keywords(
                ("stride", attrs.stride, 1),
                ("padding", attrs.padding, 0),
                ("output_padding", attrs.output_padding, 0),
                ("dilation", attrs.dilation, 1),
                ("bias", attrs.bias, True),
            ),
        )
        return ModuleCall("nn.ConvTranspose2d", (inputs[0].channels, attrs.out), kwargs)

    def lower_flax(self, attrs: ConvTranspose2dAttrs, inputs: list[TensorType]) -> ModuleCall:
        # PyTorch's transposed conv is flax's with the kernel transposed (flipped, in/out
        # swapped) and explicit padding dilation·(kernel−1)−padding, plus output_padding after.
        padding = tuple(
            (dilation * (kernel - 1) - side, dilation * (kernel - 1) - side + extra)
            for kernel, side, extra, dilation in zip(
                pair(attrs.kernel),
                pair(attrs.padding),
                pair(attrs.output_padding),
                pair(attrs.dilation),
            )
        )
        kwargs = (
            ("kernel_size", pair(attrs.kernel)),
            ("padding", padding),  # always written: flax's default is 'SAME'
            *keywords(
                ("strides", pair(attrs.stride), 1),
                ("kernel_dilation", pair(attrs.dilation), 1),
                ("use_bias", attrs.bias, True),
            ),
            ("transpose_kernel", True),
            kernel_drawn_later(),
        )
        return ModuleCall("nnx.ConvTranspose", (inputs[0].channels, attrs.out), kwargs)
