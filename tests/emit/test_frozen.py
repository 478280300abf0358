"""`frozen:` — the parameters a spec freezes are the ones the generated torch and flax models
leave out of training, and the ones `stats` counts as not trainable."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from archc.emit.validate import validate_torch
from archc.errors import InternalError
from archc.pipeline import compile_spec
from tests.helpers import REPO, assert_flax_agrees, load_generated, run_archc

SPEC = "tests/specs/frozen.yaml"
MODEL = "frozen_parts"
# What the spec says, read off it: the stem and its norm (freeze_stem), layer1's convs (the
# block's own `fixed`), layer2 unless fine-tuning, both dense units, the scale; fc only when
# fine-tuning; the head never.
FROZEN_BY_DEFAULT = (
    "stem.",
    "bn.",
    "layer1.0.conv.",
    "layer1.1.conv.",
    "layer2.",
    "unit0.",
    "unit1.",
    "scale",
)
FINE_TUNING = ("stem.", "bn.", "layer1.0.conv.", "layer1.1.conv.", "unit0.", "unit1.")
SETTINGS = {
    (): FROZEN_BY_DEFAULT,
    ("fine_tune=true",): (*FINE_TUNING, "scale", "fc."),
    ("freeze_stem=false",): FROZEN_BY_DEFAULT[2:],
}


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("frozen")
    for backend in ("torch", "flax"):
        result = run_archc("build", SPEC, "--backend", backend, "-o", str(out))
        assert result.returncode == 0, result.stderr
    return out


def _stats(settings: tuple[str, ...]) -> dict:
    sets = [f"--set={item}" for item in settings]
    result = run_archc("stats", SPEC, "--format", "json", *sets)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


@pytest.mark.parametrize(
    "settings", list(SETTINGS), ids=lambda items: ",".join(items) or "defaults"
)
def test_torch_trains_what_stats_counts_as_trainable(built: Path, settings: tuple) -> None:
    pytest.importorskip("torch")
    module = load_generated(built / "torch" / f"{MODEL}.py")
    overrides = {key: value == "true" for key, value in (item.split("=") for item in settings)}
    model = module.create_model(**overrides)
    frozen = {name for name, p in model.named_parameters() if not p.requires_grad}
    assert frozen == {
        name for name, _ in model.named_parameters() if name.startswith(SETTINGS[settings])
    }
    stats = _stats(settings)
    trained = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert stats["trainable"] == trained
    assert stats["params"] == sum(p.numel() for p in model.parameters())
    assert sum(node["trainable"] for node in stats["nodes"]) == trained


def test_flax_leaves_frozen_parameters_out_of_nnx_param(built: Path) -> None:
    """A frozen parameter is state in flax (what optimizers over nnx.Param leave), it loads
    from the torch checkpoint all the same, and the two models agree."""
    pytest.importorskip("torch")
    nnx = pytest.importorskip("flax.nnx")
    model = load_generated(built / "torch" / f"{MODEL}.py").create_model().eval()
    flax_module = load_generated(built / "flax" / f"{MODEL}.py")
    flax_model = flax_module.create_model(nnx.Rngs(0))
    params = nnx.to_flat_state(nnx.state(flax_model, nnx.Param))
    trainable = sum(variable.size for _, variable in params)
    assert trainable == _stats(())["trainable"]
    assert_flax_agrees(model, flax_module, flax_model, (2, 3, 16, 16))


def test_translation_validation_sees_a_freeze_the_ir_lacks(built: Path) -> None:
    source = (built / "torch" / f"{MODEL}.py").read_text(encoding="utf-8")
    unfrozen = "self.stem = nn.Conv2d(3, 8, kernel_size=3)"
    frozen = "self.stem = freeze_params(nn.Conv2d(3, 8, kernel_size=3), freeze_stem)"
    assert frozen in source
    graph = compile_spec(REPO / SPEC).program.graph
    validate_torch(source, graph, [])  # as built: no complaint
    with pytest.raises(InternalError, match=r"stem .*trained, the IR says frozen"):
        validate_torch(source.replace(frozen, unfrozen), graph, [])


def test_a_flax_training_step_leaves_frozen_parameters_alone(built: Path) -> None:
    """nnx.grad and an nnx.Optimizer over nnx.Param (their defaults) change every trained
    parameter and no frozen one."""
    nnx = pytest.importorskip("flax.nnx")
    optax = pytest.importorskip("optax")
    module = load_generated(built / "flax" / f"{MODEL}.py")
    model = module.create_model(nnx.Rngs(0))
    before = dict(_flat_arrays(nnx, model))
    optimizer = nnx.Optimizer(model, optax.sgd(0.1), wrt=nnx.Param)
    images = np.random.default_rng(0).normal(size=(2, 16, 16, 3)).astype(np.float32)
    grads = nnx.grad(lambda network: (network(images) ** 2).mean())(model)
    optimizer.update(model, grads)
    changed = {path for path, array in _flat_arrays(nnx, model) if (array != before[path]).any()}
    variables = nnx.to_flat_state(nnx.state(model))
    frozen = {path for path, variable in variables if isinstance(variable, module.Frozen)}
    trained = {path for path, variable in variables if isinstance(variable, nnx.Param)}
    stats = _stats(())
    assert sum(before[path].size for path in trained) == stats["trainable"]
    assert sum(before[path].size for path in frozen) == stats["params"] - stats["trainable"] > 0
    assert not frozen & changed
    assert trained <= changed


def _flat_arrays(nnx: Any, model: Any) -> list[tuple[tuple, np.ndarray]]:
    return [(path, np.array(variable)) for path, variable in nnx.to_flat_state(nnx.state(model))]
