"""Shared modules (`shared: true`, `call:`): one module called on several inputs, its state
once."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import (
    REPO,
    archc_stats,
    assert_flax_agrees,
    compare,
    load_generated,
    run_archc,
)

torch = pytest.importorskip("torch")
nn = torch.nn

SPEC = "tests/specs/shared.yaml"


class HandWritten(nn.Module):
    """tests/specs/shared.yaml written by hand: the tower, the gate and the sigmoid applied to
    both maps with one set of weights, each map's rows of 4 concatenated."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.down = nn.Conv2d(8, 8, 3, stride=2, padding=1)
        self.tower = nn.Module()
        self.tower.conv = nn.Conv2d(8, 8, 3, padding=1, bias=False)
        self.tower.bn = nn.BatchNorm2d(8)
        self.gate = nn.Parameter(torch.randn(8, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        stem = self.stem(x)
        rows = []
        for level in (stem, self.down(stem)):
            level = torch.relu(self.tower.bn(self.tower.conv(level)))
            level = torch.sigmoid(level * self.gate)
            rows.append(level.permute(0, 2, 3, 1).reshape(len(x), -1, 4))
        return torch.cat(rows, dim=1)


def build(backend: str, folder: Path, *options: str) -> None:
    built = run_archc("build", SPEC, "--backend", backend, "-o", str(folder), *options)
    assert built.returncode == 0, built.stderr


def test_a_shared_module_holds_its_state_once_and_runs_on_each_input(tmp_path: Path) -> None:
    """Counts (params once, MACs per call), strict loading and outputs against the model
    written by hand."""
    build("torch", tmp_path)
    generated = load_generated(tmp_path / "torch" / "shared.py").create_model()
    torch.manual_seed(0)
    compare(HandWritten(), generated, archc_stats(SPEC))


def test_the_inference_export_folds_a_shared_norm_for_every_call(tmp_path: Path) -> None:
    build("torch", tmp_path, "--optimize", "inference")
    build("torch", tmp_path)
    training = load_generated(tmp_path / "torch" / "shared.py").create_model()
    module = load_generated(tmp_path / "torch" / "shared_inference.py")
    reference = HandWritten()
    compare(reference, training, archc_stats(SPEC))  # randomises the norm's statistics
    inference = module.create_model().eval()
    inference.load_state_dict(module.inference_state_dict(training.state_dict()), strict=True)
    assert not any(isinstance(layer, nn.BatchNorm2d) for layer in inference.modules())
    example = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        assert torch.allclose(inference(example), reference(example), atol=1e-5)


def test_flax_shares_as_torch_does(tmp_path: Path) -> None:
    pytest.importorskip("flax")
    from tests.oracle.test_flax_parity import assert_eval_outputs_match, models

    for backend in ("torch", "flax"):
        build(backend, tmp_path)
    _, torch_model, flax_model = models("shared", tmp_path)
    assert_eval_outputs_match(torch_model, flax_model, 16)


def test_the_ir_marks_later_calls() -> None:
    printed = run_archc("ir", str(REPO / SPEC))
    assert printed.returncode == 0, printed.stderr
    assert "%tower@1.conv : f32[N,8,8,8] = conv2d" in printed.stdout
    assert printed.stdout.count("# shares %tower.conv") == 1


class CalledTwice(nn.Module):
    """tests/specs/called.yaml written by hand: the tower conv on the stem's map, then again
    on that map pooled."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.tower = nn.Conv2d(8, 8, 3, padding=1)
        self.fc = nn.Linear(8, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.tower(torch.max_pool2d(self.tower(self.stem(x)), 2, 2))
        return self.fc(torch.flatten(torch.nn.functional.adaptive_avg_pool2d(x, 1), 1))


def test_a_called_module_runs_again_with_its_own_state(tmp_path: Path) -> None:
    """`call:` runs an earlier node's module on another value: its parameters once, its MACs
    per call, strict loading and outputs against the model written by hand; the diagram
    draws the one module."""
    spec = "tests/specs/called.yaml"
    built = run_archc("build", spec, "-o", str(tmp_path))
    assert built.returncode == 0, built.stderr
    generated = load_generated(tmp_path / "torch" / "called.py").create_model()
    torch.manual_seed(0)
    compare(CalledTwice(), generated, archc_stats(spec))
    drawn = run_archc("diagram", spec, "-o", str(tmp_path / "called.dot"))
    assert drawn.returncode == 0, drawn.stderr
    text = (tmp_path / "called.dot").read_text()
    assert "<B>tower</B>" in text and "again" not in text  # edges into it from both maps
    assert text.count('-> "tower"') == 2


class KeptWithin(nn.Module):
    """tests/specs/kept_within.yaml written by hand: the head a module of the trunk's, run
    after it, twice."""

    def __init__(self) -> None:
        super().__init__()
        self.trunk = nn.Module()
        self.trunk.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.trunk.head = nn.Module()
        self.trunk.head.conv = nn.Conv2d(4, 4, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.trunk.conv(x))
        return self.trunk.head.conv(self.trunk.head.conv(x))


def test_a_module_kept_within_another_has_its_state_there(tmp_path: Path) -> None:
    """`within:` keeps a block's module inside an earlier one's: counts, strict loading and
    outputs against the model written by hand, in torch and in flax."""
    spec = "tests/specs/kept_within.yaml"
    for backend in ("torch", "flax"):
        built = run_archc("build", spec, "--backend", backend, "-o", str(tmp_path))
        assert built.returncode == 0, built.stderr
    generated = load_generated(tmp_path / "torch" / "kept_within.py").create_model()
    torch.manual_seed(0)
    reference = KeptWithin()
    compare(reference, generated, archc_stats(spec))
    nnx = pytest.importorskip("flax.nnx")
    flax_file = load_generated(tmp_path / "flax" / "kept_within.py")
    flax_model = flax_file.create_model(nnx.Rngs(0))
    assert_flax_agrees(reference, flax_file, flax_model, (2, 3, 8, 8))
