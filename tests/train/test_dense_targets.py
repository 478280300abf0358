"""Losses of other targets than a class per image, in both training scripts: Dice on a class
per pixel (optax's), IoU and GIoU on boxes (torchvision's). A segmenter learns which pixels of
the digits are ink, and a boxer where on a larger canvas a digit lies; the scripts' losses equal
their references and each other's."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests.helpers import REPO, torchvision
from tests.train.scripts import assert_ruff_clean, both_scripts, build, load_script, run

torch = pytest.importorskip("torch")
jax = pytest.importorskip("jax")
optax = pytest.importorskip("optax")

SEGMENTER = REPO / "tests" / "specs" / "digits_segmenter.yaml"
BOXER = REPO / "tests" / "specs" / "digits_boxer.yaml"


def last_epoch(folder: Path, metric: str) -> float:
    lines = [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]
    return [line[metric] for line in lines if metric in line][-1]


@pytest.mark.parametrize("backend", ["torch", "flax"])
def test_a_segmenter_learns_which_pixels_are_ink(
    backend: str, tmp_path: Path, digits_ink: Path
) -> None:
    """Dice on two classes, 3 epochs: at least 97% of the held-out pixels right, where calling
    every pixel paper gets 61%."""
    script = build(tmp_path, SEGMENTER, backend)
    assert_ruff_clean(script)
    output = run(script, "--data", str(digits_ink), "--metrics", "metrics.jsonl")
    assert "test pixel accuracy" in output
    assert last_epoch(tmp_path, "pixel_accuracy") >= 0.97


def mean_iou(boxes: np.ndarray, targets: np.ndarray) -> float:
    """Boxes as corners x1, y1, x2, y2."""
    low, high = np.maximum(boxes[:, :2], targets[:, :2]), np.minimum(boxes[:, 2:], targets[:, 2:])
    intersection = np.clip(high - low, 0, None).prod(1)
    areas = (boxes[:, 2:] - boxes[:, :2]).prod(1) + (targets[:, 2:] - targets[:, :2]).prod(1)
    return float((intersection / (areas - intersection)).mean())


@pytest.mark.parametrize("backend", ["torch", "flax"])
def test_a_boxer_learns_where_the_digit_is(
    backend: str, tmp_path: Path, digits_boxes: Path
) -> None:
    """GIoU, 6 epochs: a mean IoU of at least 0.6 with the held-out boxes, where always
    answering the training set's mean box gets under 0.35."""
    data = np.load(digits_boxes)
    mean_box = np.broadcast_to(data["y_train"].mean(0), data["y_test"].shape)
    assert mean_iou(mean_box, data["y_test"]) < 0.35
    script = build(tmp_path, BOXER, backend)
    assert_ruff_clean(script)
    output = run(script, "--data", str(digits_boxes), "--metrics", "metrics.jsonl")
    assert "test mean IoU" in output
    assert last_epoch(tmp_path, "mean_iou") >= 0.6


def random_boxes(count: int, generator: torch.Generator) -> torch.Tensor:
    """Corners x1, y1, x2, y2 in order, some pairs overlapping and some apart."""
    low = torch.rand(count, 2, generator=generator)
    return torch.cat([low, low + 0.05 + torch.rand(count, 2, generator=generator) / 2], 1)


@pytest.mark.parametrize("settings", ["", "{smooth: 0.5}"])
def test_the_dice_loss_is_optaxs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, settings: str
) -> None:
    text = SEGMENTER.read_text().replace("loss: dice", f"loss: {{dice: {settings}}}")
    script = load_script(build(tmp_path, text if settings else SEGMENTER), monkeypatch)
    logits, labels = torch.randn(4, 3, 5, 6) * 2, torch.randint(0, 3, (4, 5, 6))
    got = script.compute_loss(script.make_loss(), logits, labels)
    one_hot = jax.nn.one_hot(labels.numpy(), 3)
    smooth = {"smooth": 0.5} if settings else {}
    want = optax.losses.dice_loss(logits.permute(0, 2, 3, 1).numpy(), one_hot, **smooth).mean()
    assert float(got) == pytest.approx(float(want), rel=1e-6)


