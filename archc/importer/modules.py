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
    path: str = ""
    """Where the module is in the model."""


Item = Op | Seq | Instance


def module_item(module: nn.Module, path: str, dense: bool = False) -> Item:
    """The spec item for `module`, found at `path` in the model (`dense`: called with the
    list of every feature map before it, see `_Body.dense_child`)."""
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
        return Instance(kind, chain, listed=numbered, path=path)
    return Instance(type(module).__name__, traced_body(module, path, dense), path=path)


def traced_body(module: nn.Module, path: str, dense: bool = False) -> list[Node]:
    """The body of a module's forward: one node per call, named by the child called (a
    stateless child called again, and a function, by torch.fx's name for the call)."""
    helpers = type(module).forward.__globals__
    wrapped = tuple(helpers[name] for name in NAMED_FUNCTIONS if callable(helpers.get(name)))
    try:
        graph = _ChildrenWhole(autowrap_functions=wrapped).trace(module)
    except Exception as error:  # control flow on a traced value, and the like
        message = f"{type(error).__name__}: {error}".splitlines()[0]
        raise ArchcError(f"{_where(path)}: torch.fx cannot trace its forward ({message})") from None
    body = _Body(module, path, _learned(graph, module))
    for node in graph.nodes:
        if dense and node.op == "output":  # it returns what it read and what it made, joined
            last = body.nodes[-1].name
            body.nodes.append(Node(body.free("cat"), Op("concat", {}), ["input", last]))
            body.names[node.args[0]] = body.nodes[-1].name
        body.add(node)
    unused = [
        name for name, child in body.children.items() if name not in body.called and _holds(child)
    ]
    if unused:
        raise ArchcError(f"{_where(path)}: its forward never calls {', '.join(unused)}")
    return body.nodes


