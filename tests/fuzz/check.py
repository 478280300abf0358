"""The invariants a random valid spec must satisfy, against the frameworks themselves.

check, stats and both emitters succeed; the torch model runs, and its output shape, params,
buffers and MACs (FlopCounterMode) equal archc's, also after `create_model(w=…)` against
`--set w=…`; the flax model with the torch weights gives the torch outputs (≤ 1e-4, or within
a few times torch's own float32 rounding where a random spec is ill-conditioned), and so do
its gradients, in a step in training mode (batch statistics, and the running statistics they
leave) where no op draws at random, else in eval. All of it again at the other value of
the bool param `flag` (what its `when:`s switch); then the inference exports, channels_last
and a training step at the defaults.
"""

from __future__ import annotations

import contextlib
import copy
import io
import re
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, NamedTuple

import numpy as np

from archc.cli import main
from archc.errors import ArchcError
from archc.ir.symbolic import concrete
from archc.pipeline import Compiled, compile_spec
from tests.helpers import (
    assert_same_detections,
    canonical_order,
    count_macs,
    load_generated,
    randomize_batch_norm,
)

TOLERANCE = 1e-4
# How many times torch's own float32 error (against float64) another float32 run may be off:
# a layer norm over two near-equal values amplifies rounding far past TOLERANCE.
ROUNDING_FACTOR = 10


class MismatchError(AssertionError):
    """Generated code that disagrees with archc's IR, by kind."""

    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(f"{kind}: {detail}")
        self.kind = kind


def expect(kind: str, got: object, want: object) -> None:
    if got != want:
        raise MismatchError(kind, f"the generated code gives {got}, archc says {want}")


def _compare_at_width(spec: Path, torch_module: object, width: int) -> None:
    """`create_model(w=…)` against `--set w=…`, where archc accepts that width (one that the
    groups no longer divide is refused, rightly, and then there is nothing to compare)."""
    try:
        wider = compile_spec(spec, {"w": str(width)}).costs.total
    except ArchcError:
        return
    other = torch_module.create_model(w=width)
    got = sum(p.numel() for p in other.parameters())
    expect("params after create_model(w=…)", got, wider.params)


def _shape_comments(path: str) -> dict[str, tuple[int, ...]]:
    """`x = self.layer1(x)  # (N, 256, 56, 56)` in the model's forward: module → shape."""
    text = Path(path).read_text()
    forward = text[text.rindex("    def forward(") :]
    found = re.findall(r"= self\.(\w+)\([^\n]*\)  # \(N, ([\d, ]+)\)", forward)
    return {name: tuple(int(size) for size in sizes.split(", ")) for name, sizes in found}


def build(spec: Path, backend: str, out: Path, inference: bool = False) -> Path:
    stderr = io.StringIO()
    optimize = ["--optimize", "inference"] if inference else []
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(stderr):
        status = main(["build", str(spec), "--backend", backend, "-o", str(out), *optimize])
    if status != 0:
        raise MismatchError("build", f"{backend}: {stderr.getvalue().strip()}")
    return out / backend / f"{spec.stem}{'_inference' if inference else ''}.py"


def check_spec(spec: Path, out: Path, width: int = 16) -> None:
    """Raise MismatchError (or a located ArchcError, for a spec archc refuses) on any violation."""
    import torch
    from flax import nnx

    compiled = compile_spec(spec)
    torch_module = load_generated(build(spec, "torch", out))
    flax_module = load_generated(build(spec, "flax", out))
    run = _check_point(compiled, torch_module, flax_module, {})
    args = compiled.program.args
    if "w" in args:  # the same model at another width, both ways
        _compare_at_width(spec, torch_module, width)
    if isinstance(args.get("flag"), bool):  # the branches and wirings the flag switches
        _check_flipped(spec, "flag", not args["flag"], torch_module, flax_module)
    model, example, want, rounding = run.model, run.example, run.want, run.rounding
    graph = compiled.program.graph

    def torch_output(module: Any) -> np.ndarray:
        with torch.no_grad():
            return _in_flax_layout(module.eval()(example), graph)

    # The inference export, both backends, from the training weights.
    inference = load_generated(build(spec, "torch", out, inference=True))
    folded = inference.create_model()
    folded.load_state_dict(inference.inference_state_dict(model.state_dict()), strict=True)
    _expect_close("inference export output", torch_output(folded), want, rounding)
    if "detect" in graph.methods:
        _check_export_detections(graph, model, folded, example)
    flax_inference = load_generated(build(spec, "flax", out, inference=True))
    flax_folded = flax_inference.create_model(nnx.Rngs(0))
    flax_inference.load_torch_state_dict(
        flax_folded, flax_inference.inference_state_dict(run.weights)
    )
    flax_folded.eval()  # then under jit, its state donated
    got = _flax_output(flax_inference.jit_forward(flax_folded), run.array)
    _expect_close("flax inference export output (jit_forward)", got, want, rounding)

    fast = torch_module.create_model(channels_last=True)
    fast.load_state_dict(model.state_dict(), strict=True)
    _expect_close("create_model(channels_last=True) output", torch_output(fast), want, rounding)
    _train_step(model, example)


