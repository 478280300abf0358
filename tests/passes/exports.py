"""Building a spec's training model and inference export side by side, and holding the
export, loaded through its own checkpoint converter, to the training model's outputs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from archc.emit.flax.emitter import flax_source
from archc.emit.torch.emitter import torch_source
from archc.passes.inference import InferenceExport, inference_export
from archc.pipeline import compile_spec
from tests.helpers import load_generated, randomize_batch_norm

TOLERANCE = 1e-4


def models(spec: Path, folder: Path, backend: str = "torch") -> tuple[Any, Any, InferenceExport]:
    """The generated training module and inference-export module of a spec, and the export."""
    compiled = compile_spec(spec)
    export = inference_export(compiled.program)
    emit = {"torch": torch_source, "flax": flax_source}[backend]
    modules = []
    for name, chosen in (("training", None), ("inference", export)):
        path = folder / f"{backend}_{name}.py"
        path.write_text(emit(compiled.program, compiled.costs, "test", chosen))
        modules.append(load_generated(path))
    return *modules, export


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

    training, inference, export = models(spec, folder)
    folds = {fold.norm: fold.conv for fold in export.folds}
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
