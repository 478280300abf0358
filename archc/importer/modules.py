"""A PyTorch module tree → a tree of spec items: ops, sequences and block instances.

A library layer is an op with the attributes that differ from the op's defaults; an
`nn.Sequential` numbered 0, 1, … a sequence; any other module (or a Sequential with named
children) a block instance, its body traced with torch.fx from its `forward`, the children
left whole. What archc cannot say (a module called twice with weights, a parameter held
outside any layer, a call it does not know) is an error naming the module.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import fx, nn

from archc.errors import ArchcError


@dataclass
class Op:
    name: str
    attrs: dict[str, Any] = field(default_factory=dict)


@dataclass
class Seq:
    items: list[Item]


@dataclass
class Node:
    name: str
    item: Item
    inputs: list[str]
    """Values it reads: `input` or earlier nodes of the same body."""
    when: str | None = None
    """The param that switches it on (a block definition's optional node)."""


@dataclass
class Instance:
    """A module written as a block: its class, and a body (a list body: a sequence block)."""

    kind: str
    body: list[Node]
    listed: bool = False
    """A numbered sequence (an `nn.Sequential` subclass): its body is a YAML list."""


Item = Op | Seq | Instance


def module_item(module: nn.Module, path: str) -> Item:
    """The spec item for `module`, found at `path` in the model."""
    kind = type(module)
    layer = LAYERS.get(kind) or LAYERS_BY_NAME.get(f"{kind.__module__}.{kind.__qualname__}")
    if layer is not None:
        return _op(layer(module))
    children = list(module.named_children())
    if isinstance(module, nn.Sequential):
        items = [module_item(child, _join(path, name)) for name, child in children]
        numbered = [name for name, _ in children] == [str(at) for at in range(len(children))]
        _no_own_parameters(module, path)
        if numbered and type(module) is nn.Sequential:
            return Seq(items)
        names = [name for name, _ in children]
        chain = [
            Node(name, item, [previous])
            for name, item, previous in zip(names, items, ["input", *names])
        ]
        kind = type(module).__name__ if type(module) is not nn.Sequential else _camel(path)
        return Instance(kind, chain, listed=numbered)
    return Instance(type(module).__name__, traced_body(module, path))


def traced_body(module: nn.Module, path: str) -> list[Node]:
    """The body of a module's forward: one node per call, named by the child called (a
    stateless child called again, and a function, by torch.fx's name for the call)."""
    helpers = type(module).forward.__globals__
    wrapped = tuple(helpers[name] for name in NAMED_FUNCTIONS if callable(helpers.get(name)))
    try:
        graph = _ChildrenWhole(autowrap_functions=wrapped).trace(module)
    except Exception as error:  # control flow on a traced value, and the like
        message = f"{type(error).__name__}: {error}".splitlines()[0]
        raise ArchcError(f"{_where(path)}: torch.fx cannot trace its forward ({message})") from None
    body = _Body(module, path, _scales(graph, module))
    for node in graph.nodes:
        body.add(node)
    unused = [
        name for name, child in body.children.items() if name not in body.called and _holds(child)
    ]
    if unused:
        raise ArchcError(f"{_where(path)}: its forward never calls {', '.join(unused)}")
    return body.nodes


class _Body:
    """A traced forward read node by node into spec nodes."""

    def __init__(self, module: nn.Module, path: str, scales: dict[fx.Node, str]) -> None:
        _no_own_parameters(module, path, set(scales.values()))
        self.module, self.path, self.scales = module, path, scales
        self.children = dict(module.named_children())
        self.names: dict[fx.Node, str] = {}
        self.nodes: list[Node] = []
        self.called: set[str] = set()

    def add(self, node: fx.Node) -> None:
        if node.op == "placeholder":
            if self.names:
                raise ArchcError(f"{self.where}: a forward of several inputs cannot be imported")
            self.names[node] = "input"
        elif node.op == "output":
            (result,) = node.args
            if not self.nodes:
                raise ArchcError(f"{self.where}: its forward returns its input unchanged")
            if not isinstance(result, fx.Node) or self.names.get(result) != self.nodes[-1].name:
                raise ArchcError(f"{self.where}: the forward must return its last value")
        elif node.op == "call_module":
            self.child(node)
        elif node in self.scales:
            pass  # the parameter of a `scale` node, made at the product that reads it
        elif node in _products(self.scales):
            own, (value,) = _scaled(node, self.scales)
            shape = list(getattr(self.module, self.scales[own]).shape)
            self.append(node, self.scales[own], Op("scale", dict(shape=shape)), [value])
        elif node.op == "call_method" and node.target == "chunk":
            _halves(node, self.names, self.path)  # read by the getitems that follow
        elif node.target is operator.getitem and _is_chunk(node.args[0]):
            half = node.args[1]
            self.append(node, self.free(f"half{half}"), _half(half), [node.args[0].args[0]])
        elif node.op in ("call_function", "call_method"):
            op, inputs = _function(node, self.path)
            self.append(node, self.free(node.name), op, inputs)
        else:
            raise ArchcError(f"{self.where}: {node.op} {node.target} cannot be imported")

    def child(self, node: fx.Node) -> None:
        """A call of a child: a node named as the child (again: by torch.fx's name)."""
        child = self.children.get(node.target)
        if child is None:
            raise ArchcError(f"{self.where}: calls {node.target}, not a child of its own")
        again = node.target in self.called
        if again and _holds(child):
            raise ArchcError(
                f"{self.where}: calls {node.target} twice; archc has no shared weights"
            )
        if len(node.args) != 1 or node.kwargs or not isinstance(node.args[0], fx.Node):
            raise ArchcError(f"{self.where}: calls {node.target} with other than one tensor")
        self.called.add(node.target)
        if isinstance(child, nn.Identity):  # nothing to build: its reader reads its input
            self.names[node] = self.names[node.args[0]]
            return
        name = self.free(node.name) if again else node.target
        item = module_item(child, _join(self.path, node.target))
        self.append(node, name, item, list(node.args))

    def append(self, node: fx.Node, name: str, item: Item, inputs: list[fx.Node]) -> None:
        self.nodes.append(Node(name, item, [self.names[value] for value in inputs]))
        self.names[node] = name

    def free(self, name: str) -> str:
        """A node name that is no child's and no earlier node's."""
        taken = set(self.children) | {node.name for node in self.nodes}
        candidate, suffix = name, 1
        while candidate in taken:
            candidate, suffix = f"{name}_{suffix}", suffix + 1
        return candidate

    @property
    def where(self) -> str:
        return _where(self.path)


def _is_chunk(value: Any) -> bool:
    return isinstance(value, fx.Node) and value.op == "call_method" and value.target == "chunk"


def _halves(node: fx.Node, names: dict[fx.Node, str], path: str) -> None:
    """`x.chunk(2, dim=1)` of the block's input (ShuffleNetV2's split), whose halves become
    two `slice` nodes; anything else is refused."""
    source, chunks, *rest = node.args
    dim = node.kwargs.get("dim", rest[0] if rest else 0)
    if names.get(source) != "input" or chunks != 2 or dim != 1:
        raise ArchcError(f"{_where(path)}: only a split of its input's channels in two imports")


def _half(index: int) -> Op:
    """A half of the input's channels, as `chunk(2, dim=1)` splits them (the first half
    takes the odd channel)."""
    middle = "(in_channels + 1) // 2"
    return Op("slice", dict(stop=middle) if index == 0 else dict(start=middle))


class _ChildrenWhole(fx.Tracer):
    """Traces one module's own forward: every child is called whole."""

    def is_leaf_module(self, module: nn.Module, qualified_name: str) -> bool:
        return True


def _holds(module: nn.Module) -> bool:
    return any(True for _ in module.parameters()) or any(True for _ in module.buffers())


def _scales(graph: fx.Graph, module: nn.Module) -> dict[fx.Node, str]:
    """The module's own parameters that its forward only multiplies one tensor by (a
    ConvNeXt layer scale): each becomes a `scale` node named as the parameter."""
    own = dict(module.named_parameters(recurse=False))
    found = {}
    for node in graph.nodes:
        users = list(node.users)
        multiplies = (
            len(users) == 1
            and users[0].target in (operator.mul, torch.mul)
            and len(users[0].args) == 2
        )
        if node.op == "get_attr" and node.target in own and multiplies:
            found[node] = node.target
    return found


def _products(scales: dict[fx.Node, str]) -> set[fx.Node]:
    return {next(iter(node.users)) for node in scales}


def _scaled(product: fx.Node, scales: dict[fx.Node, str]) -> tuple[fx.Node, list[fx.Node]]:
    """The parameter a product multiplies by, and the tensor it multiplies."""
    own = next(arg for arg in product.args if arg in scales)
    return own, [arg for arg in product.args if arg is not own]


def _no_own_parameters(module: nn.Module, path: str, allowed: set[str] = frozenset()) -> None:
    own = [*module.named_parameters(recurse=False), *module.named_buffers(recurse=False)]
    own = [(name, tensor) for name, tensor in own if name not in allowed]
    if own:
        names = ", ".join(name for name, _ in own)
        raise ArchcError(f"{_where(path)}: holds {names} outside any layer; archc cannot import it")


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


LAYERS_BY_NAME: dict[str, Callable[[Any], tuple[str, dict[str, Any]]]] = {
    "torchvision.ops.misc.Permute": _permute,
    "torchvision.ops.stochastic_depth.StochasticDepth": _stochastic_depth,
    "torchvision.models.convnext.LayerNorm2d": _layer_norm,
}
"""Layers of other libraries, by qualified class name (so that they need not be imported)."""


def _function(node: fx.Node, path: str) -> tuple[Op | Seq, list[fx.Node]]:
    """The op for a function or method call in a forward, and the values it reads."""
    target = node.target if node.op == "call_function" else f"Tensor.{node.target}"
    rule = FUNCTIONS.get(target) or NAMED_FUNCTIONS.get(getattr(target, "__name__", ""))
    if rule is None:
        name = getattr(target, "__name__", str(target))
        raise ArchcError(f"{_where(path)}: its forward calls {name}, which archc cannot import")
    name, attrs, inputs = rule(*node.args, **node.kwargs)
    if not inputs or not all(isinstance(value, fx.Node) for value in inputs):
        raise ArchcError(f"{_where(path)}: {name} of something other than tensors")
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


FUNCTIONS: dict[Any, Callable[..., tuple[str, dict, list]]] = {
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
}
"""Functions of a model's own module, by name, traced as one call (their bodies index
shapes, which torch.fx cannot follow)."""


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def _where(path: str) -> str:
    return f"module {path}" if path else "the model"


def _camel(path: str) -> str:
    """A block name for a plain Sequential with named children: its attribute, in CamelCase."""
    last = path.rpartition(".")[2] or "Model"
    return "".join(part[:1].upper() + part[1:] for part in last.split("_") if part)