def _check_flipped(
    spec: Path, param: str, value: bool, torch_module: ModuleType, flax_module: ModuleType
) -> None:
    """The model at the other value of a bool param, `create_model(param=value)` in both
    backends against `--set param=value`, where archc accepts that value."""
    try:
        compiled = compile_spec(spec, {param: str(value).lower()})
    except ArchcError:
        return
    _check_point(compiled, torch_module, flax_module, {param: value}, f" at {param}={value}")


@dataclass(frozen=True)
class _Run:
    """The torch model at one param point, run in eval on an example, and that run's figures."""

    model: Any
    example: Any
    weights: dict[str, np.ndarray]
    array: np.ndarray
    """The example as flax takes it."""
    want: np.ndarray
    """Torch's output, in flax's layout."""
    rounding: float
    """Torch's float32 error on this output, against float64."""


def _check_point(
    compiled: Compiled,
    torch_module: ModuleType,
    flax_module: ModuleType,
    params: dict[str, Any],
    at: str = "",
) -> _Run:
    """Both generated models built with `params` against the IR compiled with them: trainable
    params, output shape, MACs (and, at the defaults, the forward's shape comments); flax,
    with torch's weights, gives torch's outputs, detections and losses."""
    import torch
    from flax import nnx

    total = compiled.costs.total
    graph = compiled.program.graph
    (output,) = graph.outputs.values()
    want_shape = tuple(concrete(dim) for dim in graph.type_of(output).shape[1:])
    torch.manual_seed(0)  # the same weights on every run, so a failure reproduces
    model = torch_module.create_model(**params)
    trained = sum(p.numel() for p in model.parameters() if p.requires_grad)
    expect(f"trainable params (requires_grad){at}", trained, total.trainable)
    randomize_batch_norm(model)
    model.eval()
    commented = {} if params else _shape_comments(torch_module.__file__)
    seen: dict[str, tuple[int, ...]] = {}
    for name in commented:

        def record(module: object, inputs: object, result: object, name: str = name) -> None:
            seen.setdefault(name, tuple(result.shape))

        getattr(model, name).register_forward_hook(record)
    shape = tuple(concrete(dim) for dim in graph.inputs["input"].shape[1:])
    example = torch.randn((2, *shape), generator=torch.Generator().manual_seed(0))
    macs, result = count_macs(model, example)
    expect(f"output shape{at}", tuple(result.shape[1:]), want_shape)
    for name, comment in commented.items():
        expect(f"shape comment of {name}", comment, seen[name][1:])
    expect(f"macs{at}", macs, 2 * total.macs)  # a batch of two
    with torch.no_grad():
        exact = copy.deepcopy(model).double()(example.double())
    rounding = float((result.double() - exact).abs().max()) if result.numel() else 0.0

    weights = {key: value.detach().numpy() for key, value in model.state_dict().items()}
    array = _flax_input(example.numpy())
    want = _in_flax_layout(result, graph)
    flax_model = flax_module.create_model(nnx.Rngs(0), **params)
    flax_params = nnx.to_flat_state(nnx.state(flax_model, nnx.Param))
    flax_trained = sum(value.size for _, value in flax_params)
    expect(f"trainable params (nnx.Param){at}", flax_trained, trained)
    undrawn = [path for path, value in flax_params if np.isnan(value.get_value()).any()]
    expect(f"flax params left undrawn (NaN){at}", undrawn, [])
    flax_module.load_torch_state_dict(flax_model, weights)
    flax_model.eval()
    _expect_close(f"flax output{at}", _flax_output(flax_model, array), want, rounding)
    if "detect" in graph.methods:
        _check_detections(graph, model, flax_model, example, array)
    if "loss" in graph.methods:
        _check_losses(graph, model, flax_model, example, array)
    training = not _draws_in_training(graph)
    _check_training_step(graph, model, flax_module, flax_model, example, array, training, at)
    return _Run(model, example, weights, array, want, rounding)


