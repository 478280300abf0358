"""Elementwise activations: shape-preserving, parameter-free, zero core-tier MACs."""

from __future__ import annotations

from typing import Literal

from archc.ir.graph import TensorType
from archc.ops import register
from archc.ops.base import Attrs, NoAttrs, Op
from archc.ops.lowering import ModuleCall


class Activation(Op):
    """An elementwise function lowered to a parameter-free torch module."""

    torch_module: str

    def infer(self, attrs: Attrs, inputs: list[TensorType]) -> TensorType:
        return inputs[0]

    def macs(self, attrs: Attrs, inputs: list[TensorType], output: TensorType) -> int:
        return 0  # activations are outside the core tier

    def lower_torch(self, attrs: Attrs, inputs: list[TensorType]) -> ModuleCall:
        return ModuleCall(self.torch_module, (), tuple(attrs))


def _activation(op_name: str, module: str, attrs: type[Attrs] = NoAttrs) -> type[Activation]:
    cls = type(
        op_name.title().replace("_", ""),
        (Activation,),
        {
            "name": op_name,
            "torch_module": module,
            "Attrs": attrs,
            "summary": f"elementwise {op_name}",
        },
    )
    return register(cls)  # type: ignore[return-value]


class GeluAttrs(Attrs):
    approximate: Literal["none", "tanh"] = "none"
    """'none' is the exact erf form (PyTorch's default; JAX defaults to tanh)."""


for _name, _module in [
    ("relu", "nn.ReLU"),
    ("relu6", "nn.ReLU6"),
    ("sigmoid", "nn.Sigmoid"),
    ("silu", "nn.SiLU"),
    ("hardswish", "nn.Hardswish"),
    ("hardsigmoid", "nn.Hardsigmoid"),
    ("tanh", "nn.Tanh"),
]:
    _activation(_name, _module)
_activation("gelu", "nn.GELU", GeluAttrs)
