"""The op contract: everything about a primitive op is declared in its class.

An op declares its attribute schema (`Attrs`), its constraints (`check`, returning messages),
its shape rule (`infer`, pure and written so it also runs on symbolic dims), its parameter and
buffer tensors, its cost in multiply-accumulates, and its lowering to each backend.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Annotated, Any, ClassVar

from archc.errors import Location
from archc.ir import functions
from archc.ir.graph import Dim, TensorType
from archc.ir.symbolic import SizeSym, SymPair, concrete, is_symbolic, source
from archc.ops.attributes import PAIR, Attrs, AttrsError, Range
from archc.ops.lowering import InlineCall, ModuleCall

# Attribute types with their ranges, so that every op refuses a nonsense value at the spec.
Count = Annotated[int, Range(1)]
"""Channels, heads, groups, a scale: at least one."""
Offset = Annotated[int, Range(0)]
"""A position or a shift: not negative."""
Window = Annotated[int | PAIR, Range(1)]
"""A kernel, stride, dilation or output size: an int or an (h, w) pair, each at least 1."""
Padding = Annotated[int | PAIR, Range(0)]
"""Padding per side: an int or an (h, w) pair, not negative."""
Epsilon = Annotated[float, Range(0, above=True)]
Probability = Annotated[float, Range(0, 1)]


@dataclass(frozen=True)
class Saved:
    """What autograd keeps of an op for its backward, per sample: some of its inputs, its
    output, and tensors of its own as (elements, bytes per element; None: the activations'
    dtype), such as max pooling's int64 indices. Parameters are not listed: they are counted
    as parameters. Per-batch tensors (a batch norm's statistics) are left out."""

    inputs: tuple[int, ...] = ()
    output: bool = False
    own: tuple[tuple[int, int | None], ...] = ()


KEEPS_INPUT = Saved(inputs=(0,))
KEEPS_OUTPUT = Saved(output=True)


class NoAttrs(Attrs):
    """For ops that take no attributes."""


class Op(ABC):
    """A primitive op. Subclasses are registered with `@register` in `archc.ops`."""

    name: ClassVar[str]
    Attrs: ClassVar[type[Attrs]] = NoAttrs
    arity: ClassVar[int | None] = 1
    """Number of inputs; None means two or more."""
    summary: ClassVar[str] = ""
    stage: ClassVar[bool] = False
    """An op of the detection stage (`postprocess:`): its work depends on the values (scores
    over a threshold, NMS), so it runs in `detect()`, never in the network's forward, and
    is counted apart from the network's costs."""
    method: ClassVar[str | None] = None
    """The generated model's method that returns a stage node of this op, `detect` or `loss`
    (a dict of its nodes' values by name; `detect` with one node returns its value alone);
    None for a step of theirs."""
    reads_targets: ClassVar[bool] = False
    """A stage op that reads the training targets (the `loss` method's `targets`)."""
    takes_list: ClassVar[bool] = False
    """Whether it may read branches whole (`from: convs`), as one list of inputs."""
    overwrites_in_place: ClassVar[bool] = False
    """Whether torch has a form of it that overwrites its first input (`nn.ReLU(inplace=True)`,
    `out += skip`); where its backward needs that input, autograd keeps a copy."""
    fresh_output: ClassVar[bool] = False
    """Whether its output is a new tensor that its own backward does not read (a conv's), so
    an op after it may overwrite it."""
    may_return_input: ClassVar[bool] = False
    """Whether it may hand back its input itself (dropout in eval mode)."""
    returns_view: ClassVar[bool] = False
    """Whether its output, in PyTorch, is a view of an input's memory (a slice, a
    permutation: its first, `viewed_input`): what keeps the view keeps all of that memory. A
    reshape (flatten) views only memory laid out in order: `reshapes`."""
    reshapes: ClassVar[bool] = False
    layers: ClassVar[int] = 1
    """Weighted layers the op counts for in a model's depth when it has weights and MACs:
    window attention's qkv and proj linears are two, as attention written out is two linear
    nodes around the attention core (which has no weights)."""
    commutative: ClassVar[bool] = False
    """The inputs may come in any order for the same result (a sum, a product): two graphs
    that read them in other orders compute the same."""
    size_only_inputs: ClassVar[tuple[int, ...]] = ()
    """Inputs read only for their height and width (a resize's or crop's target): no data
    flows from them, and a diagram draws no edge for them."""
    wide_buffers: ClassVar[tuple[str, ...]] = ()
    """Buffers held as int64 (a batch counter, an index table); the others are fp32."""
    literal_attrs: ClassVar[tuple[str, ...]] = ()
    """Attributes that shape the generated code itself (an axis picks the layout a backend
    indexes in), so they must be numbers known when a class is written, not params."""

    @property
    def family(self) -> str:
        """The kind of op, named by the module that declares it: conv, norm, pool, …"""
        return type(self).__module__.rpartition(".")[2]

    def check(self, attrs: Any, inputs: list[TensorType]) -> list[str]:
        """Constraint violations as messages ('…, got X'); empty when the inputs fit."""
        return []

    @abstractmethod
    def infer(self, attrs: Any, inputs: list[TensorType]) -> TensorType:
        """The output type. Runs only after `check` passed (or on symbolic values)."""

    def parameters(self, attrs: Any, inputs: list[TensorType]) -> dict[str, tuple[Dim, ...]]:
        """Trainable tensors by name (the state_dict suffix), in framework order."""
        return {}

    def buffers(self, attrs: Any, inputs: list[TensorType]) -> dict[str, tuple[Dim, ...]]:
        """Non-trainable state tensors by name (BatchNorm running statistics)."""
        return {}

    @abstractmethod
    def macs(self, attrs: Any, inputs: list[TensorType], output: TensorType) -> int:
        """Multiply-accumulates per sample in the core tier (conv, linear, matmul; no bias).

        Zero means zero on purpose: the op does no core-tier arithmetic.
        """

    def saved(self, attrs: Any, inputs: list[TensorType], output: TensorType) -> Saved:
        """What PyTorch's autograd keeps of this op for backward (for the training-memory
        estimate): by default nothing, as for views, sums and concatenations."""
        return Saved()

    def macs_by_kind(self, attrs: Any, inputs: list[TensorType], output: TensorType) -> dict:
        """The MACs split by kind of arithmetic (conv, linear, attention): the op's family
        unless it does more than one kind."""
        return {self.family: self.macs(attrs, inputs, output)}

    def viewed_input(self, attrs: Any) -> int:
        """The input whose memory a view (`returns_view`) or a reshape is of."""
        return 0

    def default_attrs(self) -> Attrs | None:
        """Its attributes at their defaults; None when some are required."""
        try:
            return self.Attrs()
        except AttrsError:
            return None

    def pickable(self, attrs: Any, kind: TensorType) -> bool:
        """Whether an `op` param can pick this op, with these attributes, for an input of
        `kind`: in every backend it is a module whose last argument is its input width and
        whose others the attributes fix (the param binds them, as `partial(nn.GroupNorm, 32)`),
        of the class it is for an image (the class the param holds)."""

        def forms(kind: TensorType) -> list[ModuleCall | InlineCall]:
            return [self.lower_torch(attrs, [kind]), self.lower_flax(attrs, [kind])]

        # 7 and 11 channels: the width, told apart from any 1 and from what the attributes fix
        seven, eleven = forms(TensorType((1, 7, 1, 1))), forms(TensorType((1, 11, 1, 1)))
        for narrow, wide in zip(seven, eleven):
            if not (isinstance(narrow, ModuleCall) and isinstance(wide, ModuleCall)):
                return False
            if narrow.args[-1:] != (7,) or wide.args[-1:] != (11,):
                return False
            if (narrow.args[:-1], narrow.kwargs) != (wide.args[:-1], wide.kwargs):
                return False
        return all(
            isinstance(form, ModuleCall) and form.constructor == held.constructor
            for form, held in zip(forms(kind), seven)
        )

    def torch_module(self, attrs: Any, inputs: list[TensorType]) -> ModuleCall | None:
        """The op as a torch module where an `nn.Sequential` item needs one and its lowering is
        inline (flatten: `nn.Flatten`); None when torch has none."""
        return None

    @abstractmethod
    def lower_torch(self, attrs: Any, inputs: list[TensorType]) -> ModuleCall | InlineCall:
        """The PyTorch construct this op becomes (NCHW)."""

    @abstractmethod
    def lower_flax(self, attrs: Any, inputs: list[TensorType]) -> ModuleCall | InlineCall:
        """The flax.nnx / jax construct this op becomes (NHWC for 4-d tensors)."""


@dataclass(frozen=True)
class OpChoice:
    """The value of an `op` param: the op it picks and the attributes the caller set
    (`norm: batch_norm`, `norm: {op: batch_norm, eps: 1.0e-3}`). A node that names the param
    builds that op from its input width, as torchvision calls `norm_layer(width)`."""

    name: str
    attrs: Attrs | None
    """Checked against the op's schema; None for an op that cannot be built with its
    defaults (its node reports that it cannot be picked)."""
    location: Location | None = field(default=None, compare=False)
    """Where the spec gives the param this value, for errors at the nodes that build it."""

    def settings(self) -> dict[str, Any]:
        """The attributes set away from their defaults (symbolic ones always: the class they
        land in serves other values too)."""
        if self.attrs is None:
            return {}
        fields = self.attrs.fields()
        return {key: value for key, value in self.attrs if differs(value, fields[key].default)}

    def __str__(self) -> str:
        settings = "".join(f", {key}: {source(value)}" for key, value in self.settings().items())
        return f"{{op: {self.name}{settings}}}" if settings else self.name


def pair(value: Any) -> tuple[Any, ...]:
    """An int-or-pair attribute as an (h, w) pair (`pair(kernel)` for a `size` param)."""
    return SymPair(value) if isinstance(value, SizeSym) else functions.pair(value)


NHWC_AXIS = {0: 0, 1: 3, 2: 1, 3: 2}
"""Where a logical NCHW axis lives in flax's NHWC layout."""


def flax_axis(axis: int, kind: TensorType) -> int:
    """A logical axis in the flax layout: NCHW images are NHWC there (channels written as
    -1); other tensors, channels-last images among them, keep their axes."""
    if kind.rank != 4 or kind.channels_last:
        return axis
    return -1 if axis == 1 else NHWC_AXIS[axis]


def keywords(*items: tuple[str, Any, Any]) -> tuple[tuple[str, Any], ...]:
    """A module's keyword arguments from (name, value, the framework's default): those at
    their default left out, as a careful hand-written file leaves them (an (h, w) pair of
    defaults too)."""
    return tuple(
        (key, value)
        for key, value, default in items
        if differs(value, default) and differs(value, (default, default))
    )


def differs(value: Any, default: Any) -> bool:
    """Whether a lowering must write an argument out: symbolic values always are, since the
    class they land in serves other values too."""
    return is_symbolic(value) or value != default


def expect_rank(inputs: list[TensorType], rank: int, what: str) -> list[str]:
    """The shared rank constraint: one message when the input is not `rank`-d (an NCHW or
    NHWC one when `what` names that layout)."""
    got = inputs[0]
    layout = {"NCHW": False, "NHWC": True}.get(what, got.channels_last)
    if got.rank == rank and got.channels_last == layout:
        return []
    return [f"expected a {rank}-d {what} input, got {got}{' (NHWC)' * got.channels_last}"]


def expect_channel_groups(inputs: list[TensorType], name: str, count: Any) -> list[str]:
    """The shared grouping constraint: an NCHW image whose channels `count` (the attribute
    `name`: groups, a row's size) divides."""
    problems = expect_rank(inputs, 4, "NCHW")
    channels = concrete(inputs[0].channels)
    if not problems and channels % concrete(count):
        return [f"{name}={concrete(count)} must divide the {channels} channels"]
    return problems


def check_axis(axis: int, kind: TensorType) -> list[str]:
    """The shared axis constraint: any axis but the batch."""
    return [] if 1 <= axis < kind.rank else [f"axis must be from 1 to {kind.rank - 1}, got {axis}"]