def _draws_in_training(graph: Any) -> bool:
    """Whether the forward draws at random in training (a dropout that drops), so that the
    two frameworks' training steps cannot be compared (their eval-mode steps can)."""
    random_ops = ("dropout", "stochastic_depth")
    return any(node.op.name in random_ops and node.attrs.p > 0 for node in graph.nodes.values())


def _check_training_step(
    graph: Any,
    model: Any,
    flax_module: ModuleType,
    flax_model: Any,
    example: Any,
    array: np.ndarray,
    training: bool,
    at: str,
) -> None:
    """A training step's forward and backward on copies of both models (in eval mode, with
    `training` false), the output weighed by a random cotangent: flax's outputs, gradients
    (the input's too, which reach through ops without weights) and the running statistics
    left behind are torch's (batch statistics; a shared norm updates them at each call, a
    frozen one never)."""
    import jax
    from flax import nnx

    mode = "training" if training else "eval"
    model = copy.deepcopy(model).train(training)
    step = _torch_step(model, example)
    exact = _torch_step(copy.deepcopy(model).double(), example.double())
    rounding = float((step.result.double() - exact.result).abs().max())
    grads = step.grads
    errors = {
        name: float((grad.double() - exact.grads[name]).abs().max()) for name, grad in grads.items()
    }
    weigh = _in_flax_layout(step.cotangent, graph)

    def loss(flax_model: Any, array: Any) -> tuple[Any, Any]:
        output = flax_model(array)
        return (output * weigh).sum(), output

    flax_model = nnx.clone(flax_model)
    if training:
        flax_model.train()
    flax_step = nnx.value_and_grad(loss, argnums=(0, 1), has_aux=True)
    with jax.default_matmul_precision("highest"):
        (_, output), (flax_grads, input_grad) = flax_step(flax_model, array)
    want = _in_flax_layout(step.result, graph)
    _expect_close(f"flax {mode}-mode output{at}", np.asarray(output), want, rounding)
    want = _flax_input(step.input_grad.numpy())
    error = float((step.input_grad.double() - exact.input_grad).abs().max())
    _expect_close(f"{mode}-mode gradient of the input{at}", np.asarray(input_grad), want, error)

    # torch's gradients in flax's layout: loaded into a copy as if they were its weights
    state = {name: value.numpy() for name, value in model.state_dict().items()}
    as_flax = nnx.clone(flax_model)
    flax_module.load_torch_state_dict(
        as_flax, {**state, **{k: v.numpy() for k, v in grads.items()}}
    )
    wanted = dict(nnx.to_flat_state(nnx.state(as_flax, nnx.Param)))
    for path, grad in nnx.to_flat_state(flax_grads):
        name = flax_module._torch_name(flax_model, path)
        got, want = np.asarray(grad.get_value()), np.asarray(wanted[path].get_value())
        _expect_close(f"{mode}-mode gradient of {name}{at}", got, want, errors[name])

    statistics = {
        flax_module._torch_name(flax_model, path): np.asarray(variable.get_value())
        for path, variable in nnx.to_flat_state(nnx.state(flax_model, nnx.BatchStat))
    }
    buffers = dict(model.named_buffers())
    frozen = [name for name, value in model.named_parameters() if not value.requires_grad]
    kept = sorted([*buffers, *frozen])  # what flax keeps out of nnx.Param
    expect(f"state after a {mode}-mode step{at}", sorted(statistics), kept)
    for name, buffer in buffers.items():
        want = buffer.double().numpy()
        _expect_close(f"{name} after a {mode}-mode step{at}", statistics[name], want, rounding)


class _Step(NamedTuple):
    """A torch forward and backward of the output weighed by a random cotangent."""

    result: Any
    cotangent: Any
    grads: dict[str, Any]
    """Each trainable parameter's, by state_dict name (a shared module's at each of its
    names; zeros where the output does not reach it)."""
    input_grad: Any