class _Body:
    """A traced forward read node by node into spec nodes."""

    def __init__(self, module: nn.Module, path: str, learned: dict[fx.Node, _Learned]) -> None:
        _no_own_parameters(module, path, {tensor.name for tensor in learned.values()})
        self.module, self.path, self.learned = module, path, learned
        self.folded = {node for tensor in learned.values() for node in tensor.folded}
        self.shapes: set[fx.Node] = set()
        """Values that are sizes, not tensors (x.shape, x.dim(), sums and asserts of them)."""
        self.children = dict(module.named_children())
        self.names: dict[fx.Node, str] = {}
        self.nodes: list[Node] = []
        self.called: set[str] = set()
        self.features: list[fx.Node] = []
        """Dense connectivity: the feature maps so far, whose concatenation the last dense
        child returned (DenseNet's block keeps them in a list)."""

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
        elif _is_size(node, self.shapes):
            self.shapes.add(node)  # checks and arithmetic on sizes: nothing to build
        elif node in self.folded:
            pass  # a parameter (or its expand), made into the node that applies it
        elif node in self.learned:
            tensor = self.learned[node]
            self.append(node, tensor.name, tensor.op, [tensor.reads])
        elif _is_tokens(node):  # x.reshape(n, c, h * w).permute(0, 2, 1)
            self.append(node, self.free("tokens"), Op("to_tokens"), [node.args[0].args[0]])
        elif _is_flattening(node):
            pass  # its permute makes the tokens
        elif node.target is operator.getitem and self.is_attention(node.args[0]):
            if node.args[1] != 0 and node.users:
                raise ArchcError(
                    f"{self.where}: reads the attention weights, which archc does not give"
                )
            self.names[node] = self.names[node.args[0]]
        elif node.op == "call_method" and node.target == "chunk":
            _halves(node, self.names, self.path)  # read by the getitems that follow
        elif node.target is operator.getitem and _is_chunk(node.args[0]):
            half = node.args[1]
            self.append(node, self.free(f"half{half}"), _half(half), [node.args[0].args[0]])
        elif node.target is torch.cat and self.joins_features(node):
            self.names[node] = self.names[self.features[-1]]  # the last dense child's output
        elif node.target is torch.cat and self.names.get(node.args[0]) == "input":
            self.names[node] = "input"  # a dense layer's list of inputs, given joined
        elif node.op in ("call_function", "call_method"):
            op, inputs = _function(node, self.path)
            name = op.name if isinstance(op, Op) else node.name  # `select`, not `getitem_5`
            self.append(node, self.free(name), op, inputs)
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
        if isinstance(child, nn.MultiheadAttention):
            self.called.add(node.target)
            item = _self_attention(child, node, _join(self.path, node.target))
            self.append(node, node.target, item, [node.args[0]])
            return
        if len(node.args) == 1 and isinstance(node.args[0], (list, tuple)) and not node.kwargs:
            self.dense_child(node, child)
            return
        if len(node.args) != 1 or node.kwargs or not isinstance(node.args[0], fx.Node):
            raise ArchcError(f"{self.where}: calls {node.target} with other than one tensor")
        self.called.add(node.target)
        if isinstance(child, nn.Identity):  # nothing to build: its reader reads its input
            self.names[node] = self.names[node.args[0]]
            return
        name = self.free(node.name) if again else node.target
        item = module_item(child, _join(self.path, node.target))
        self.append(node, name, item, list(node.args))

    def dense_child(self, node: fx.Node, child: nn.Module) -> None:
        """A child called with the list of every feature map before it (the block's input
        first, then each such child's output), as DenseNet's block calls its layers. It
        becomes a block that reads their concatenation, the last such child's output, and
        returns it joined with its own new maps: the same values, each one a tensor."""
        if list(node.args[0]) != self.feature_maps():
            raise ArchcError(
                f"{self.where}: calls {node.target} with a list other than every feature map so far"
            )
        self.called.add(node.target)
        item = module_item(child, _join(self.path, node.target), dense=True)
        self.append(node, node.target, item, self.feature_maps()[-1:])
        self.features.append(node)

    def joins_features(self, node: fx.Node) -> bool:
        """`torch.cat(features, 1)` of the input and every dense child's output."""
        tensors = node.args[0] if node.args else None
        listed = list(tensors) if isinstance(tensors, (list, tuple)) else None
        return bool(self.features) and listed == self.feature_maps() and _cat_dim(node) == 1

    def feature_maps(self) -> list[fx.Node]:
        """The block's input, then every dense child's output."""
        inputs = [value for value, name in self.names.items() if name == "input"][:1]
        return [*inputs, *self.features]

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

    def is_attention(self, value: Any) -> bool:
        """Whether a value is what an nn.MultiheadAttention child returned (a pair)."""
        return (
            isinstance(value, fx.Node)
            and value.op == "call_module"
            and isinstance(self.children.get(value.target), nn.MultiheadAttention)
        )

    @property
    def where(self) -> str:
        return _where(self.path)


def _cat_dim(node: fx.Node) -> int:
    return node.kwargs.get("dim", node.args[1] if len(node.args) > 1 else 0)


def _is_size(node: fx.Node, shapes: set[fx.Node]) -> bool:
    """`x.shape`, `x.dim()`, `x.size()`, and anything computed from those alone."""
    if node.op == "call_function" and node.target is getattr and node.args[1] == "shape":
        return True
    if node.op == "call_method" and node.target in ("dim", "size"):
        return True
    values = [arg for arg in _flat(node.args) if isinstance(arg, fx.Node)]
    return node.op in ("call_function", "call_method") and bool(values) and set(values) <= shapes


def _flat(args: Any) -> list[Any]:
    if isinstance(args, (list, tuple)):
        return [item for arg in args for item in _flat(arg)]
    return [args]


def _is_tokens(node: fx.Node) -> bool:
    """`.permute(0, 2, 1)` of a `.reshape(n, c, h * w)`: an image's positions as tokens."""
    return (
        node.op == "call_method"
        and node.target == "permute"
        and tuple(node.args[1:]) == (0, 2, 1)
        and _is_flattening(node.args[0])
    )


