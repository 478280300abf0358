"""Translation validation: a generated file, constructed, against the IR.

A block class is symbolic (one class serves every call site), so the class view can drift
from the concrete IR. Before a file is written, its model is built once, with stand-ins for
torch (or jax, flax and numpy) that only record what each constructor was given (no
framework is imported and no forward runs), and every IR node is checked at its parameter
path: a node that lowers to a module must be that module, built with the arguments its own
lowering gives; a node that keeps parameters inline must have them; a node's parameters are
frozen (`freeze_params` on it or a module above it) exactly where the IR says. A module the
IR does not have is a mismatch too. Any mismatch is archc's bug, reported with the node, and
the file is not written. The IR holds one value of each param, so the model is built again
with each bool param the other way (a block under `when: deep`, a `bias: not deep`) and
checked against the IR of that value.

The stand-ins run with a short list of builtins and can import nothing but themselves,
`functools`, `math` and `typing`, so a file that tried to do anything else could not.
"""

from __future__ import annotations

import builtins
import collections.abc
import functools
import math
import types
import typing
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from archc.errors import InternalError, Location
from archc.ir.graph import Graph, Node, TensorType
from archc.ir.modules import BlockClass
from archc.ir.symbolic import Sym, concrete
from archc.ops.init import KINDS, TORCH_DEFAULT_LAYER, Initialiser, canonical_start, torch_fans
from archc.ops.lowering import InlineCall, ModuleCall
from archc.spec.expressions import evaluate


@dataclass(frozen=True)
class ParamPoint:
    """The model at other values of its params: create_model's keywords, and the IR archc
    compiles with them (`--set`)."""

    params: dict[str, Any]
    graph: Graph


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

    def __float__(self) -> float:  # `math.sqrt(fan_in)`
        return 1.0

    __add__ = __radd__ = __sub__ = __rsub__ = __mul__ = __rmul__ = _operation
    __truediv__ = __rtruediv__ = __floordiv__ = __neg__ = __pow__ = __matmul__ = _operation


class _Tensor(_Anything):
    """A tensor made with a known shape (`torch.zeros(3, 4)`); `start`, for flax's init
    helpers' values, the distribution they were drawn from."""

    def __init__(self, *shape: Any, **kwargs: Any) -> None:
        flat = shape[0] if len(shape) == 1 and isinstance(shape[0], tuple | list) else shape
        self.shape = tuple(flat)
        self.start: tuple[str, Any] | None = None


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

    def __getattr__(self, name: str) -> Any:
        """A parameter of a layer that no IR node stands for (a helper's own linear, which
        init_weights starts as well): of unknown shape, its start unchecked."""
        if name.startswith("_"):
            raise AttributeError(name)
        return _Initialised(_Anything(), {})

    def modules(self) -> Iterator[_Module]:
        """This module and every one below it, depth first (torch's `modules()`)."""
        yield self
        for child in self.children.values():
            yield from child.modules()

    def add_module(self, name: str, module: _Module) -> None:
        setattr(self, name, module)


class _Initialised(_Anything):
    """A layer's parameter as init_weights sees it: its shape in the backend's layout, its
    fans as torch counts them, and how it was started (`start`: a distribution and its
    scale, as `canonical_start` writes them)."""

    def __init__(self, shape: tuple[int, ...], fans: dict[str, int]) -> None:
        self.shape = shape
        self.fans = fans
        self.start: tuple[str, float] | None = None

    def set_value(self, value: Any) -> None:  # flax
        self.start = value.start if isinstance(value, _Tensor) else ("unknown", 0.0)


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
        init=_Namespace(**{f"{name}_": _recorder(name, torch=True) for name in KINDS}),
    )
    torch = _Namespace(nn=nn, Tensor=_Anything, **tensors)
    # state a module keeps, as far as a constructor sees it (Rngs: a sampler's random stream)
    variables = {name: _Parameter for name in ("Param", "BatchStat", "Variable", "Rngs")}
    nnx = _Namespace(
        Module=_Module,
        Sequential=_Sequential,
        List=_ModuleList,
        iter_modules=lambda model: ((None, module) for module in model.modules()),
        **variables,
    )
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