def _torch_step(model: Any, example: Any) -> _Step:
    """The model's step on `example` (the input requiring grad, so that a model without
    trainable weights has a graph too)."""
    import torch

    example = example.clone().requires_grad_()
    result = model(example)
    noise = torch.randn(result.shape, generator=torch.Generator().manual_seed(1))
    cotangent = noise.to(result.dtype)
    (result * cotangent).sum().backward()
    grads = {
        name: (torch.zeros_like(value) if value.grad is None else value.grad).detach()
        for name, value in model.named_parameters(remove_duplicate=False)
        if value.requires_grad
    }
    return _Step(result.detach(), cotangent, grads, example.grad)


def _flax_input(array: np.ndarray) -> np.ndarray:
    """A torch input as flax takes it: NHWC images."""
    return array.transpose(0, 2, 3, 1) if array.ndim == 4 else array


def _in_flax_layout(value: Any, graph: Any) -> np.ndarray:
    """A torch output as flax gives it: NHWC maps."""
    (output,) = graph.outputs.values()
    array = value.detach().numpy()
    if array.ndim == 4 and not graph.type_of(output).channels_last:
        array = array.transpose(0, 2, 3, 1)
    return array


def _check_detections(
    graph: Any, model: Any, flax_model: Any, example: Any, array: np.ndarray
) -> None:
    """`detect()`: the IR's shapes, and flax's detections torch's (rows of one score in
    either order), with their masks where it pastes them (flax's channels-last)."""
    import torch

    returned = graph.methods["detect"]
    with torch.no_grad():
        found = _named(model.eval().detect(example), returned)
    got = _named(_flax_output(flax_model.detect, array, numpy=False), returned)
    expect("detect() values", sorted(found), sorted(returned))
    for key, value in returned.items():
        want_shape = tuple(concrete(dim) for dim in graph.type_of(value).shape[1:])
        expect(f"detect() {key or 'value'} shape", found[key].shape[1:], want_shape)
    pasted = _pasted(graph)
    got = {  # flax's masks channels-last: (N, H, W, R)
        key: np.moveaxis(np.asarray(value), -1, 1) if key in pasted else np.asarray(value)
        for key, value in got.items()
    }
    want = {key: value.numpy() for key, value in found.items()}
    _expect_same_detect("flax detect()", got, want, pasted)


def _check_export_detections(graph: Any, model: Any, folded: Any, example: Any) -> None:
    """The inference export's `detect()` against the training model's: its detection stage
    reads the folded body."""
    import torch

    returned = graph.methods["detect"]
    with torch.no_grad():
        found = _named(model.eval().detect(example), returned)
        got = _named(folded.eval().detect(example), returned)
    numpy = [{key: value.numpy() for key, value in named.items()} for named in (got, found)]
    _expect_same_detect("inference export detect()", *numpy, _pasted(graph))


def _named(value: Any, returned: dict[str, str]) -> dict[str, Any]:
    return {"": value} if "" in returned else value


def _pasted(graph: Any) -> list[str]:
    """The `detect()` values that are pasted masks (the rest are detection rows)."""
    returned = graph.methods["detect"]
    return [key for key, value in returned.items() if graph.nodes[value].op.name == "paste_masks"]


def _expect_same_detect(
    kind: str, got: dict[str, np.ndarray], want: dict[str, np.ndarray], pasted: list[str]
) -> None:
    """Two `detect()` results, rows of one score in either order; where rows differ one by
    one and no masks are pasted, as the same detections by assert_same_detections."""
    rows_key = next(key for key in want if key not in pasted)
    expect(f"{kind} shape", got[rows_key].shape, want[rows_key].shape)
    orders = [
        (canonical_order(rows), canonical_order(wanted))
        for rows, wanted in zip(got[rows_key], want[rows_key])
    ]
    for rows, wanted, (order, wanted_order) in zip(got[rows_key], want[rows_key], orders):
        try:
            _expect_close(f"{kind} rows", rows[order], wanted[wanted_order], 0.0)
        except MismatchError:
            if pasted:  # masks are compared row by row
                raise
            _expect_same_detections(f"{kind} rows", rows, wanted)
    for key in pasted:
        for mask, wanted, (order, wanted_order) in zip(got[key], want[key], orders):
            _expect_close(f"{kind} {key}", mask[order], wanted[wanted_order], 0.0)


