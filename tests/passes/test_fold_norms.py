"""The inference export's norm folding: which pairs fold, and that the export, loaded through
its own checkpoint converter, gives the training model's outputs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from archc.emit.flax.emitter import flax_source
from archc.emit.torch.emitter import torch_source
from archc.passes.fold_norms import FOLDABLE
from archc.passes.inference import inference_export
from archc.pipeline import compile_spec
from tests.helpers import SPECS, load_generated, randomize_batch_norm, run_archc

HEAD = "archc: 1\nname: net\ninput: [4, 8, 8]\n"
TOLERANCE = 1e-4
SIZES = {"inception_v3": 80, "unet": 188}
"""Input sizes other than 64 for the specs that need them."""


def touched(spec: Path) -> bool:
    """Whether the spec's IR has a batch norm reading a conv's output."""
    graph = compile_spec(spec).program.graph
    return any(
        node.op.name in FOLDABLE and graph.nodes[node.inputs[0]].op.name == "conv2d"
        for node in graph.nodes.values()
        if node.inputs[0] in graph.nodes
    )


ZOO = [spec for spec in sorted(SPECS.glob("*.yaml")) if touched(spec)]


def models(spec: Path, folder: Path, backend: str = "torch") -> tuple[Any, Any, dict[str, str]]:
    """The generated training module and inference-export module of a spec, and the export's
    folds (norm → conv)."""
    compiled = compile_spec(spec)
    export = inference_export(compiled.program)
    emit = {"torch": torch_source, "flax": flax_source}[backend]
    modules = []
    for name, chosen in (("training", None), ("inference", export)):
        path = folder / f"{backend}_{name}.py"
        path.write_text(emit(compiled.program, compiled.costs, "test", chosen))
        modules.append(load_generated(path))
    return *modules, {fold.norm: fold.conv for fold in export.folds}


def conv_norm_pairs(model: Any, example: Any) -> dict[str, str]:
    """norm → conv for every torch BatchNorm whose input is exactly a conv's output tensor,
    seen by forward hooks: an oracle apart from the pass."""
    import torch

    made_by: dict[int, str] = {}
    kept = []  # every conv output stays alive, so that no other tensor takes its id
    pairs: dict[str, str] = {}

    def record(name: str) -> Any:
        def hook(module: Any, inputs: tuple, output: Any) -> None:
            if isinstance(module, torch.nn.Conv2d):
                made_by[id(output)] = name
                kept.append(output)
            elif id(inputs[0]) in made_by:
                pairs[name] = made_by[id(inputs[0])]

        return hook

    hooks = [
        module.register_forward_hook(record(name))
        for name, module in model.named_modules()
        if isinstance(module, torch.nn.Conv2d) or hasattr(module, "running_var")
    ]
    with torch.no_grad():
        model(example)
    for hook in hooks:
        hook.remove()
    return pairs


def assert_export_matches(
    spec: Path, folder: Path, size: int, channels: int = 3
) -> tuple[dict[str, str], dict[str, str]]:
    """The torch export, loaded with inference_state_dict() of a training model with random
    norm statistics, against that model in eval; returns the folds (norm → conv), and the
    pairs the forward hooks see."""
    import torch

    training, inference, folds = models(spec, folder)
    model = training.create_model()
    randomize_batch_norm(model)
    model.eval()
    exported = inference.create_model().eval()
    exported.load_state_dict(inference.inference_state_dict(model.state_dict()), strict=True)
    example = torch.randn(2, channels, size, size, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        want, got = model(example), exported(example)
    for key in want if isinstance(want, dict) else [None]:
        expected, actual = (want[key], got[key]) if key else (want, got)
        scale = max(1.0, expected.abs().max().item())
        assert (actual - expected).abs().max().item() <= TOLERANCE * scale, key
    norms = sum(hasattr(module, "running_var") for module in model.modules())
    assert sum(hasattr(module, "running_var") for module in exported.modules()) == norms - len(
        folds
    )
    return folds, conv_norm_pairs(model, example)


@pytest.mark.parametrize("spec", ZOO, ids=[spec.stem for spec in ZOO])
def test_zoo_export_gives_the_training_outputs(spec: Path, tmp_path: Path) -> None:
    """Every norm that reads a conv's output is folded: no zoo model reads such a conv
    output twice."""
    pytest.importorskip("torch")
    folds, pairs = assert_export_matches(spec, tmp_path, SIZES.get(spec.stem, 64))
    assert folds == pairs


@pytest.mark.parametrize("name", ["shufflenet_v2_x1_0", "resnet50_fpn"])
def test_flax_export_gives_the_torch_training_outputs(name: str, tmp_path: Path) -> None:
    """Sequences numbered anew (ShuffleNet) and FrozenBatchNorm (the FPN backbone)."""
    import numpy as np

    torch = pytest.importorskip("torch")
    nnx = pytest.importorskip("flax.nnx")
    training, _, _ = models(SPECS / f"{name}.yaml", tmp_path)
    _, inference, _ = models(SPECS / f"{name}.yaml", tmp_path, "flax")
    model = training.create_model()
    randomize_batch_norm(model)
    model.eval()
    weights = {key: value.numpy() for key, value in model.state_dict().items()}
    exported = inference.create_model(nnx.Rngs(0))
    inference.load_torch_state_dict(exported, inference.inference_state_dict(weights))
    exported.eval()
    example = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        want = model(example)
    got = exported(example.numpy().transpose(0, 2, 3, 1))
    for key in want if isinstance(want, dict) else [None]:
        expected = (want[key] if key else want).numpy()
        actual = np.asarray(got[key] if key else got)
        if expected.ndim == 4:
            expected = expected.transpose(0, 2, 3, 1)
        assert np.abs(actual - expected).max() <= TOLERANCE * max(1.0, np.abs(expected).max())


BODIES = [
    # conv → bn → relu: folded
    ("  conv: {op: conv2d, out: 4, kernel: 1}\n  bn: batch_norm\n  relu: relu\n", {"bn": "conv"}),
    # a conv with its own bias, and a norm that does not follow its conv at once
    (
        "  conv: {op: conv2d, out: 4, kernel: 3, padding: 1, bias: true}\n"
        "  pool: {op: max_pool2d, kernel: 1, from: input}\n"
        "  bn: {op: frozen_batch_norm, from: conv}\n  add: {op: add, from: [bn, pool]}\n",
        {"bn": "conv"},
    ),
    # the conv's output is read twice: the norm cannot take it over
    (
        "  conv: {op: conv2d, out: 4, kernel: 1}\n  bn: batch_norm\n"
        "  add: {op: add, from: [bn, conv]}\n",
        {},
    ),
    # a norm of the input; a norm that `when:` may switch off, and one present with its conv
    ("  bn: batch_norm\n", {}),
    (
        "  conv: {op: conv2d, out: 4, kernel: 1}\n  bn: {op: batch_norm, when: size > 4}\n",
        {},
    ),
    (
        "  conv: {op: conv2d, out: 4, kernel: 1, when: size > 4}\n"
        "  bn: {op: batch_norm, when: size > 4}\n",
        {"bn": "conv"},
    ),
    # a sequence: the items after a folded norm move down
    (
        "  seq:\n    - {op: conv2d, out: 4, kernel: 3, padding: 1, bias: false}\n"
        "    - batch_norm\n    - relu\n    - {op: conv2d, out: 4, kernel: 1}\n    - batch_norm\n",
        {"seq.1": "seq.0", "seq.4": "seq.3"},
    ),
]


@pytest.mark.parametrize(("body", "folds"), BODIES)
def test_which_norms_fold(body: str, folds: dict[str, str], tmp_path: Path) -> None:
    pytest.importorskip("torch")
    spec = tmp_path / "net.yaml"
    spec.write_text(HEAD + "params: {size: 8}\nbody:\n" + body)
    assert assert_export_matches(spec, tmp_path, 8, channels=4)[0] == folds


PICKED = """\
blocks:
  Unit:
    params: {norm: {type: op, default: batch_norm}}
    body:
      conv: {op: conv2d, out: 4, kernel: 1}
      bn: norm
body:
  a: Unit
  b: {block: Unit, norm: frozen_batch_norm}
"""


def test_a_picked_norm_folds_in_every_instance(tmp_path: Path) -> None:
    """One class serves both instances, one with BatchNorm2d, one with FrozenBatchNorm2d."""
    pytest.importorskip("torch")
    spec = tmp_path / "net.yaml"
    spec.write_text(HEAD + PICKED)
    folds, _ = assert_export_matches(spec, tmp_path, 8, channels=4)
    assert folds == {"a.bn": "a.conv", "b.bn": "b.conv"}


def test_build_optimize_inference_writes_the_export_beside_the_model(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    out = tmp_path / "out"
    assert run_archc("build", "specs/resnet18.yaml", "-o", str(out)).returncode == 0
    result = run_archc("build", "specs/resnet18.yaml", "--optimize", "inference", "-o", str(out))
    assert result.returncode == 0, result.stderr
    written = out / "torch" / "resnet18_inference.py"
    params = sum(p.numel() for p in load_generated(written).create_model().parameters())
    assert result.stdout == f"wrote {written}: {params:,} params, 1.814 GMACs\n"
    assert (out / "torch" / "resnet18.py").exists()
    assert "--optimize=inference" in written.read_text()
