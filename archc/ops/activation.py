"""Elementwise activations: shape-preserving, parameter-free, zero core-tier MACs."""

from __future__ import annotations

from typing import Literal

from archc.ir.graph import TensorType
from archc.ops import register
from archc.ops.base import Attrs, Op
from archc.ops.lowering import InlineCall, ModuleCall


class Activation(Op):
    """An elementwise function: a parameter-free torch module, a jax function."""

    torch_module: str
    jax_function: str

    def infer(self, attrs: Attrs, inputs: list[TensorType]) -> TensorType:
        return inputs[0]

    def macs(self, attrs: Attrs, inputs: list[TensorType], output: TensorType) -> int:
        return 0  # activations are outside the core tier

    def lower_torch(self, attrs: Attrs, inputs: list[TensorType]) -> ModuleCall:
        return ModuleCall(self.torch_module, (), tuple(attrs))

    def lower_flax(self, attrs: Attrs, inputs: list[TensorType]) -> InlineCall:
        return InlineCall(f"{self.jax_function}({{0}})")


def _activation(op_name: str, module: str, function: str) -> None:
    namespace = {
        "__module__": __name__,
        "name": op_name,
        "torch_module": module,
        "jax_function": function,
        "summary": f"elementwise {op_name}",
    }
    register(type(op_name.title(), (Activation,), namespace))


# PyTorch and jax agree on each of these (hardswish = x·relu6(x+3)/6, hardsigmoid = relu6(x+3)/6).
for _name, _module, _function in [
    ("relu", "nn.ReLU", "jax.nn.relu"),
    ("relu6", "nn.ReLU6", "jax.nn.relu6"),
    ("sigmoid", "nn.Sigmoid", "jax.nn.sigmoid"),
    ("silu", "nn.SiLU", "jax.nn.silu"),
    ("hardswish", "nn.Hardswish", "jax.nn.hard_swish"),
    ("hardsigmoid", "nn.Hardsigmoid", "jax.nn.hard_sigmoid"),
    ("tanh", "nn.Tanh", "jnp.tanh"),
]:
    _activation(_name, _module, _function)


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
        return InlineCall(f"jax.nn.leaky_relu({{0}}, negative_slope={attrs.negative_slope!r})")