def _expect_same_detections(kind: str, rows: np.ndarray, want: np.ndarray) -> None:
    """Rows that differ row by row may still be the same detections: two runs may order
    scores a rounding error apart either way, or keep their own pick of them at the last
    score, so those rows are matched by content or by score alone."""
    scale = max(1.0, float(np.abs(want).max())) if want.size else 1.0
    try:
        assert_same_detections(rows, want, box_atol=TOLERANCE * scale, score_rtol=TOLERANCE)
    except AssertionError as error:
        raise MismatchError(kind, str(error)) from None


def _check_losses(graph: Any, model: Any, flax_model: Any, example: Any, array: np.ndarray) -> None:
    """`loss()` on one box per image and its mask, the box's left half (flax's targets padded
    with a second, label -1): the losses the IR names, flax's equal to torch's."""
    import jax
    import torch

    height, width = example.shape[-2:]
    box = [1.0, 2.0, width - 2.0, height - 1.0]
    label = _last_class(graph)  # not 0: SSD's softmax takes 0 for the background
    mask = np.zeros((1, height, width), np.uint8)
    mask[:, 2:, : width // 2] = 1
    target = {"boxes": torch.tensor([box]), "labels": torch.tensor([label])}
    targets = [{**target, "masks": torch.from_numpy(mask)}] * len(example)
    with torch.no_grad():
        losses = model.eval().loss(example, targets)
    expect("loss() names", sorted(losses), sorted(graph.methods["loss"]))
    padded = {
        "boxes": np.asarray([[box, [0.0] * 4]] * len(example), np.float32),
        "labels": np.asarray([[label, -1]] * len(example)),
        "masks": np.asarray([np.concatenate([mask, mask * 0])] * len(example)),
    }
    with jax.default_matmul_precision("highest"):
        got = flax_model.loss(array, padded)
    for name, value in losses.items():
        _expect_close(f"flax loss() {name}", np.asarray(got[name]), value.numpy(), 0.0)


def _last_class(graph: Any) -> int:
    """The last class the classification losses' logits score (their rows' width, less one;
    an RPN's objectness logit scores no class), or a yolo loss's maps (per anchor, the
    values after the box and objectness)."""
    from archc.ops.detection import (
        ClassificationLoss,
        ObjectnessLoss,
        RoIClassificationLoss,
        YoloLoss,
    )

    nodes = [graph.nodes[node] for node in graph.methods["loss"].values()]
    classes = ClassificationLoss | RoIClassificationLoss
    counts = [
        int(concrete(graph.type_of(node.inputs[0]).shape[-1]))
        for node in nodes
        if isinstance(node.op, classes) and not isinstance(node.op, ObjectnessLoss)
    ]
    for node in nodes:
        if isinstance(node.op, YoloLoss):
            anchors = len(concrete(node.attrs.anchors)[0]) // 2
            counts.append(int(concrete(graph.type_of(node.inputs[1]).channels)) // anchors - 5)
    return min(counts) - 1


def _flax_output(forward: Any, array: np.ndarray, numpy: bool = True) -> Any:
    """A flax model's (or a jitted forward's) output, matmuls at full fp32 precision: as
    one numpy array, or (`numpy=False`) as it is."""
    import jax

    with jax.default_matmul_precision("highest"):
        output = forward(array)
    return np.asarray(output) if numpy else output


def _expect_close(kind: str, got: np.ndarray, want: np.ndarray, rounding: float) -> None:
    """Within TOLERANCE of the torch model's output, relative to its largest value, or within
    ROUNDING_FACTOR times that output's own `rounding` error against float64."""
    expect(f"{kind} shape", got.shape, want.shape)
    difference = float(np.abs(got - want).max()) if want.size else 0.0
    scale = max(1.0, float(np.abs(want).max())) if want.size else 1.0
    allowed = max(TOLERANCE * scale, ROUNDING_FACTOR * rounding)
    if not difference <= allowed:  # NaN included
        raise MismatchError(
            kind,
            f"max abs difference {difference:.2e} > {allowed:.2e} (the larger of {TOLERANCE}"
            f" x {scale:.2g} and {ROUNDING_FACTOR} x torch's float32 error {rounding:.2e})",
        )


def _train_step(model: Any, example: Any) -> None:
    """A training forward and backward (the input requiring grad, so that a model without
    parameters has a graph too): an op run in place where autograd needs the tensor it
    overwrote fails here, which the eval comparisons cannot see."""
    model.train()
    try:
        model(example.clone().requires_grad_()).float().sum().backward()
    except RuntimeError as error:
        raise MismatchError("training step", str(error).splitlines()[0]) from None