@pytest.mark.parametrize("loss", ["iou", "giou"])
def test_the_box_losses_are_torchvisions(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, loss: str
) -> None:
    """GIoU as torchvision.ops.generalized_box_iou_loss; IoU as 1 - torchvision.ops.box_iou."""
    text = BOXER.read_text().replace("loss: giou", f"loss: {loss}")
    script = load_script(build(tmp_path, text), monkeypatch)
    generator = torch.Generator().manual_seed(0)
    boxes, targets = random_boxes(64, generator), random_boxes(64, generator)
    got = script.compute_loss(script.make_loss(), boxes, targets)
    ops = torchvision().ops
    if loss == "giou":
        want = ops.generalized_box_iou_loss(boxes, targets, reduction="mean")
    else:
        want = (1 - ops.box_iou(boxes, targets).diagonal()).mean()
    assert float(got) == pytest.approx(float(want), rel=1e-6)


DENSE = [
    (SEGMENTER, "dice"),
    (SEGMENTER, "{dice: {smooth: 0.5}}"),
    (SEGMENTER, "cross_entropy"),
    (SEGMENTER, "{cross_entropy: {label_smoothing: 0.1}}"),
    (SEGMENTER, "nll"),
    (BOXER, "iou"),
    (BOXER, "giou"),
]


@pytest.mark.parametrize(("spec", "loss"), DENSE, ids=[loss for _, loss in DENSE])
def test_a_loss_equals_torchs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, spec: Path, loss: str
) -> None:
    """The jax script's loss of the same outputs (channels last) and targets."""
    old = "loss: dice" if spec == SEGMENTER else "loss: giou"
    torch_script, jax_script = both_scripts(
        tmp_path, spec.read_text().replace(old, f"loss: {loss}"), monkeypatch
    )
    generator = torch.Generator().manual_seed(0)
    if spec == SEGMENTER:
        outputs, targets = torch.randn(4, 3, 5, 6) * 2, torch.randint(0, 3, (4, 5, 6))
        if loss == "nll":
            outputs = outputs.log_softmax(1)
        channels_last = outputs.permute(0, 2, 3, 1)
    else:
        outputs, targets = random_boxes(16, generator), random_boxes(16, generator)
        channels_last = outputs
    want = torch_script.compute_loss(torch_script.make_loss(), outputs, targets)
    got = jax_script.compute_loss(jax.numpy.asarray(channels_last.numpy()), targets.numpy())
    assert float(got) == pytest.approx(float(want), rel=1e-6, abs=1e-7)


@pytest.mark.parametrize("spec", [SEGMENTER, BOXER], ids=["pixels", "boxes"])
def test_synthetic_data_has_the_targets_and_a_folder_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, spec: Path
) -> None:
    """Random images come with a class per pixel of the output, or with boxes in order; an
    image folder, which labels whole images, is refused with a message."""
    for script in both_scripts(tmp_path, spec.read_text(), monkeypatch):
        train, _ = script.load_data("synthetic")
        labels = np.asarray(train.tensors[1] if hasattr(train, "tensors") else train[1])
        if spec == SEGMENTER:
            assert labels.shape[1:] == (8, 8) and set(np.unique(labels)) == {0, 1}
        else:
            assert labels.shape[1:] == (4,) and (labels[:, 2:] > labels[:, :2]).all()
        with pytest.raises(SystemExit, match=r"needs an \.npz"):
            script.load_data(str(tmp_path))


def test_deep_supervision_weighs_each_score_map(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """U-Net-style deep supervision: a second 1x1 head on an earlier map, its Dice weighted
    into the loss by loss_weights, in both scripts."""
    text = SEGMENTER.read_text().replace(
        "  epochs: 3\n", "  epochs: 3\n  loss_weights: {out: 1.0, aux: 0.4}\n"
    )
    text += "  aux: {op: conv2d, out: classes, kernel: 1, from: relu1}\n"
    text += "outputs: {out: classify, aux: aux}\n"
    torch_script, jax_script = both_scripts(tmp_path, text, monkeypatch)
    outputs = {"out": torch.randn(4, 2, 8, 8), "aux": torch.randn(4, 2, 8, 8)}
    labels = torch.randint(0, 2, (4, 8, 8))
    dice = torch_script.make_loss()
    want = dice(outputs["out"], labels) + 0.4 * dice(outputs["aux"], labels)
    assert torch.allclose(torch_script.total_loss(dice, outputs, labels), want)
    got = sum(
        weight * jax_script.compute_loss(outputs[name].permute(0, 2, 3, 1).numpy(), labels.numpy())
        for name, weight in jax_script.LOSS_WEIGHTS.items()
    )
    assert float(got) == pytest.approx(float(want), rel=1e-6)