def _is_flattening(node: Any) -> bool:
    return (
        isinstance(node, fx.Node)
        and node.op == "call_method"
        and node.target == "reshape"
        and len(node.args) == 4
        and len(node.users) == 1
        and next(iter(node.users)).target == "permute"
    )


def _self_attention(child: nn.MultiheadAttention, node: fx.Node, path: str) -> Instance:
    """nn.MultiheadAttention called on one sequence three times over: its packed input
    projection, the attention of its heads, its output projection (the block torchvision's
    ViT spec uses, with the same parameter names)."""
    query, key, value = [*node.args, None, None][:3]
    usable = (
        child.batch_first
        and child._qkv_same_embed_dim
        and child.bias_k is None
        and child.dropout == 0.0
        and query is key is value
        and not {"attn_mask", "key_padding_mask", "is_causal"} & node.kwargs.keys()
    )
    if not usable:
        raise ArchcError(
            f"module {path}: only batch-first self-attention without masks or dropout imports"
        )
    bias = child.in_proj_bias is not None
    body = [
        Node(
            "in_proj", Op("linear", dict(out=3 * child.embed_dim, flat=True, bias=bias)), ["input"]
        ),
        Node("attention", Op("attention", dict(heads=child.num_heads)), ["in_proj"]),
        Node(
            "out_proj",
            Op("linear", dict(out=child.embed_dim, bias=child.out_proj.bias is not None)),
            ["attention"],
        ),
    ]
    return Instance("MultiheadAttention", body)


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


@dataclass
class _Learned:
    """A parameter of the module itself, applied to one tensor: a node named as it."""

    name: str
    op: Op
    reads: fx.Node
    folded: tuple[fx.Node, ...]
    """The trace's nodes it stands for besides the one that applies it."""


def _learned(graph: fx.Graph, module: nn.Module) -> dict[fx.Node, _Learned]:
    """The module's own parameters that its forward applies to one tensor, by the node that
    applies them: multiplied in (a ConvNeXt layer scale), added (ViT's position embedding,
    or a bias), or expanded and put before the sequence (ViT's class token)."""
    own = dict(module.named_parameters(recurse=False))
    found = {}
    for node in graph.nodes:
        if node.op != "get_attr" or node.target not in own or len(node.users) != 1:
            continue
        tensor, (user,) = own[node.target], node.users
        other = [arg for arg in user.args if arg is not node]
        if user.target in (operator.mul, torch.mul, operator.add, torch.add) and len(other) == 1:
            op = Op("scale", dict(shape=list(tensor.shape)))
            if user.target in (operator.add, torch.add):
                embedding = tensor.dim() == 3 and tensor.shape[0] == 1
                op = (
                    Op("position_embedding", dict(length=tensor.shape[1]))
                    if embedding
                    else Op("bias", dict(shape=list(tensor.shape)))
                )
            found[user] = _Learned(node.target, op, other[0], (node,))
        elif user.op == "call_method" and user.target == "expand" and _prepends(user):
            (cat,) = user.users
            found[cat] = _Learned(node.target, Op("class_token"), cat.args[0][1], (node, user))
    return found


def _prepends(expand: fx.Node) -> bool:
    """Whether an expanded token is put before a sequence: `torch.cat([token, x], dim=1)`."""
    if len(expand.users) != 1:
        return False
    (cat,) = expand.users
    tensors = cat.args[0] if cat.args else None
    dim = cat.kwargs.get("dim", cat.args[1] if len(cat.args) > 1 else 0)
    return (
        cat.target is torch.cat and dim == 1 and list(tensors)[:1] == [expand] and len(tensors) == 2
    )


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


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def _where(path: str) -> str:
    return f"module {path}" if path else "the model"


def _camel(path: str) -> str:
    """A block name for a plain Sequential with named children: its attribute, in CamelCase."""
    last = path.rpartition(".")[2] or "Model"
    return "".join(part[:1].upper() + part[1:] for part in last.split("_") if part)
