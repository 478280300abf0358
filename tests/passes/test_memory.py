"""The training-memory estimate against what PyTorch holds training the generated model."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

torch = pytest.importorskip("torch")

import archc  # noqa: E402
from tests.helpers import GENERATED, load_generated, run_archc  # noqa: E402

OPTIMIZERS = {
    "sgd": lambda params: torch.optim.SGD(params, lr=0.01, momentum=0.9),
    "adam": lambda params: torch.optim.Adam(params, lr=1e-3),
}


def measured_peak(
    name: str, batch: int, size: int, optimizer: str, folder: Path = GENERATED
) -> dict[str, int]:
    """Bytes held at the end of a training forward, after one whole step (so gradients and
    the optimizer's state exist): parameters, buffers, gradients, optimizer state, and every
    distinct storage autograd saved for backward (a saved-tensor hook count)."""
    model = load_generated(folder / "torch" / f"{name}.py").create_model().train()
    trained = [p for p in model.parameters() if p.requires_grad]
    step = OPTIMIZERS[optimizer](trained)
    example = torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(0))
    model(example).sum().backward()
    step.step()
    held = {p.untyped_storage().data_ptr() for p in [*model.parameters(), *model.buffers()]}
    saved: dict[int, int] = {}

    def pack(tensor: Any) -> Any:
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in held:
            saved[storage.data_ptr()] = storage.nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        model(example)
    state = [value for entry in step.state.values() for value in entry.values()]
    return {
        "params": sum(p.nbytes for p in model.parameters()),
        "buffers": sum(b.nbytes for b in model.buffers()),
        "gradients": sum(p.grad.nbytes for p in trained),
        "optimizer_state": sum(t.nbytes for t in state if torch.is_tensor(t) and t.ndim),
        "activations": sum(saved.values()),
    }


@pytest.mark.parametrize("name", ["resnet50", "mobilenet_v2", "vit_b_16", "swin_t"])
def test_training_memory_is_what_torch_holds(name: str) -> None:
    """At batch 8 on CPU, the estimate is within 10% of the measured peak, and the
    activations (the part that is estimated rather than counted) within 1%."""
    result = run_archc("stats", f"specs/{name}.yaml", "--batch", "8", "--format", "json")
    assert result.returncode == 0, result.stderr
    estimate = json.loads(result.stdout)["memory"]
    measured = measured_peak(name, 8, 224, "sgd")
    for part in ("params", "buffers", "gradients", "optimizer_state"):
        assert estimate[part] == measured[part], part
    assert abs(estimate["activations"] / measured["activations"] - 1) < 0.01
    assert abs(estimate["total"] / sum(measured.values()) - 1) < 0.10


def test_adam_keeps_two_tensors_per_parameter() -> None:
    model = archc.load("specs/resnet18.yaml", input=64)
    estimate = model.memory(batch=2, optimizer="adam")
    measured = measured_peak("resnet18", 2, 64, "adam")
    assert estimate.optimizer_state == measured["optimizer_state"] == 2 * estimate.params
    assert abs(estimate.activations / measured["activations"] - 1) < 0.10


def test_half_precision_halves_the_activations_only() -> None:
    """All but the max pool's int64 indices (4 samples of 64 x 56 x 56) halve."""
    model = archc.load("specs/resnet18.yaml")
    full, half = model.memory(batch=4), model.memory(batch=4, dtype="bf16")
    assert 2 * half.activations - full.activations == 4 * 64 * 56 * 56 * 8
    assert (half.params, half.gradients) == (full.params, full.gradients)
    with pytest.raises(archc.ArchcError, match="expected a batch of at least 1"):
        model.memory(batch=0)


def test_frozen_parameters_have_no_gradient_or_state(tmp_path: Path) -> None:
    """Frozen params (`frozen:`) hold no gradient or optimizer state, and autograd keeps
    nothing before the first trained one: the estimate follows torch exactly there."""
    spec = "tests/specs/frozen.yaml"
    assert run_archc("build", spec, "-o", str(tmp_path)).returncode == 0
    result = run_archc("stats", spec, "--batch", "4", "--format", "json", "--optimizer", "adam")
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    estimate = document["memory"]
    measured = measured_peak("frozen_parts", 4, 16, "adam", tmp_path)
    assert 0 < document["trainable"] < document["params"]
    for part in ("params", "buffers", "gradients", "optimizer_state"):
        assert estimate[part] == measured[part], part
    assert abs(estimate["activations"] / measured["activations"] - 1) < 0.01