def _recorder(name: str, torch: bool) -> Any:
    """An initialiser that records what it would do. torch's `nn.init.NAME_(tensor, …)`
    starts its tensor and gives it back; flax's helper `NAME(key, shape, scale)` gives the
    values, which `set_value` then records."""

    def record(tensor: Any, *args: Any, **kwargs: Any) -> Any:
        if not isinstance(tensor, _Initialised):
            return tensor  # a parameter made inline (`nn.init.xavier_uniform_(torch.empty(…))`)
        arguments = list(args)
        arguments += [kwargs[key] for key in ("std", "mode") if key in kwargs]
        tensor.start = canonical_start(name, arguments[-1] if arguments else None, tensor.fans)
        return tensor

    def values(*arguments: Any) -> _Tensor:  # (generator, shape, scale) or (shape, value)
        made = _Tensor(arguments[-2])
        made.start = (name, arguments[-1])
        return made

    return record if torch else values


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


def build_model(source: str, model: str, *args: Any, **params: Any) -> _Module:
    """The model of a generated file, built with the stand-ins (`create_model(*args,
    **params)`)."""
    namespace: dict[str, Any] = {
        "__builtins__": _restricted_builtins(_stand_ins()),
        "__name__": "generated",
    }
    exec(compile(source, f"<generated {model}>", "exec"), namespace)
    namespace["freeze_params"] = _freeze_params  # what each backend's helper does, recorded
    for name in ("normal", "trunc_normal", "uniform", "constant"):  # flax's init helpers
        namespace[name] = _recorder(name, torch=False)
    init_weights = namespace.pop("init_weights", None)
    called: list[dict[str, Any]] = []
    # Run later, with the params the model passes it (its conditions read them).
    namespace["init_weights"] = lambda *arguments, **params: called.append(params)
    root = namespace["create_model"](*args, **params)
    # Run by the checks once every layer's parameters are known, if the model calls it.
    if called and init_weights is not None:
        init_weights = functools.partial(init_weights, **called[0])
    object.__setattr__(root, "init_weights", init_weights if called else None)
    return root


def _freeze_params(module: Any, when: Any = True) -> Any:
    """Both backends' `freeze_params` as the stand-ins see it: the module (or parameter)
    marked frozen where `when` holds."""
    if when:
        object.__setattr__(module, "frozen", True)
    return module


def validate_torch(
    source: str,
    graph: Graph,
    classes: list[BlockClass],
    initialised: bool = True,
    others: Sequence[ParamPoint] = (),
) -> None:
    """Raise an internal error naming the first node the built torch model disagrees with."""
    _validate(source, graph, classes, "torch", (), initialised, others)


def validate_flax(
    source: str,
    graph: Graph,
    classes: list[BlockClass],
    initialised: bool = True,
    others: Sequence[ParamPoint] = (),
) -> None:
    """Raise an internal error naming the first node the built flax model disagrees with."""
    _validate(source, graph, classes, "flax", (_Anything(),), initialised, others)


def _validate(
    source: str,
    graph: Graph,
    classes: list[BlockClass],
    backend: str,
    args: tuple,
    initialised: bool,
    others: Sequence[ParamPoint],
) -> None:
    """`initialised`: whether the model starts its parameters itself (an inference
    export's come from a training checkpoint, and it has no init_weights); `others`: the
    model at other values of its params, built with them and checked against their IR."""

    def lowering(op: Any) -> Any:
        return getattr(op, f"lower_{backend}")

    names = {block_class.class_name for block_class in classes}
    for point in [ParamPoint({}, graph), *others]:
        params, point_graph = point.params, point.graph
        try:
            _validate_point(
                source, point_graph, names, lowering, initialised, args, params, backend
            )
        except InternalError as error:
            if not params:
                raise
            keywords = ", ".join(f"{name}={value!r}" for name, value in params.items())
            raise InternalError(error.stage, f"{error.message}, with {keywords}") from None


