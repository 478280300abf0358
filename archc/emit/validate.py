"""Translation validation: a generated file, constructed, against the IR.

A block class is symbolic (one class serves every call site), so the class view can drift
from the concrete IR. Before a file is written, its model is built once, with stand-ins for
torch (or jax, flax and numpy) that only record what each constructor was given (no
framework is imported and no forward runs), and every IR node is checked at its parameter
path: a node that lowers to a module must be that module, built with the arguments its own
lowering gives; a node that keeps parameters inline must have them; a node's parameters are
frozen (`freeze_params` on it or a module above it) exactly where the IR says. A module the
IR does not have is a mismatch too. Any mismatch is archc's bug, reported with the node, and
the file is not written.

The stand-ins run with a short list of builtins and can import nothing but themselves,
`functools`, `math` and `typing`, so a file that tried to do anything else could not.
"""

from __future__ import annotations

import builtins
import collections.abc
import functools
import math
import typing
from collections.abc import Iterator
from typing import Any

from archc.errors import InternalError
from archc.ir.graph import Graph, Node, TensorType
from archc.ir.modules import BlockClass
from archc.ir.symbolic import Sym, concrete
from archc.ops.lowering import InlineCall


class _Anything:
    """A value of which nothing is known: every operation gives another one."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        return _Anything()

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return _Anything()

    def __getitem__(self, key: Any) -> Any:
        return _Anything()

    def __iter__(self) -> Iterator[Any]:
        return iter(())

    def _operation(self, *args: Any) -> Any:
        return _Anything()

    __add__ = __radd__ = __sub__ = __rsub__ = __mul__ = __rmul__ = _operation
    __truediv__ = __rtruediv__ = __floordiv__ = __neg__ = __pow__ = __matmul__ = _operation


class _Tensor(_Anything):
    """A tensor made with a known shape (`torch.zeros(3, 4)`)."""

    def __init__(self, *shape: Any, **kwargs: Any) -> None:
        flat = shape[0] if len(shape) == 1 and isinstance(shape[0], tuple | list) else shape
        self.shape = tuple(flat)


class _Parameter(_Anything):
    def __init__(self, tensor: Any = None, **kwargs: Any) -> None:
        self.shape = getattr(tensor, "shape", None)
        self.frozen = False


class _Module:
    """nn.Module as far as a constructor sees it: children, parameters and buffers by name,
    and for each module the class and arguments it was made with."""

    def __new__(cls, *args: Any, **kwargs: Any) -> _Module:
        module = object.__new__(cls)
        object.__setattr__(module, "made_as", (cls.__name__, args, kwargs))
        object.__setattr__(module, "children", {})
        object.__setattr__(module, "tensors", {})
        object.__setattr__(module, "frozen", False)
        return module

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def __setattr__(self, name: str, value: Any) -> None:
        if isinstance(value, _Module):
            self.children[name] = value
        elif isinstance(value, _Parameter):
            self.tensors[name] = value
        object.__setattr__(self, name, value)

    def register_buffer(self, name: str, tensor: Any, persistent: bool = True) -> None:
        self.tensors[name] = tensor

    def add_module(self, name: str, module: _Module) -> None:
        setattr(self, name, module)


class _Sequential(_Module):
    """Numbered items; in flax some are plain functions (`jax.nn.relu`), which keep their
    number but hold no module."""

    def __init__(self, *items: Any) -> None:
        for index, item in enumerate(items):
            if isinstance(item, _Module):
                self.children[str(index)] = item


class _ModuleList(_Sequential):
    def __init__(self, items: Any = ()) -> None:
        super().__init__(*items)


class _Namespace(_Anything):
    """A framework module: named classes are stand-in modules, the rest is anything."""

    def __init__(self, **members: Any) -> None:
        self.__dict__.update(members)

    def __getattr__(self, name: str) -> Any:
        if name[:1].isupper():  # a module class, made once per name
            made = type(name, (_Module,), {})
            setattr(self, name, made)
            return made
        return super().__getattr__(name)


def _stand_ins() -> dict[str, Any]:
    tensors = {name: _Tensor for name in ("zeros", "ones", "empty", "randn", "rand", "full")}
    nn = _Namespace(
        Module=_Module,
        Sequential=_Sequential,
        ModuleList=_ModuleList,
        Parameter=_Parameter,
        functional=_Namespace(),
        init=_Namespace(**{name: _first for name in _INITIALISERS}),
    )
    torch = _Namespace(nn=nn, Tensor=_Anything, **tensors)
    variables = {name: _Parameter for name in ("Param", "BatchStat", "Variable")}
    nnx = _Namespace(Module=_Module, Sequential=_Sequential, List=_ModuleList, **variables)
    jax = _Namespace(numpy=_Namespace(**tensors), Array=_Anything)
    flax = _Namespace(nnx=nnx)
    return {
        "torch": torch,
        "jax": jax,
        "flax": flax,
        "numpy": _Namespace(**tensors),
        "functools": functools,
        "collections": collections,
        "collections.abc": collections.abc,
        "math": math,
        "typing": typing,
    }


_INITIALISERS = ("trunc_normal_", "xavier_uniform_", "normal_", "zeros_", "ones_", "uniform_")


def _first(tensor: Any, *args: Any, **kwargs: Any) -> Any:
    """An in-place initialiser: gives back its tensor."""
    return tensor


_BUILTINS = str.split(
    """
    __build_class__ range len int float bool str tuple list dict set zip enumerate min max abs
    sum round isinstance super setattr getattr hasattr object type reversed sorted any all
    ValueError TypeError KeyError NotImplementedError
    """
)


def _restricted_builtins(modules: dict[str, Any]) -> dict[str, Any]:
    def importer(
        name: str, globals: Any = None, locals: Any = None, fromlist: Any = (), level: int = 0
    ) -> Any:
        top = name.partition(".")[0]
        if top not in modules:
            raise ImportError(f"the generated file imports {name}")
        return modules.get(name, modules[top]) if fromlist else modules[top]

    allowed = {name: getattr(builtins, name) for name in _BUILTINS}
    return {**allowed, "__import__": importer}


def build_model(source: str, model: str, *args: Any) -> _Module:
    """The model of a generated file, built with the stand-ins (`create_model(*args)`)."""
    namespace: dict[str, Any] = {
        "__builtins__": _restricted_builtins(_stand_ins()),
        "__name__": "generated",
    }
    exec(compile(source, f"<generated {model}>", "exec"), namespace)
    namespace["freeze_params"] = _freeze_params  # what each backend's helper does, recorded
    return namespace["create_model"](*args)


def _freeze_params(module: Any, when: Any = True) -> Any:
    """Both backends' `freeze_params` as the stand-ins see it: the module (or parameter)
    marked frozen where `when` holds."""
    if when:
        object.__setattr__(module, "frozen", True)
    return module


def validate_torch(source: str, graph: Graph, classes: list[BlockClass]) -> None:
    """Raise an internal error naming the first node the built torch model disagrees with."""
    _validate(source, graph, classes, lambda op: op.lower_torch, ())


def validate_flax(source: str, graph: Graph, classes: list[BlockClass]) -> None:
    """Raise an internal error naming the first node the built flax model disagrees with."""
    _validate(source, graph, classes, lambda op: op.lower_flax, (_Anything(),))


def _validate(
    source: str, graph: Graph, classes: list[BlockClass], lowering: Any, args: tuple
) -> None:
    names = {block_class.class_name for block_class in classes}
    try:
        root = build_model(source, graph.name, *args)
    except Exception as error:
        raise InternalError("emit", f"building the generated model failed: {error!r}") from None
    for node in graph.nodes.values():
        inputs = [graph.type_of(name) for name in node.inputs]
        _check_node(root, node, inputs, lowering, graph.frozen)
    paths = [name.split(".") for name in graph.nodes]
    holders = {".".join(parts[:end]) for parts in paths for end in range(1, len(parts) + 1)}
    _check_no_extra_modules(root, "", holders, names)


def _check_node(
    root: _Module, node: Node, inputs: list[TensorType], lowering: Any, frozen_nodes: set[str]
) -> None:
    lowered = lowering(node.op)(node.attrs, inputs)
    *parents, name = node.name.split(".")
    owner, frozen = _at(root, parents, node)
    if isinstance(lowered, InlineCall):
        for suffix, _ in lowered.parameters:
            if name + suffix not in owner.tensors:
                _mismatch(node, f"no parameter {name + suffix} on its module")
            _check_frozen(node, frozen or owner.tensors[name + suffix].frozen, frozen_nodes)
        return
    module = owner.children.get(name)
    if module is None:
        _mismatch(node, "the generated model has no module there")
    if node.op.parameters(node.attrs, inputs):
        _check_frozen(node, frozen or module.frozen, frozen_nodes)
    made = module.made_as
    want = (lowered.constructor.rpartition(".")[2], _plain(lowered.args))
    got = (made[0], _plain(made[1]))
    if got != want:
        _mismatch(node, f"built as {_call(*got)}, the IR says {_call(*want)}")
    # A lowering lists every keyword away from the framework's default, and only those.
    wanted = dict(lowered.kwargs)
    for key, value in wanted.items():
        if key not in made[2]:
            _mismatch(node, f"{key} is left to the class, the IR says {key}={concrete(value)!r}")
        if _plain(made[2][key]) != _plain(value):
            _mismatch(node, f"{key}={made[2][key]!r}, the IR says {key}={concrete(value)!r}")
    extra = made[2].keys() - wanted.keys() - SETTINGS_OF_THE_RUN
    written = _spelt_out(node, inputs, lowering) if extra else {}  # a param's default, say
    for key in extra:
        if key not in written or _plain(made[2][key]) != _plain(written[key]):
            _mismatch(node, f"{key}={made[2][key]!r}, the IR leaves {key} at the class's default")


def _spelt_out(node: Node, inputs: list[TensorType], lowering: Any) -> dict[str, Any]:
    """The node's keywords with none left at its default: every attribute made symbolic, as
    a class that passes its params on writes them."""

    def symbolic(key: str, value: Any) -> Any:
        if isinstance(value, tuple):
            return tuple(symbolic(key, item) for item in value)
        return value if value is None else Sym(key, value)

    attrs = node.attrs.replace(**{key: symbolic(key, value) for key, value in node.attrs})
    lowered = lowering(node.op)(attrs, inputs)
    return {key: concrete(value) for key, value in lowered.kwargs}


SETTINGS_OF_THE_RUN = frozenset(("inplace", "rngs"))
"""Keywords that say how a module runs, not what it computes: never in the IR."""


def _check_no_extra_modules(
    module: _Module, path: str, holders: set[str], classes: set[str]
) -> None:
    """Every module a generated class builds is a node of the IR, or holds some (`holders`:
    the nodes' paths and every path above them)."""
    for name, child in module.children.items():
        full = f"{path}{name}"
        if full not in holders:
            problem = f"the generated model builds {full}, which the IR has not"
            raise InternalError("emit", f"translation validation: {problem}")
        if child.made_as[0] in classes or isinstance(child, _Sequential | _ModuleList):
            _check_no_extra_modules(child, full + ".", holders, classes)


def _check_frozen(node: Node, frozen: bool, frozen_nodes: set[str]) -> None:
    wanted = node.name in frozen_nodes
    if frozen != wanted:
        state = "frozen" if frozen else "trained"
        _mismatch(node, f"its parameters are {state}, the IR says {'not ' * frozen}frozen")


def _at(root: _Module, path: list[str], node: Node) -> tuple[_Module, bool]:
    """The module at `path`, and whether it or a module above it was frozen."""
    module, frozen = root, root.frozen
    for part in path:
        module = module.children.get(part)
        if module is None:
            _mismatch(node, f"the generated model has no module {'.'.join(path)}")
        frozen = frozen or module.frozen
    return module, frozen


def _plain(value: Any) -> Any:
    value = concrete(value)
    if isinstance(value, list | tuple):
        return tuple(_plain(item) for item in value)
    return value


def _call(name: str, args: tuple) -> str:
    return f"{name}({', '.join(map(repr, args))})"


def _mismatch(node: Node, problem: str) -> typing.NoReturn:
    raise InternalError(
        "emit",
        f"translation validation: {node.name} ({node.op.name}) at {node.location}: {problem}",
    )
