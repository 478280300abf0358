"""Pooling: windowed max / average with PyTorch's size rules, and adaptive average."""

from __future__ import annotations

from archc.ir.graph import Dim, TensorType
from archc.ir.symbolic import source
from archc.ops import register
from archc.ops.base import (
    KEEPS_INPUT,
    Attrs,
    Op,
    Padding,
    Saved,
    Window,
    expect_rank,
    keywords,
    pair,
)
from archc.ops.lowering import InlineCall, ModuleCall


class PoolAttrs(Attrs):
    kernel: Window
    stride: Window | None = None
    """Defaults to the kernel size, as in PyTorch."""
    padding: Padding = 0
    ceil_mode: bool = False


class AvgPoolAttrs(PoolAttrs):
    count_include_pad: bool = True


def pool_output_size(size: Dim, kernel: Dim, stride: Dim, padding: Dim, ceil_mode: bool) -> Dim:
    """PyTorch's pooling output length, including its ceil_mode rule (last window must start
    inside the input or its left padding)."""
    extra = stride - 1 if ceil_mode else 0
    out = (size + 2 * padding - (kernel - 1) - 1 + extra) // stride + 1
    if ceil_mode and (out - 1) * stride >= size + padding:
        out = out - 1
    return out


class WindowPool(Op):
    """Shared shape rule of max and average pooling."""

    torch_module: str

    def check(self, attrs: PoolAttrs, inputs: list[TensorType]) -> list[str]:
        problems = expect_rank(inputs, 4, "NCHW")
        if problems:
            return problems
        if any(2 * p > k for p, k in zip(pair(attrs.padding), pair(attrs.kernel))):
            return [
                f"padding must be at most half the kernel, got padding={attrs.padding} "
                f"for kernel={attrs.kernel}"
            ]
        output = self.infer(attrs, inputs)
        if min(output.shape[2:]) < 1:
            return [f"the window does not fit the input: {inputs[0]} gives {output}"]
        return []

    def infer(self, attrs: PoolAttrs, inputs: list[TensorType]) -> TensorType:
        n, c, h, w = inputs[0].shape
        stride = attrs.kernel if attrs.stride is None else attrs.stride
        sizes = zip((h, w), pair(attrs.kernel), pair(stride), pair(attrs.padding))
        return TensorType((n, c, *(pool_output_size(*axis, attrs.ceil_mode) for axis in sizes)))

    def saved(self, attrs: PoolAttrs, inputs: list[TensorType], output: TensorType) -> Saved:
        return KEEPS_INPUT

    def macs(self, attrs: PoolAttrs, inputs: list[TensorType], output: TensorType) -> int:
        return 0  # pooling is outside the core tier

    def lower_torch(self, attrs: PoolAttrs, inputs: list[TensorType]) -> ModuleCall:
        # PyTorch's defaults: a stride of the kernel, no padding, floor, padding counted.
        stride = attrs.kernel if attrs.stride is None else attrs.stride
        defaults = {"padding": 0, "ceil_mode": False, "count_include_pad": True}
        rest = [(key, value, defaults[key]) for key, value in attrs if key in defaults]
        kwargs = (("kernel_size", attrs.kernel), *keywords(("stride", stride, attrs.kernel), *rest))
        return ModuleCall(self.torch_module, (), kwargs)

    def lower_flax(self, attrs: PoolAttrs, inputs: list[TensorType]) -> InlineCall:
        # A helper of the generated file: PyTorch's window arithmetic (ceil_mode, divisors).
        stride = attrs.kernel if attrs.stride is None else attrs.stride
        rest = [f"{key}={source(value)}" for key, value in attrs if key not in ("kernel", "stride")]
        arguments = ", ".join(
            [f"kernel_size={source(attrs.kernel)}", f"stride={source(stride)}", *rest]
        )
        return InlineCall(f"{self.name}({{0}}, {arguments})")


@register
class MaxPool2d(WindowPool):
    def saved(self, attrs: PoolAttrs, inputs: list[TensorType], output: TensorType) -> Saved:
        return Saved(inputs=(0,), own=((output.numel_per_sample(), 8),))  # int64 indices

    name = "max_pool2d"
    Attrs = PoolAttrs
    torch_module = "nn.MaxPool2d"
    summary = "2-d max pooling (PyTorch's ceil_mode rule)"


@register
class AvgPool2d(WindowPool):
    name = "avg_pool2d"
    Attrs = AvgPoolAttrs
    torch_module = "nn.AvgPool2d"
    summary = "2-d average pooling (PyTorch's divisor: count_include_pad, clipped edge windows)"


class AdaptivePoolAttrs(Attrs):
    size: Window


@register
class AdaptiveAvgPool2d(Op):
    name = "adaptive_avg_pool2d"
    Attrs = AdaptivePoolAttrs
    summary = "average pooling to a fixed output size (PyTorch's bin edges)"

    def check(self, attrs: AdaptivePoolAttrs, inputs: list[TensorType]) -> list[str]:
        return expect_rank(inputs, 4, "NCHW")

    def infer(self, attrs: AdaptivePoolAttrs, inputs: list[TensorType]) -> TensorType:
        n, c = inputs[0].shape[:2]
        return TensorType((n, c, *pair(attrs.size)))

    def saved(
        self, attrs: AdaptivePoolAttrs, inputs: list[TensorType], output: TensorType
    ) -> Saved:
        # To 1 x 1 PyTorch takes a mean, whose backward needs only the input's size.
        return Saved() if pair(attrs.size) == (1, 1) else KEEPS_INPUT

    def macs(self, attrs: AdaptivePoolAttrs, inputs: list[TensorType], output: TensorType) -> int:
        return 0  # pooling is outside the core tier

    def lower_torch(self, attrs: AdaptivePoolAttrs, inputs: list[TensorType]) -> ModuleCall:
        return ModuleCall("nn.AdaptiveAvgPool2d", (pair(attrs.size),))

    def lower_flax(self, attrs: AdaptivePoolAttrs, inputs: list[TensorType]) -> InlineCall:
        return InlineCall(f"adaptive_avg_pool2d({{0}}, {source(pair(attrs.size))})")