def _validate_point(
    source: str,
    graph: Graph,
    names: set[str],
    lowering: Any,
    initialised: bool,
    args: tuple,
    params: dict[str, Any],
    backend: str,
) -> None:
    """The file's model built with `params` against `graph`, the IR of those params."""
    try:
        root = build_model(source, graph.name, *args, **params)
    except Exception as error:
        raise InternalError("emit", f"building the generated model failed: {error!r}") from None
    for node in graph.own_state():
        inputs = [graph.type_of(name) for name in node.inputs]
        _check_node(root, node, inputs, lowering, graph.frozen)
    paths = [node.name.split(".") for node in graph.own_state()]
    holders = {".".join(parts[:end]) for parts in paths for end in range(1, len(parts) + 1)}
    _check_no_extra_modules(root, "", holders, names)
    if initialised:
        _check_init(root, graph, backend, args)
    elif root.init_weights is not None:
        raise InternalError(
            "emit", "translation validation: an inference export defines init_weights"
        )


def _check_init(root: _Module, graph: Graph, backend: str, args: tuple) -> None:
    """Run the file's init_weights over stand-in parameters of the IR's shapes, and check
    that each starts as the IR says (flax's conv and linear layers, where it says nothing,
    as torch's)."""
    from archc.emit.initialise import FLAX_DEFAULTS, layer_attribute

    expected: dict[tuple[str, str], tuple[str, float] | None] = {}
    made: dict[tuple[str, str], _Initialised] = {}
    for node in graph.own_state():
        inputs = [graph.type_of(name) for name in node.inputs]
        lowered = getattr(node.op, f"lower_{backend}")(node.attrs, inputs)
        if not isinstance(lowered, ModuleCall):
            continue
        *parents, name = node.name.split(".")
        module = _at(root, parents, node)[0].children[name]
        params = {
            key: tuple(map(concrete, shape))
            for key, shape in node.op.parameters(node.attrs, inputs).items()
        }
        fans = torch_fans(params["weight"]) if len(params.get("weight", ())) >= 2 else {}
        starts = dict(graph.init.get(node.name, {}))
        if backend == "flax" and node.op.name in FLAX_DEFAULTS:
            starts = {**{key: TORCH_DEFAULT_LAYER[key] for key in params}, **starts}
        for param, shape in params.items():
            attribute = layer_attribute(lowered.constructor, param, len(shape))
            layout = (
                shape if backend == "torch" or len(shape) < 2 else (*shape[2:], shape[1], shape[0])
            )
            made[node.name, param] = _Initialised(layout, fans)
            object.__setattr__(module, attribute, made[node.name, param])
            expected[node.name, param] = _canonical(starts.get(param), fans)
        if "bias" not in params:
            object.__setattr__(module, "bias", None)
    if root.init_weights is not None:
        try:
            root.init_weights(root, *args)
        except Exception as error:
            raise InternalError(
                "emit", f"translation validation: init_weights failed: {error!r}"
            ) from None
    for (name, param), want in expected.items():
        got = made[name, param].start
        same = got == want or (
            got is not None
            and want is not None
            and got[0] == want[0]
            and math.isclose(got[1], want[1], rel_tol=1e-9)
        )
        if not same:
            node = graph.nodes[name]
            _mismatch(node, f"its {param} starts as {_start(got)}, the IR says {_start(want)}")


def _canonical(start: Initialiser | None, fans: dict[str, int]) -> tuple[str, float] | None:
    """The IR's initialiser as a distribution and scale; a default's argument (an expression
    of the fans) evaluated at the layer's."""
    if start is None:
        return None
    argument = start.argument
    if isinstance(argument, str) and start.kind.argument == "number":
        argument = concrete(evaluate(argument, fans, Location("archc", 1, 1)))
    return canonical_start(start.name, argument, fans)


def _start(start: tuple[str, float] | None) -> str:
    return "the framework's default" if start is None else f"{start[0]}({start[1]:.6g})"


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
    if isinstance(value, types.FunctionType):  # a helper passed on: the IR names it
        return value.__name__
    return value


def _call(name: str, args: tuple) -> str:
    return f"{name}({', '.join(map(repr, args))})"


def _mismatch(node: Node, problem: str) -> typing.NoReturn:
    raise InternalError(
        "emit",
        f"translation validation: {node.name} ({node.op.name}) at {node.location}: {problem}",
    )
