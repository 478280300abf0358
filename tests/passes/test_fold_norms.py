"""The inference export's norm folding: which pairs fold, and that the export, loaded through
its own checkpoint converter, gives the training model's outputs."""

from __future__ import annotations

from pathlib import Path

import pytest

from archc.passes.fold_norms import FOLDABLE
from archc.pipeline import compile_spec
from tests.helpers import SPECS, load_generated, randomize_batch_norm, run_archc
from tests.passes.exports import TOLERANCE, assert_export_matches, models

HEAD = "archc: 1\nname: net\ninput: [4, 8, 8]\n"
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


@pytest.mark.parametrize("spec", ZOO, ids=[spec.stem for spec in ZOO])
def test_zoo_export_gives_the_training_outputs(spec: Path, tmp_path: Path) -> None:
    """Every norm that reads a conv's output is folded: no zoo model reads such a conv
    output twice."""
    pytest.importorskip("torch")
    folds, pairs = assert_export_matches(spec, tmp_path, SIZES.get(spec.stem, 64))
    assert folds == pairs


@pytest.mark.parametrize("name", ["shufflenet_v2_x1_0", "resnet50_fpn", "googlenet"])
def test_flax_export_gives_the_torch_training_outputs(name: str, tmp_path: Path) -> None:
    """Sequences numbered anew (ShuffleNet), FrozenBatchNorm (the FPN backbone), parallel
    branches joined (GoogLeNet)."""
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
