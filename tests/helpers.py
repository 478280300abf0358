"""Shared test helpers: paths, running archc, and importing the reference libraries."""

from __future__ import annotations

import functools
import importlib.util
import json
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

REPO = Path(__file__).resolve().parents[1]
SPECS = REPO / "specs"
GENERATED = REPO / "generated"


def run_archc(
    *args: str, cwd: Path = REPO, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """`archc ARGS` as a separate process, as a user runs it."""
    command = [sys.executable, "-m", "archc.cli", *args]
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=120)


@functools.cache
def torchvision() -> ModuleType:
    """Import torchvision on a CPU-only torch.

    The torchvision 0.28 wheel registers fake kernels for its compiled `torchvision::` ops at
    import; those ops are built against CUDA and do not load here. The model builders never use
    them, so registration is skipped for that namespace alone, during the import only.
    """
    import torch.library

    original = torch.library.register_fake

    def tolerant(op: Any, *args: Any, **kwargs: Any) -> Any:
        if isinstance(op, str) and op.startswith("torchvision::"):
            return lambda function=None, *_, **__: function
        return original(op, *args, **kwargs)

    torch.library.register_fake = tolerant
    try:
        import torchvision as module
    finally:
        torch.library.register_fake = original
    return module


def load_generated(path: Path) -> ModuleType:
    """Import a generated model file as a module."""
    spec = importlib.util.spec_from_file_location(f"generated_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def count_macs(model: Any, example: Any) -> tuple[int, Any]:
    """FlopCounterMode's FLOPs ÷ 2 for one forward, and the output.

    Attention runs on the math backend, whose matmuls the counter sees (the fused CPU kernels
    it does not count), and with autograd on, since in no_grad nn.MultiheadAttention takes a
    fused fast path the counter misses whole.
    """
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.utils.flop_counter import FlopCounterMode

    with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
        output = model(example)
    detached = named_outputs(output, lambda value: value.detach())
    return counter.get_total_flops() // 2, detached if isinstance(output, dict) else detached[""]


def named_outputs(value: Any, convert: Any) -> dict[str, Any]:
    """A model's output, or its named outputs (a dict, as torchvision's DeepLabV3 and FPN
    return), converted and keyed by name ('' for a lone output)."""
    named = value if isinstance(value, dict) else {"": value}
    return {key: convert(item) for key, item in named.items()}


def archc_stats(spec: str, *overrides: str) -> dict:
    sets = [f"--set={item}" for item in overrides]
    result = run_archc("stats", spec, "--format", "json", *sets)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def randomize_batch_norm(model: Any) -> None:
    """Give every BatchNorm non-trivial statistics, and every constant-initialised scale (a
    ConvNeXt layer scale of 1e-6) random values, so eval outputs exercise them."""
    import torch

    generator = torch.Generator().manual_seed(0)
    for name, parameter in model.named_parameters():
        if name.rpartition(".")[2] in ("layer_scale", "gamma"):
            with torch.no_grad():
                parameter.copy_(torch.rand(parameter.shape, generator=generator) + 0.5)
    for module in model.modules():
        # nn.BatchNorm*d, and FrozenBatchNorm2d, whose weight and bias are buffers too.
        if isinstance(getattr(module, "running_var", None), torch.Tensor):
            channels = len(module.running_var)
            with torch.no_grad():
                module.weight.copy_(torch.rand(channels, generator=generator) + 0.5)
                module.bias.copy_(torch.randn(channels, generator=generator) * 0.1)
                module.running_mean.copy_(torch.randn(channels, generator=generator) * 0.1)
                module.running_var.copy_(torch.rand(channels, generator=generator) + 0.5)


def compare(reference: Any, generated: Any, stats: dict) -> None:
    """The generated torch module against a reference model: counts, a strict state_dict
    load, FlopCounterMode MACs, and eval outputs (max abs diff <= 1e-5)."""
    import torch

    randomize_batch_norm(reference)
    generated.load_state_dict(reference.state_dict(), strict=True)
    reference.eval()
    generated.eval()
    example = torch.randn(stats["input"], generator=torch.Generator().manual_seed(1))
    reference_macs, expected = count_macs(reference, example)
    generated_macs, output = count_macs(generated, example)

    assert stats["params"] == sum(p.numel() for p in reference.parameters())
    assert stats["buffers"] == sum(b.numel() for b in reference.buffers())
    assert stats["macs"] == reference_macs
    assert stats["flops"] == 2 * reference_macs
    assert generated_macs == stats["macs"]
    output, expected = (named_outputs(value, lambda item: item) for value in (output, expected))
    assert output.keys() == expected.keys()
    for key, value in output.items():
        assert (value - expected[key]).abs().max().item() <= 1e-5, key


def assert_flax_agrees(
    model: Any, flax_file: ModuleType, flax_model: Any, shape: tuple[int, ...], atol: float = 1e-5
) -> None:
    """The flax model, given the torch model's state_dict, computes the torch model's eval
    output (a 4-d one in NHWC) for a random NCHW image batch of `shape`."""
    import numpy as np
    import torch

    model.eval()
    flax_file.load_torch_state_dict(
        flax_model, {key: value.detach().numpy() for key, value in model.state_dict().items()}
    )
    flax_model.eval()
    example = torch.randn(shape, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        want = model(example).numpy()
    if want.ndim == 4:
        want = want.transpose(0, 2, 3, 1)
    got = np.asarray(flax_model(example.numpy().transpose(0, 2, 3, 1)))
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=atol)


def assert_quotes_the_spec(quoted: list[str], text: str, position: str) -> None:
    """The lines after an error: the spec's line at LINE:COL, and a caret under COL."""
    line, col = (int(part) for part in position.split(":"))
    source = text.splitlines()[line - 1] if line <= len(text.splitlines()) else ""
    if len(source) > 200 or not source:  # too long to quote, or no such line
        return
    source = source.replace("\t", " ")
    assert quoted[:2] == [f"    {source}", "    " + " " * (col - 1) + "^"], quoted


# Per detector, a score threshold low enough that its detections survive random weights (as
# the builder's and create_model's argument of the same name).
DETECTION_SETTINGS = {
    "retinanet_resnet50_fpn": {"score_thresh": 0.0105},  # the head's prior is 0.01
    "retinanet_resnet50_fpn_v2": {"score_thresh": 0.0105},
    "ssd300_vgg16": {"score_thresh": 0.0115},  # 91 classes: softmax scores about 1/91
    "ssdlite320_mobilenet_v3_large": {"score_thresh": 0.0115},
    "yolov3": {"score_thresh": 0.47},  # objectness x class: about 0.25 each at random
    "fasterrcnn_resnet50_fpn": {"box_score_thresh": 0.0},  # every class of every proposal
}


def spread_detections(model: Any, name: str, run: Any) -> None:
    """Random weights that give a detector's detections apart (a torchvision detector or the
    generated model: the same state_dict names): RetinaNet's box deltas start at 0, so they
    are redrawn; SSD's softmax saturates into ties of 1.0, so its class logits are calmed; a
    fading detector's norms are calibrated on one training-mode `run(model)`."""
    import torch

    with torch.no_grad():
        for key, value in model.state_dict().items():
            if key == "head.regression_head.bbox_reg.weight":  # RetinaNet
                value.normal_(0, 0.05)
            elif re.fullmatch(r"head\.classification_head\.module_list\.\d\.weight", key):  # SSD
                value.mul_(0.05)
    if name in FADING_DETECTORS:
        calibrate_batch_norms(model, run)


# Detectors whose fresh weights (SSDLite's normal(0, 0.03), torch's default) fade through batch
# norms of unit variance in eval, so that every class scores alike: their norms are
# calibrated on the test's images first.
FADING_DETECTORS = {"ssdlite320_mobilenet_v3_large", "yolov3"}


def calibrate_batch_norms(model: Any, run: Any) -> None:
    """Give the model's batch norms the statistics of one training-mode call of `run()`."""
    import torch

    norms = [module for module in model.modules() if isinstance(module, torch.nn.BatchNorm2d)]
    momenta = [norm.momentum for norm in norms]
    training = model.training
    for norm in norms:
        norm.momentum = 1.0
    with torch.no_grad():
        run(model.train())
    for norm, momentum in zip(norms, momenta):
        norm.momentum = momentum
    model.train(training)


def assert_same_detections(
    got: Any, want: Any, box_atol: float, score_rtol: float, threshold: float = 0.0
) -> None:
    """Two `detect()` tables of an image (x1, y1, x2, y2, score, label rows; label -1 past
    the detections) hold the same detections up to rounding: as many, the same scores best
    first, and each of `want`'s rows a row of `got` of its label, box and score. Rows that
    rounding may reorder (near-equal scores) or swap in or out at the limit (near the last
    score) are matched by content, not by position; rows a rounding error from the score
    `threshold` may be on one side only."""
    import numpy as np

    got, want = np.asarray(got), np.asarray(want)
    floor = threshold * (1 + score_rtol)
    got, want = (
        got[(got[:, 5] >= 0) & (got[:, 4] > floor)],
        want[(want[:, 5] >= 0) & (want[:, 4] > floor)],
    )
    assert len(got) == len(want), (len(got), len(want))
    scores = np.sort(got[:, 4])[::-1], np.sort(want[:, 4])[::-1]
    assert np.allclose(*scores, rtol=score_rtol, atol=0), "scores differ"
    last = scores[1][-1] * (1 + score_rtol) if len(want) else 0.0
    for row in want[want[:, 4] > last]:  # rows near the last score may be swapped out
        same = (
            (got[:, 5] == row[5])
            & np.isclose(got[:, 4], row[4], rtol=score_rtol, atol=0)
            & (np.abs(got[:, :4] - row[:4]).max(axis=1) <= box_atol)
        )
        assert same.any(), f"no detection like {row} in got"


def canonical_detections(rows: Any) -> Any:
    """A `detect()` table (x1, y1, x2, y2, score, label rows) with rows of one score in one
    order: NMS may take a tie either way, and two backends may order scores a rounding
    error apart either way (ranked here to 1e-6)."""
    import numpy as np

    rows = np.asarray(rows)
    return rows[canonical_order(rows)]


def canonical_order(rows: Any) -> Any:
    """The order canonical_detections puts a `detect()` table's rows in: their indices."""
    import numpy as np

    rows = np.asarray(rows)
    return np.lexsort((rows[:, 0], rows[:, 5], -np.round(rows[:, 4], 6)))


def box_masks(boxes: Any, size: int) -> Any:
    """A mask per box (uint8, size x size): a random half of the pixels inside the box."""
    import torch

    pixels = torch.arange(size) + 0.5
    inside_x = (pixels >= boxes[:, :1]) & (pixels <= boxes[:, 2:3])
    inside_y = (pixels >= boxes[:, 1:2]) & (pixels <= boxes[:, 3:4])
    inside = inside_y[:, :, None] & inside_x[:, None, :]
    noise = torch.rand(inside.shape, generator=torch.Generator().manual_seed(5)) < 0.5
    return (inside & noise).to(torch.uint8)
