"""Elementwise activations: shape-preserving, parameter-free, zero core-tier MACs."""

from __future__ import annotations

from typing import ClassVar, Literal

from archc.ir.graph import TensorType
from archc.ir.symbolic import source
from archc.ops import register
from archc.ops.base import KEEPS_INPUT, KEEPS_OUTPUT, Attrs, Op, Saved, keywords
from archc.ops.lowering import InlineCall, ModuleCall


class Activation(Op):
    """An elementwise function: a parameter-free torch module, a jax function."""

    torch_module: str
    jax_function: str
    keeps_output: ClassVar[bool] = False
    """Whether its backward reads its output (relu, sigmoid, tanh), not its input."""

    def saved(self, attrs: Attrs, inputs: list[TensorType], output: TensorType) -> Saved:
        return KEEPS_OUTPUT if self.keeps_output else KEEPS_INPUT

    def infer(self, attrs: Attrs, inputs: list[TensorType]) -> TensorType:
        return inputs[0]

    def macs(self, attrs: Attrs, inputs: list[TensorType], output: TensorType) -> int:
        return 0  # activations are outside the core tier

    def lower_torch(self, attrs: Attrs, inputs: list[TensorType]) -> ModuleCall:
        fields = attrs.fields()  # the op's defaults are PyTorch's (approximate, negative_slope)
        return ModuleCall(
            self.torch_module, (), keywords(*((k, v, fields[k].default) for k, v in attrs))
        )

    def lower_flax(self, attrs: Attrs, inputs: list[TensorType]) -> InlineCall:
        return InlineCall(f"{self.jax_function}({{0}})")


def _activation(
    op_name: str, module: str, function: str, keeps_output: bool, in_place: bool
) -> None:
    namespace = {
        "__module__": __name__,
        "name": op_name,
        "torch_module": module,
        "jax_function": function,
        "keeps_output": keeps_output,
        "overwrites_in_place": in_place,
        "summary": f"elementwise {op_name}",
    }
    register(type(op_name.title(), (Activation,), namespace))


# PyTorch and jax agree on each of these (hardswish = x·relu6(x+3)/6, hardsigmoid = relu6(x+3)/6).
# The last columns: whether PyTorch's backward reads the output rather than the input, and
# whether the generated code runs it in place where that is safe (`nn.ReLU(inplace=True)`).
for _name, _module, _function, _keeps_output, _in_place in [
    ("relu", "nn.ReLU", "jax.nn.relu", True, True),
    ("relu6", "nn.ReLU6", "jax.nn.relu6", False, True),
    ("sigmoid", "nn.Sigmoid", "jax.nn.sigmoid", True, False),
    ("silu", "nn.SiLU", "jax.nn.silu", False, True),
    ("hardswish", "nn.Hardswish", "jax.nn.hard_swish", False, True),
    ("hardsigmoid", "nn.Hardsigmoid", "jax.nn.hard_sigmoid", False, False),
    ("tanh", "nn.Tanh", "jnp.tanh", True, False),
]:
    _activation(_name, _module, _function, _keeps_output, _in_place)


class GeluAttrs(Attrs):
    approximate: Literal["none", "tanh"] = "none"
    """'none' is the exact erf form (PyTorch's default; jax defaults to tanh)."""


@register
class Gelu(Activation):
    name = "gelu"
    Attrs = GeluAttrs
    torch_module = "nn.GELU"
    summary = "elementwise gelu, exact unless approximate: tanh"

    def lower_flax(self, attrs: GeluAttrs, inputs: list[TensorType]) -> InlineCall:
        return InlineCall(f"jax.nn.gelu({{0}}, approximate={attrs.approximate == 'tanh'})")


class LeakyReluAttrs(Attrs):
    negative_slope: float = 0.01


@register
class LeakyRelu(Activation):
    name = "leaky_relu"
    Attrs = LeakyReluAttrs
    torch_module = "nn.LeakyReLU"
    summary = "elementwise leaky relu (slope negative_slope below zero)"

    def lower_flax(self, attrs: LeakyReluAttrs, inputs: list[TensorType]) -> InlineCall:
        slope = source(attrs.negative_slope)  # a number, or a param of the block
        return InlineCall(f"jax.nn.leaky_relu({{0}}, negative_slope={slope})")
