"""The op contract, and every shape rule / param / cost checked against PyTorch itself."""

from __future__ import annotations

import inspect
import math
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from archc.ir.graph import BATCH, TensorType
from archc.ops import REGISTRY
from archc.ops.base import Op
from archc.ops.lowering import ModuleCall

torch = pytest.importorskip("torch")
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402

from tests.helpers import REPO  # noqa: E402

HELPERS: dict[str, Any] = {}
exec(
    (REPO / "archc" / "templates" / "torch" / "helpers.py").read_text(), HELPERS
)  # what files copy in


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_every_op_declares_the_whole_contract(name: str) -> None:
    op = REGISTRY[name]
    assert op.name == name
    assert op.summary, f"{name} has no summary"
    for method in ("infer", "macs", "lower_torch"):
        assert not getattr(getattr(type(op), method), "__isabstractmethod__", False)
    assert not inspect.isabstract(type(op))


def run_in_torch(op: Op, attrs: Any, shapes: list[tuple[int, ...]]) -> dict[str, Any]:
    """Build the op's torch lowering, run it on random inputs, report what torch did."""
    types = [TensorType((BATCH, *shape[1:])) for shape in shapes]
    lowered = op.lower_torch(attrs, types)
    inputs = [torch.randn(*shape) for shape in shapes]
    if isinstance(lowered, ModuleCall):
        module = getattr(torch.nn, lowered.constructor.removeprefix("nn."))(
            *lowered.args, **dict(lowered.kwargs)
        ).eval()
        state = {key: tuple(value.shape) for key, value in module.state_dict().items()}
        call = module
    else:
        state = {}
        call = lambda *values: eval(  # noqa: E731 - the lowering's own template
            lowered.template.format(*(f"values[{i}]" for i in range(len(values)))),
            {**HELPERS, "values": values},
        )
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        output = call(*inputs)
    return {"shape": tuple(output.shape), "state": state, "macs": counter.get_total_flops() // 2}


def agree(op: Op, attrs: Any, shapes: list[tuple[int, ...]]) -> None:
    """A valid configuration: archc's shape, tensors and MACs equal torch's."""
    types = [TensorType((BATCH, *shape[1:])) for shape in shapes]
    torch_facts = run_in_torch(op, attrs, shapes)
    output = op.infer(attrs, types)
    assert (shapes[0][0], *output.shape[1:]) == torch_facts["shape"]
    declared = {**op.parameters(attrs, types), **op.buffers(attrs, types)}
    assert {key: tuple(shape) for key, shape in declared.items()} == torch_facts["state"]
    assert op.macs(attrs, types, output) * shapes[0][0] == torch_facts["macs"]


def refuse(op: Op, attrs: Any, shapes: list[tuple[int, ...]]) -> None:
    """An invalid configuration: torch fails too (or produces an empty tensor)."""
    try:
        facts = run_in_torch(op, attrs, shapes)
    except (RuntimeError, ValueError):
        return
    assert math.prod(facts["shape"]) == 0, "archc refused what torch accepts"


def check(op: Op, attrs: Any, shapes: list[tuple[int, ...]]) -> None:
    types = [TensorType((BATCH, *shape[1:])) for shape in shapes]
    if op.check(attrs, types):
        refuse(op, attrs, shapes)
    else:
        agree(op, attrs, shapes)


PROPERTY = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
sizes = st.integers(1, 12)
small = st.integers(1, 4)


@PROPERTY
@given(
    channels=small,
    groups=st.integers(1, 3),
    out=st.integers(1, 4),
    kernel=small,
    stride=st.integers(1, 3),
    padding=st.integers(0, 2),
    dilation=st.integers(1, 2),
    bias=st.booleans(),
    height=sizes,
    width=sizes,
)
def test_conv2d(
    channels: int,
    groups: int,
    out: int,
    kernel: int,
    stride: int,
    padding: int,
    dilation: int,
    bias: bool,
    height: int,
    width: int,
) -> None:
    op = REGISTRY["conv2d"]
    attrs = op.Attrs(
        out=out * groups,
        kernel=kernel,
        stride=stride,
        padding=padding,
        dilation=dilation,
        groups=groups,
        bias=bias,
    )
    check(op, attrs, [(2, channels * groups, height, width)])


@PROPERTY
@given(
    kind=st.sampled_from(["max_pool2d", "avg_pool2d"]),
    kernel=small,
    stride=st.one_of(st.none(), st.integers(1, 3)),
    padding=st.integers(0, 2),
    ceil_mode=st.booleans(),
    height=sizes,
    width=sizes,
)
def test_window_pooling(
    kind: str,
    kernel: int,
    stride: int | None,
    padding: int,
    ceil_mode: bool,
    height: int,
    width: int,
) -> None:
    op = REGISTRY[kind]
    attrs = op.Attrs(kernel=kernel, stride=stride, padding=padding, ceil_mode=ceil_mode)
    check(op, attrs, [(2, 3, height, width)])


@PROPERTY
@given(size=st.integers(1, 5), height=sizes, width=sizes)
def test_adaptive_avg_pool2d(size: int, height: int, width: int) -> None:
    op = REGISTRY["adaptive_avg_pool2d"]
    check(op, op.Attrs(size=size), [(2, 3, height, width)])


@PROPERTY
@given(
    features=st.integers(1, 16),
    out=st.integers(1, 16),
    bias=st.booleans(),
    extra=st.lists(st.integers(1, 3), max_size=1),
)
def test_linear(features: int, out: int, bias: bool, extra: list[int]) -> None:
    """Vectors (N, C) and tokens (N, L, D), as torch applies it to the last axis."""
    op = REGISTRY["linear"]
    check(op, op.Attrs(out=out, bias=bias), [(2, *extra, features)])


def test_linear_refuses_an_nchw_image_that_torch_would_take_by_its_width() -> None:
    """On (N, C, H, W) torch maps the W axis, never what a spec means: refused by design."""
    op = REGISTRY["linear"]
    (problem,) = op.check(op.Attrs(out=4), [TensorType((BATCH, 3, 8, 8))])
    assert "flatten it first" in problem
    assert not op.check(op.Attrs(out=4), [TensorType((BATCH, 8, 8, 3), channels_last=True)])


@PROPERTY
@given(start=st.integers(0, 4), shape=st.lists(st.integers(1, 4), min_size=1, max_size=3))
def test_flatten(start: int, shape: list[int]) -> None:
    op = REGISTRY["flatten"]
    attrs = op.Attrs(start=start)
    types = [TensorType((BATCH, *shape))]
    if op.check(attrs, types):
        assert not 1 <= start < len(shape) + 1
    else:
        agree(op, attrs, [(2, *shape)])


@PROPERTY
@given(
    channels=small,
    out=small,
    kernel=small,
    stride=st.integers(1, 3),
    padding=st.integers(0, 2),
    output_padding=st.integers(0, 2),
    dilation=st.integers(1, 2),
    bias=st.booleans(),
    height=sizes,
    width=sizes,
)
def test_conv_transpose2d(
    channels: int,
    out: int,
    kernel: int,
    stride: int,
    padding: int,
    output_padding: int,
    dilation: int,
    bias: bool,
    height: int,
    width: int,
) -> None:
    op = REGISTRY["conv_transpose2d"]
    attrs = op.Attrs(
        out=out,
        kernel=kernel,
        stride=stride,
        padding=padding,
        output_padding=output_padding,
        dilation=dilation,
        bias=bias,
    )
    check(op, attrs, [(2, channels, height, width)])


@PROPERTY
@given(given=st.lists(sizes, min_size=2, max_size=2), like=st.lists(sizes, min_size=2, max_size=2))
def test_center_crop(given: list[int], like: list[int]) -> None:
    op = REGISTRY["center_crop"]
    shapes = [(2, 3, *given), (2, 5, *like)]
    types = [TensorType((BATCH, *shape[1:])) for shape in shapes]
    if op.check(op.Attrs(), types):  # torch would slice short without a word; archc refuses
        assert any(g < w for g, w in zip(given, like))
    else:
        agree(op, op.Attrs(), shapes)


@PROPERTY
@given(given=st.lists(sizes, min_size=2, max_size=2), like=st.lists(sizes, min_size=2, max_size=2))
def test_center_pad(given: list[int], like: list[int]) -> None:
    op = REGISTRY["center_pad"]
    shapes = [(2, 3, *given), (2, 5, *like)]
    types = [TensorType((BATCH, *shape[1:])) for shape in shapes]
    if op.check(op.Attrs(), types):  # F.pad would crop on a negative pad; archc refuses
        assert any(g > w for g, w in zip(given, like))
    else:
        agree(op, op.Attrs(), shapes)


@PROPERTY
@given(height=sizes, width=sizes, extra_height=st.integers(0, 5), extra_width=st.integers(0, 5))
def test_center_pad_places_the_input_as_unet_ports_do(
    height: int, width: int, extra_height: int, extra_width: int
) -> None:
    """Both backends' helpers: x at rows extra // 2 on (the odd row at the bottom), zeros
    around it."""
    jnp = pytest.importorskip("jax.numpy")
    flax_helpers: dict[str, Any] = {}
    exec((REPO / "archc" / "templates" / "flax" / "helpers.py").read_text(), flax_helpers)
    x = torch.randn(2, 3, height, width)
    like = torch.empty(1, 1, height + extra_height, width + extra_width)
    expected = torch.zeros(2, 3, *like.shape[2:])
    top, left = extra_height // 2, extra_width // 2
    expected[:, :, top : top + height, left : left + width] = x
    assert torch.equal(HELPERS["center_pad"](x, like), expected)
    got = flax_helpers["center_pad"](
        jnp.asarray(x.permute(0, 2, 3, 1).numpy()), jnp.zeros((1, *like.shape[2:], 1))
    )
    assert (expected.permute(0, 2, 3, 1).numpy() == got).all()


@PROPERTY
@given(
    count=st.integers(2, 3),
    channels=st.lists(small, min_size=3, max_size=3),
    height=sizes,
    other_height=sizes,
    axis=st.integers(1, 3),
)
def test_concat(count: int, channels: list[int], height: int, other_height: int, axis: int) -> None:
    op = REGISTRY["concat"]
    shapes = [(2, channels[i], height, 5) for i in range(count - 1)]
    shapes.append((2, channels[-1], other_height, 5))
    check(op, op.Attrs(axis=axis), shapes)


@PROPERTY
@given(
    first=st.lists(small, min_size=3, max_size=3), second=st.lists(small, min_size=3, max_size=3)
)
def test_add(first: list[int], second: list[int]) -> None:
    """archc is stricter than torch here: a residual sum never broadcasts."""
    op = REGISTRY["add"]
    shapes = [(2, *first), (2, *second)]
    if first == second:
        agree(op, op.Attrs(), shapes)
    else:
        assert op.check(op.Attrs(), [TensorType((BATCH, *shape[1:])) for shape in shapes])


@PROPERTY
@given(
    first=st.lists(st.sampled_from([1, 2, 3]), min_size=3, max_size=3),
    second=st.lists(st.sampled_from([1, 2, 3]), min_size=3, max_size=3),
)
def test_mul_broadcasts_like_torch(first: list[int], second: list[int]) -> None:
    op = REGISTRY["mul"]
    check(op, op.Attrs(), [(2, *first), (2, *second)])


@PROPERTY
@given(channels=st.integers(1, 8), start=st.integers(0, 8), stop=st.integers(0, 9))
def test_slice(channels: int, start: int, stop: int) -> None:
    op = REGISTRY["slice"]
    attrs = op.Attrs(start=start, stop=stop)
    if stop > channels:  # torch clips an overlong slice; archc refuses it
        assert op.check(attrs, [TensorType((BATCH, channels, 2, 2))])
    else:
        check(op, attrs, [(2, channels, 2, 2)])


@pytest.mark.parametrize(("channels", "groups"), [(6, 2), (6, 3), (8, 4), (6, 4)])
def test_channel_shuffle(channels: int, groups: int) -> None:
    op = REGISTRY["channel_shuffle"]
    check(op, op.Attrs(groups=groups), [(2, channels, 3, 3)])


@pytest.mark.parametrize("first", [True, False])
def test_either_is_one_of_its_inputs(first: bool) -> None:
    op = REGISTRY["either"]
    check(op, op.Attrs(first=first), [(2, 4, 3, 3), (2, 6, 5, 5)])
    tokens = [TensorType((BATCH, 4, 3, 3)), TensorType((BATCH, 9, 4))]
    assert op.check(op.Attrs(first=first), tokens)


@pytest.mark.parametrize(("channels", "groups"), [(6, 2), (6, 3), (8, 8), (6, 4), (1, 1)])
def test_group_norm(channels: int, groups: int) -> None:
    op = REGISTRY["group_norm"]
    check(op, op.Attrs(groups=groups), [(2, channels, 3, 3)])


@pytest.mark.parametrize(
    "name",
    [
        "dropout",
        "batch_norm",
        "relu",
        "relu6",
        "sigmoid",
        "silu",
        "hardswish",
        "hardsigmoid",
        "tanh",
        "gelu",
    ],
)
def test_shape_preserving_ops(name: str) -> None:
    op = REGISTRY[name]
    check(op, op.Attrs(), [(2, 4, 5, 6)])


def test_gelu_is_exact_unless_asked() -> None:
    """Exact (erf) in both backends by default: jax's own default is the tanh form."""
    op = REGISTRY["gelu"]
    lowered = op.lower_torch(op.Attrs(), [])
    assert isinstance(lowered, ModuleCall)
    assert torch.nn.GELU(*lowered.args, **dict(lowered.kwargs)).approximate == "none"
    assert "approximate=False" in op.lower_flax(op.Attrs(), []).template


@PROPERTY
@given(
    height=sizes,
    width=sizes,
    out_height=st.integers(1, 30),
    out_width=st.integers(1, 30),
    mode=st.sampled_from(["nearest", "bilinear"]),
    align_corners=st.booleans(),
)
def test_flax_resize_is_torch_interpolate(
    height: int, width: int, out_height: int, out_width: int, mode: str, align_corners: bool
) -> None:
    """The generated flax files' `resize` helper against F.interpolate, values and all."""
    jnp = pytest.importorskip("jax.numpy")
    flax_helpers: dict[str, Any] = {}
    exec((REPO / "archc" / "templates" / "flax" / "helpers.py").read_text(), flax_helpers)
    corners = align_corners and mode == "bilinear"
    x = torch.randn(2, 3, height, width)
    options = {"align_corners": corners} if mode == "bilinear" else {}
    expected = torch.nn.functional.interpolate(
        x, size=(out_height, out_width), mode=mode, **options
    )
    got = flax_helpers["resize"](
        jnp.asarray(x.permute(0, 2, 3, 1).numpy()), (out_height, out_width), mode, corners
    )
    assert abs(expected.permute(0, 2, 3, 1).numpy() - got).max() < 1e-5


@pytest.mark.parametrize("name", ["upsample", "resize"])
def test_resampling_shapes(name: str) -> None:
    op = REGISTRY[name]
    if name == "upsample":
        check(op, op.Attrs(scale=3, mode="bilinear", align_corners=True), [(2, 4, 5, 6)])
    else:
        check(op, op.Attrs(mode="nearest"), [(2, 4, 5, 6), (2, 1, 9, 7)])


@PROPERTY
@given(
    name=st.sampled_from(["scale", "bias"]),
    shape=st.lists(st.integers(1, 3), min_size=2, max_size=4),
    learned=st.lists(st.integers(1, 3), min_size=1, max_size=4),
)
def test_learned_tensors_broadcast_into_their_input_as_torch_does(
    name: str, shape: list[int], learned: list[int]
) -> None:
    """archc takes a learned tensor exactly where torch broadcasts it into the input without
    growing it, no batch axis learned, and (its own rule) spanning an NCHW image's channels."""
    from archc.ops.learned import LearnedAttrs

    op, attrs = REGISTRY[name], LearnedAttrs(shape=tuple(learned))
    kind = TensorType((BATCH, *shape[1:]))
    x, tensor = torch.randn(shape), torch.randn(learned)
    try:
        fits = (x * tensor).shape == x.shape
    except RuntimeError:
        fits = False
    fits = fits and not (len(learned) == len(shape) and learned[0] != 1)
    fits = fits and not (len(shape) == 4 and len(learned) < 3)
    accepted = not op.check(attrs, [kind])
    assert accepted == fits
    if fits:
        assert op.infer(attrs, [kind]) == kind
        assert op.parameters(attrs, [kind]) == {"": tuple(learned)}
        assert op.macs(attrs, [kind], kind) == 0


def test_learned_tensor_takes_fill_or_std_not_both() -> None:
    from archc.ops.learned import LearnedAttrs

    attrs = LearnedAttrs(shape=(4,), fill=0.5, std=0.02)
    assert REGISTRY["scale"].check(attrs, [TensorType((BATCH, 9, 4))]) == [
        "give fill or std, not both"
    ]


IMAGE, TOKENS = (2, 4, 9, 9), (2, 5, 4)
CONSTRUCTED = [
    ("conv2d", {"out": 4, "kernel": 3}, IMAGE),
    (
        "conv2d",
        {
            "out": 4,
            "kernel": 3,
            "stride": 2,
            "padding": 1,
            "dilation": 2,
            "groups": 2,
            "bias": False,
        },
        IMAGE,
    ),
    ("conv_transpose2d", {"out": 4, "kernel": 2}, IMAGE),
    (
        "conv_transpose2d",
        {"out": 4, "kernel": 3, "stride": 2, "padding": 1, "output_padding": 1, "bias": False},
        IMAGE,
    ),
    ("batch_norm", {}, IMAGE),
    ("batch_norm", {"eps": 1e-3, "momentum": 0.01}, IMAGE),
    ("frozen_batch_norm", {"eps": 1e-3}, IMAGE),
    ("frozen_batch_norm", {}, IMAGE),
    ("layer_norm", {}, TOKENS),
    ("layer_norm", {"eps": 1e-6}, IMAGE),
    ("group_norm", {"groups": 2}, IMAGE),
    ("group_norm", {"groups": 4, "eps": 1e-6}, IMAGE),
    ("linear", {"out": 3}, TOKENS),
    ("linear", {"out": 3, "bias": False}, TOKENS),
    ("max_pool2d", {"kernel": 3}, IMAGE),
    ("max_pool2d", {"kernel": 3, "stride": 1, "padding": 1, "ceil_mode": True}, IMAGE),
    ("avg_pool2d", {"kernel": 2}, IMAGE),
    ("avg_pool2d", {"kernel": 3, "stride": 2, "padding": 1, "count_include_pad": False}, IMAGE),
    ("dropout", {}, IMAGE),
    ("dropout", {"p": 0.1}, IMAGE),
    ("gelu", {}, IMAGE),
    ("gelu", {"approximate": "tanh"}, IMAGE),
    ("leaky_relu", {"negative_slope": 0.2}, IMAGE),
    ("leaky_relu", {}, IMAGE),
]


MODULE_NAMES = {("group_norm", "groups"): "num_groups"}  # attributes the module names otherwise


@pytest.mark.parametrize(("name", "values", "shape"), CONSTRUCTED)
def test_modules_left_at_their_defaults_are_the_ops_attributes(
    name: str, values: dict, shape: tuple[int, ...]
) -> None:
    """Generated code leaves out the keywords equal to the framework's defaults; the module
    built from what is written has each of the op's attributes (torch is the oracle)."""
    op = REGISTRY[name]
    attrs = op.Attrs(**values)
    lowered = op.lower_torch(attrs, [TensorType((BATCH, *shape[1:]))])
    constructor = lowered.constructor.removeprefix("nn.")
    module = (getattr(torch.nn, constructor, None) or HELPERS[constructor])(
        *lowered.args, **dict(lowered.kwargs)
    )
    expected = {key: value for key, value in attrs if key not in ("out", "kernel", "flat")}
    if "in_features" in expected and expected["in_features"] is None:  # read off the input
        expected["in_features"] = shape[-1]
    if "stride" in expected and expected["stride"] is None:
        expected["stride"] = attrs.kernel
    for key, value in expected.items():
        got = getattr(module, MODULE_NAMES.get((name, key), key))
        if key == "bias":
            got = got is not None
        elif isinstance(got, tuple) and not isinstance(value, tuple):
            value = (value,) * len(got)
        assert got == value, (key, got, value)
