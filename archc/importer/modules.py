"""A PyTorch module tree → a tree of spec items: ops, sequences and block instances.

A library layer is an op (`layers.py`); an `nn.Sequential` numbered 0, 1, … a sequence; any
other module (or a Sequential with named children) a block instance, its body traced with
torch.fx from its `forward`, the children left whole, with the idioms of torchvision's models
read as archc says them (a layer scale, a class token, self-attention, DenseNet's list of
features, ShuffleNetV2's split). What archc cannot say (a module called twice with weights,
a parameter held outside any layer, a call it does not know) is an error naming the module.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass
from typing import Any

import torch
from torch import fx, nn

from archc.errors import ArchcError
from archc.importer.items import Instance, Item, Node, Op, Seq
from archc.importer.layers import NAMED_FUNCTIONS, function_item, layer_op


def module_item(module: nn.Module, path: str, dense: bool = False) -> Item:
    """The spec item for `module`, found at `path` in the model (`dense`: called with the
    list of every feature map before it, see `_Body.dense_child`)."""
    op = layer_op(module)
    if op is not None:
        return op
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
            op, inputs = function_item(node, self.where)
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
            op = Op("scale", dict(shape=list(tensor.shape), **_fill(tensor, 1.0)))
            if user.target in (operator.add, torch.add):
                embedding = tensor.dim() == 3 and tensor.shape[0] == 1
                op = (
                    Op("position_embedding", dict(length=tensor.shape[1]))
                    if embedding
                    else Op("bias", dict(shape=list(tensor.shape), **_fill(tensor, 0.0)))
                )
            found[user] = _Learned(node.target, op, other[0], (node,))
        elif user.op == "call_method" and user.target == "expand" and _prepends(user):
            (cat,) = user.users
            found[cat] = _Learned(node.target, Op("class_token"), cat.args[0][1], (node, user))
    return found


def _fill(tensor: torch.Tensor, neutral: float) -> dict[str, float]:
    """`fill` where the tensor holds one value other than the op's neutral one (ConvNeXt's
    layer scale starts at 1e-6), written as its float32 reads (`1e-06`, not 9.99…97e-07)."""
    values = tensor.detach().flatten()
    if values.numel() == 0 or not bool((values == values[0]).all()):
        return {}
    value = float(str(values[0].numpy()))
    return {} if value == neutral else {"fill": value}


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


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def _where(path: str) -> str:
    return f"module {path}" if path else "the model"


def _camel(path: str) -> str:
    """A block name for a plain Sequential with named children: its attribute, in CamelCase."""
    last = path.rpartition(".")[2] or "Model"
    return "".join(part[:1].upper() + part[1:] for part in last.split("_") if part)
