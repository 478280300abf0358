"""What each PyTorch layer, and each function a forward calls, becomes in a spec.

A layer keeps every attribute (the writer leaves out those at their defaults, so that
instances differing only in, say, a stride share a definition); a layer or function archc has
no op for is not here, and the importer says so.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import fx, nn

from archc.errors import ArchcError
from archc.importer.items import Op, Seq


def layer_op(module: nn.Module) -> Op | None:
    """The op a library layer is, or None for any other module."""
    kind = type(module)
    layer = LAYERS.get(kind) or LAYERS_BY_NAME.get(f"{kind.__module__}.{kind.__qualname__}")
    return _op(layer(module)) if layer is not None else None


def _op(layer: tuple[str, dict[str, Any]]) -> Op:
    """The op with every attribute (the writer leaves out those at their defaults, so that
    instances differing only in, say, a stride share a definition)."""
    name, attrs = layer
    return Op(name, attrs)


def _size(value: int | tuple[int, ...]) -> int | list[int]:
    """An int, or a pair when the two differ (PyTorch's kernel_size, stride, padding)."""
    if isinstance(value, int):
        return value
    if len(set(value)) == 1:
        return value[0]
    return list(value)


def _conv(module: nn.Conv2d) -> tuple[str, dict[str, Any]]:
    if module.padding_mode != "zeros" or isinstance(module.padding, str):
        raise ArchcError(
            f"a conv padded {module.padding!r} ({module.padding_mode}) cannot be imported"
        )
    attrs = dict(
        out=module.out_channels,
        kernel=_size(module.kernel_size),
        stride=_size(module.stride),
        padding=_size(module.padding),
        dilation=_size(module.dilation),
        groups=module.groups,
        bias=module.bias is not None,
    )
    if isinstance(module, nn.ConvTranspose2d):
        del attrs["groups"]
        attrs["output_padding"] = _size(module.output_padding)
        return "conv_transpose2d", attrs
    return "conv2d", attrs


def _batch_norm(module: nn.BatchNorm2d) -> tuple[str, dict[str, Any]]:
    if not (module.affine and module.track_running_stats) or module.momentum is None:
        raise ArchcError(
            "a batch norm without affine terms, tracked stats or a momentum cannot be imported"
        )
    return "batch_norm", dict(eps=module.eps, momentum=module.momentum)


def _pool(module: nn.MaxPool2d | nn.AvgPool2d) -> tuple[str, dict[str, Any]]:
    attrs = _pooling(module.kernel_size, module.stride, module.padding, module.ceil_mode)
    if isinstance(module, nn.MaxPool2d):
        if _size(module.dilation) != 1:
            raise ArchcError("a dilated max pool cannot be imported")
        return "max_pool2d", attrs
    if module.divisor_override is not None:
        raise ArchcError("an average pool with a divisor override cannot be imported")
    return "avg_pool2d", dict(attrs, count_include_pad=module.count_include_pad)


def _adaptive(module: nn.AdaptiveAvgPool2d) -> tuple[str, dict[str, Any]]:
    size = module.output_size
    if size is None or (isinstance(size, tuple) and None in size):
        raise ArchcError("an adaptive pool that keeps an axis cannot be imported")
    return "adaptive_avg_pool2d", dict(size=_size(size))


def _layer_norm(module: nn.LayerNorm) -> tuple[str, dict[str, Any]]:
    if not module.elementwise_affine or len(module.normalized_shape) != 1:
        raise ArchcError("a layer norm over more than the last axis cannot be imported")
    return "layer_norm", dict(eps=module.eps)


def _flatten(module: nn.Flatten) -> tuple[str, dict[str, Any]]:
    if module.end_dim != -1:
        raise ArchcError("a flatten that stops before the last axis cannot be imported")
    return "flatten", dict(start=module.start_dim)


LAYERS: dict[type, Callable[[Any], tuple[str, dict[str, Any]]]] = {
    nn.Conv2d: _conv,
    nn.ConvTranspose2d: _conv,
    nn.BatchNorm2d: _batch_norm,
    nn.LayerNorm: _layer_norm,
    nn.MaxPool2d: _pool,
    nn.AvgPool2d: _pool,
    nn.AdaptiveAvgPool2d: _adaptive,
    nn.Linear: lambda m: ("linear", dict(out=m.out_features, bias=m.bias is not None)),
    nn.Dropout: lambda m: ("dropout", dict(p=m.p)),
    nn.Flatten: _flatten,
    nn.ReLU: lambda m: ("relu", {}),
    nn.ReLU6: lambda m: ("relu6", {}),
    nn.SiLU: lambda m: ("silu", {}),
    nn.GELU: lambda m: ("gelu", dict(approximate=m.approximate)),
    nn.Hardswish: lambda m: ("hardswish", {}),
    nn.Hardsigmoid: lambda m: ("hardsigmoid", {}),
    nn.Sigmoid: lambda m: ("sigmoid", {}),
    nn.LeakyReLU: lambda m: ("leaky_relu", dict(negative_slope=m.negative_slope)),
}
"""A library layer → (op, attributes), all of them (the writer drops the defaults)."""


def _stochastic_depth(module: Any) -> tuple[str, dict[str, Any]]:
    if module.mode != "row":
        raise ArchcError("stochastic depth over the whole batch cannot be imported")
    return "stochastic_depth", dict(p=module.p)


def _permute(module: Any) -> tuple[str, dict[str, Any]]:
    layouts = {(0, 2, 3, 1): "NHWC", (0, 3, 1, 2): "NCHW"}
    layout = layouts.get(tuple(module.dims))
    if layout is None:
        raise ArchcError(f"a permute by {module.dims} cannot be imported")
    return "permute", dict(layout=layout)


def _window_attention(module: Any) -> tuple[str, dict[str, Any]]:
    """torchvision's Swin attention: its parameters and buffer are the op's, by name."""
    (window, *others), (shift, *shifts) = module.window_size, module.shift_size
    square = others == [window] and shifts == [shift]
    if not square or module.attention_dropout or module.dropout:
        raise ArchcError(
            "window attention on non-square windows or with dropout cannot be imported"
        )
    return "window_attention", dict(heads=module.num_heads, window=window, shift=shift)


LAYERS_BY_NAME: dict[str, Callable[[Any], tuple[str, dict[str, Any]]]] = {
    "torchvision.models.swin_transformer.ShiftedWindowAttention": _window_attention,
    "torchvision.ops.misc.Permute": _permute,
    "torchvision.ops.stochastic_depth.StochasticDepth": _stochastic_depth,
    "torchvision.models.convnext.LayerNorm2d": _layer_norm,
}
"""Layers of other libraries, by qualified class name (so that they need not be imported)."""


def function_item(node: fx.Node, where: str) -> tuple[Op | Seq, list[fx.Node]]:
    """The op for a function or method call in a forward (in `where`, for errors), and the
    values it reads."""
    target = node.target if node.op == "call_function" else f"Tensor.{node.target}"
    rule = FUNCTIONS.get(target) or NAMED_FUNCTIONS.get(getattr(target, "__name__", ""))
    if rule is None:
        name = getattr(target, "__name__", str(target))
        raise ArchcError(f"{where}: its forward calls {name}, which archc cannot import")
    name, attrs, inputs = rule(*node.args, **node.kwargs)
    if not inputs or not all(isinstance(value, fx.Node) for value in inputs):
        raise ArchcError(f"{where}: {name} of something other than tensors")
    if name == GLOBAL_MEAN:  # no op of its own: what the pooling head of a classifier does
        return Seq([Op("adaptive_avg_pool2d", dict(size=1)), Op("flatten", dict(start=1))]), inputs
    return _op((name, attrs)), inputs


GLOBAL_MEAN = "mean over height and width"


def _mean(x: Any, dim: Any = None, keepdim: bool = False, **_: Any) -> tuple[str, dict, list]:
    """`x.mean([2, 3])` of an image: a global average pool and a flatten."""
    dims = [dim] if isinstance(dim, int) else list(dim or [])
    if sorted(dims) != [2, 3] or keepdim:
        raise ArchcError("only a mean over an image's height and width imports")
    return GLOBAL_MEAN, {}, [x]


def _elementwise(name: str) -> Callable[..., tuple[str, dict, list]]:
    return lambda x, *_, **__: (name, {}, [x])


def _binary(name: str) -> Callable[..., tuple[str, dict, list]]:
    return lambda a, b: (name, {}, [a, b])


def _flatten_call(x: Any, start_dim: int = 0, end_dim: int = -1) -> tuple[str, dict, list]:
    if end_dim != -1:
        raise ArchcError("a flatten that stops before the last axis cannot be imported")
    return "flatten", dict(start=start_dim), [x]


def _avg_pool_call(
    x: Any,
    kernel_size: Any,
    stride: Any = None,
    padding: Any = 0,
    ceil_mode: bool = False,
    count_include_pad: bool = True,
    divisor_override: Any = None,
) -> tuple[str, dict, list]:
    if divisor_override is not None:
        raise ArchcError("an average pool with a divisor override cannot be imported")
    attrs = _pooling(kernel_size, stride, padding, ceil_mode)
    return "avg_pool2d", dict(attrs, count_include_pad=count_include_pad), [x]


def _max_pool_call(
    x: Any,
    kernel_size: Any,
    stride: Any = None,
    padding: Any = 0,
    dilation: Any = 1,
    ceil_mode: bool = False,
    return_indices: bool = False,
) -> tuple[str, dict, list]:
    if _size(dilation) != 1 or return_indices:
        raise ArchcError("a dilated max pool, or one returning indices, cannot be imported")
    return "max_pool2d", _pooling(kernel_size, stride, padding, ceil_mode), [x]


def _pooling(kernel: Any, stride: Any, padding: Any, ceil_mode: bool) -> dict[str, Any]:
    """A pool's attributes; PyTorch's stride defaults to the kernel (None, or an empty list)."""
    stride = stride if stride not in (None, [], ()) else kernel
    return dict(
        kernel=_size(kernel), stride=_size(stride), padding=_size(padding), ceil_mode=ceil_mode
    )


def _select(x: Any, index: Any) -> tuple[str, dict, list]:
    """`x[:, 0]`: one index of one axis, the others whole (the class token's output)."""
    parts = index if isinstance(index, tuple) else (index,)
    whole = slice(None)
    picked = [at for at, part in enumerate(parts) if part != whole]
    if len(picked) != 1 or not isinstance(parts[picked[0]], int):
        raise ArchcError(f"indexing by {index!r} cannot be imported")
    return "select", dict(axis=picked[0], index=parts[picked[0]]), [x]


FUNCTIONS: dict[Any, Callable[..., tuple[str, dict, list]]] = {
    operator.getitem: _select,
    operator.add: _binary("add"),
    operator.iadd: _binary("add"),
    torch.add: _binary("add"),
    operator.mul: _binary("mul"),
    torch.mul: _binary("mul"),
    torch.flatten: _flatten_call,
    "Tensor.flatten": _flatten_call,
    "Tensor.mean": _mean,
    torch.mean: _mean,
    torch.cat: lambda tensors, dim=0: ("concat", dict(axis=dim), list(tensors)),
    F.relu: _elementwise("relu"),
    torch.relu: _elementwise("relu"),
    "Tensor.relu": _elementwise("relu"),
    F.relu6: _elementwise("relu6"),
    F.silu: _elementwise("silu"),
    F.hardswish: _elementwise("hardswish"),
    F.hardsigmoid: _elementwise("hardsigmoid"),
    torch.sigmoid: _elementwise("sigmoid"),
    F.adaptive_avg_pool2d: lambda x, output_size: (
        "adaptive_avg_pool2d",
        dict(size=_size(output_size)),
        [x],
    ),
    F.dropout: lambda x, p=0.5, training=False, inplace=False: ("dropout", dict(p=p), [x]),
    F.avg_pool2d: _avg_pool_call,
    F.max_pool2d: _max_pool_call,
}
"""A function or method a forward calls → (op, attributes, tensors read)."""

NAMED_FUNCTIONS: dict[str, Callable[..., tuple[str, dict, list]]] = {
    "channel_shuffle": lambda x, groups: ("channel_shuffle", dict(groups=groups), [x]),
    "_patch_merging_pad": lambda x: ("patch_merge", {}, [x]),  # Swin's 2x2 merge, padded
}
"""Functions of a model's own module, by name, traced as one call (their bodies index
shapes, which torch.fx cannot follow)."""
