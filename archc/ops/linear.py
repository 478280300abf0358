"""Fully connected layers."""

from __future__ import annotations

from archc.ir.graph import Dim, TensorType
from archc.ir.symbolic import concrete, source
from archc.ops import register
from archc.ops.base import KEEPS_INPUT, Attrs, Count, Op, Saved, keywords
from archc.ops.lowering import InlineCall, ModuleCall, kernel_drawn_later


class LinearAttrs(Attrs):
    out: Count
    in_features: Count | None = None
    """The input's features, stated where a block's class cannot know them: after a flatten
    of a map whose size is a param (`in_channels * resolution**2`); checked against the
    input."""
    bias: bool = True
    flat: bool = False
    """Parameters as `<name>_weight` and `<name>_bias` of the enclosing module rather than a
    submodule's (nn.MultiheadAttention's `in_proj_weight`)."""


@register
class Linear(Op):
    name = "linear"
    fresh_output = True
    Attrs = LinearAttrs
    summary = "affine map of the last axis"

    def check(self, attrs: LinearAttrs, inputs: list[TensorType]) -> list[str]:
        got = inputs[0]
        if got.rank == 4 and not got.channels_last:
            return [
                f"expected features on the last axis (N, C), (N, L, D) or an NHWC image, "
                f"got the NCHW image {got}; flatten it first (or permute it to NHWC)"
            ]
        if got.rank < 2:
            return [f"expected an input of rank 2 or more, got {got}"]
        stated = attrs.in_features
        if stated is not None and concrete(stated) != concrete(got.shape[-1]):
            return [f"in_features={concrete(stated)}, but the input has {got.shape[-1]}: {got}"]
        return []

    def infer(self, attrs: LinearAttrs, inputs: list[TensorType]) -> TensorType:
        return inputs[0].with_shape((*inputs[0].shape[:-1], attrs.out))

    def parameters(self, attrs: LinearAttrs, inputs: list[TensorType]) -> dict[str, tuple]:
        weight = (attrs.out, _features(attrs, inputs))
        shapes = {"weight": weight, "bias": (attrs.out,)} if attrs.bias else {"weight": weight}
        return {("_" if attrs.flat else "") + key: shape for key, shape in shapes.items()}

    def saved(self, attrs: LinearAttrs, inputs: list[TensorType], output: TensorType) -> Saved:
        return KEEPS_INPUT  # for the weight's gradient

    def macs(self, attrs: LinearAttrs, inputs: list[TensorType], output: TensorType) -> int:
        return output.numel_per_sample() * inputs[0].shape[-1]

    def lower_torch(self, attrs: LinearAttrs, inputs: list[TensorType]) -> ModuleCall | InlineCall:
        if not attrs.flat:
            kwargs = keywords(("bias", attrs.bias, True))
            return ModuleCall("nn.Linear", (_features(attrs, inputs), attrs.out), kwargs)
        out, features = source(attrs.out), source(_features(attrs, inputs))
        weight = f"nn.Parameter(nn.init.xavier_uniform_(torch.empty({out}, {features})))"
        bias = f"nn.Parameter(torch.zeros({out}))"
        if not attrs.bias:
            return InlineCall("F.linear({0}, {self}_weight)", (("_weight", weight),))
        parameters = (("_weight", weight), ("_bias", bias))
        return InlineCall("F.linear({0}, {self}_weight, {self}_bias)", parameters)

    def lower_flax(self, attrs: LinearAttrs, inputs: list[TensorType]) -> ModuleCall | InlineCall:
        if not attrs.flat:
            kwargs = (*keywords(("use_bias", attrs.bias, True)), kernel_drawn_later())
            return ModuleCall("nnx.Linear", (_features(attrs, inputs), attrs.out), kwargs)
        # Kept in PyTorch's (out, in) layout: the weight converter moves only `kernel`s.
        out, features = source(attrs.out), source(_features(attrs, inputs))
        init = f"nnx.initializers.xavier_uniform()(rngs.params(), ({out}, {features}))"
        weight = ("_weight", f"nnx.Param({init})")
        if not attrs.bias:
            return InlineCall("{0} @ {self}_weight[...].T", (weight,))
        bias = ("_bias", f"nnx.Param(jnp.zeros(({out},)))")
        return InlineCall("{0} @ {self}_weight[...].T + {self}_bias[...]", (weight, bias))


def _features(attrs: LinearAttrs, inputs: list[TensorType]) -> Dim:
    """The input's features: as stated (`in_features`), else its last axis."""
    return inputs[0].shape[-1] if attrs.in_features is None else attrs.in_features
