"""The generated torch training script, run for real: it learns scikit-learn's handwritten
digits, gives the same losses on one process and on two (torchrun, gloo; DDP and FSDP2),
resumes from its checkpoint to the losses of an uninterrupted run, and its schedules and
optimizers are the ones the spec names."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.helpers import torchvision
from tests.train.scripts import (
    DEIT_STUDENT,
    SPEC,
    STUDENT,
    assert_ruff_clean,
    assert_same_step_losses,
    build,
    distil_from_a_trained_teacher,
    load_script,
    run,
    step_losses,
    student_spec,
)

torch = pytest.importorskip("torch")
# Batch norm keeps statistics per process under DDP; layer norm makes one process and two
# compute the same.
WITHOUT_BATCH_STATISTICS = {"norm": "layer_norm"}


def test_the_script_is_ruff_clean(tmp_path: Path) -> None:
    assert_ruff_clean(build(tmp_path))


def test_it_learns_the_digits(tmp_path: Path, digits: Path) -> None:
    """The spec's own plan (AdamW, cosine after a warm-up, 12 epochs): at least 97% of the
    held-out digits right."""
    output = run(build(tmp_path), "--data", str(digits), "--metrics", "metrics.jsonl")
    epochs = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    accuracy = [epoch["accuracy"] for epoch in epochs if "accuracy" in epoch]
    assert len(accuracy) == 12 and "epoch 12/12" in output
    assert accuracy[-1] >= 0.97


def test_two_processes_give_one_process_losses(tmp_path: Path, digits: Path) -> None:
    """One process, and two under torchrun (gloo) with DDP and with FSDP2, the same global
    batch: the same loss at every step of an epoch (22 steps)."""
    script = build(tmp_path, **WITHOUT_BATCH_STATISTICS)
    common = ["--data", str(digits), "--epochs", "2", "--stop-after", "1"]
    run(script, *common, "--metrics", "one.jsonl", "--checkpoint", "one")
    run(script, *common, "--metrics", "ddp.jsonl", "--checkpoint", "ddp", processes=2)
    run(script, *common, "--fsdp", "--metrics", "fsdp.jsonl", "--checkpoint", "fsdp", processes=2)
    assert_same_step_losses(tmp_path, "one", "ddp", "fsdp", steps=22)


def test_a_resumed_run_continues_as_an_uninterrupted_one(tmp_path: Path, digits: Path) -> None:
    script = build(tmp_path, **WITHOUT_BATCH_STATISTICS)
    common = ["--data", str(digits), "--epochs", "3"]
    run(script, *common, "--metrics", "whole.jsonl", "--checkpoint", "whole")
    run(script, *common, "--stop-after", "2", "--metrics", "parts.jsonl", "--checkpoint", "parts")
    assert sorted(path.name for path in (tmp_path / "parts").iterdir()) == [
        "epoch1",
        "epoch2",
        "latest",
    ]
    run(script, *common, "--resume", "--metrics", "parts.jsonl", "--checkpoint", "parts")
    whole, parts = step_losses(tmp_path / "whole.jsonl"), step_losses(tmp_path / "parts.jsonl")
    assert len(whole) == len(parts) == 66
    assert whole == parts


SCHEDULES = {
    "{step: {step_size: 2, gamma: 0.5}}": lambda epoch, total: 0.5 ** (epoch // 2),
    "{multi_step: {milestones: [1, 3], gamma: 0.1}}": lambda e, total: 0.1 ** ((e >= 1) + (e >= 3)),
    "{exponential: {gamma: 0.9}}": lambda epoch, total: 0.9**epoch,
    "cosine": lambda epoch, total: (1 + math.cos(math.pi * epoch / total)) / 2,
    "constant": lambda epoch, total: 1.0,
}


@pytest.mark.parametrize("schedule", SCHEDULES)
@pytest.mark.parametrize("warmup", [0, 2])
def test_a_schedule_follows_its_formula(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, schedule: str, warmup: int
) -> None:
    """The learning rate at each epoch, against the schedule's closed form (after a linear
    warm-up from 1%, whose epochs the schedule's count starts after)."""
    text = SPEC.read_text().replace("schedule: cosine", f"schedule: {schedule}")
    text = text.replace("warmup_epochs: 1", f"warmup_epochs: {warmup}")
    text = text.replace("{adamw: {lr: 0.003, weight_decay: 0.01}}", "{sgd: {lr: 0.1}}")
    script = load_script(build(tmp_path, text), monkeypatch)
    optimizer = script.make_optimizer(torch.nn.Linear(2, 2))
    epochs = 8
    schedule_ = script.make_schedule(optimizer, epochs)
    got = []
    for _ in range(epochs):
        got.append(optimizer.param_groups[0]["lr"])
        optimizer.step()  # no gradients: nothing moves, but the order is as in training
        schedule_.step()
    rule = SCHEDULES[schedule]
    want = [
        0.1
        * (
            0.01 + 0.99 * epoch / warmup
            if epoch < warmup
            else rule(epoch - warmup, epochs - warmup)
        )
        for epoch in range(epochs)
    ]
    assert np.allclose(got, want, rtol=1e-9, atol=1e-12), (got, want)


OPTIMIZERS = {
    "{sgd: {lr: 0.1, momentum: 0.9, nesterov: true, weight_decay: 1.0e-4}}": (
        "SGD",
        {"lr": 0.1, "momentum": 0.9, "nesterov": True, "weight_decay": 1e-4, "dampening": 0},
    ),
    "{adam: {lr: 0.001, betas: [0.8, 0.99]}}": ("Adam", {"lr": 0.001, "betas": (0.8, 0.99)}),
    "{adamw: {lr: 0.002}}": ("AdamW", {"lr": 0.002, "weight_decay": 0.01}),
    "{rmsprop: {lr: 0.01, alpha: 0.9, momentum: 0.9}}": (
        "RMSprop",
        {"lr": 0.01, "alpha": 0.9, "momentum": 0.9},
    ),
    "{adagrad: {lr: 0.05}}": ("Adagrad", {"lr": 0.05}),
    "{adadelta: {rho: 0.95}}": ("Adadelta", {"rho": 0.95, "lr": 1.0}),
}


@pytest.mark.parametrize("optimizer", OPTIMIZERS)
def test_an_optimizer_is_torchs_with_the_spec_settings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, optimizer: str
) -> None:
    """Its class and settings (the rest at torch's defaults, written by hand here), and the
    norm weights and biases in a group of their own, decaying at norm_weight_decay."""
    text = SPEC.read_text().replace("{adamw: {lr: 0.003, weight_decay: 0.01}}", optimizer)
    script = load_script(build(tmp_path, text), monkeypatch)
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.LayerNorm(4))
    made = script.make_optimizer(model)
    name, settings = OPTIMIZERS[optimizer]
    assert type(made).__name__ == name
    decayed, other = made.param_groups
    for key, value in settings.items():
        assert decayed[key] == pytest.approx(value), key
    assert [tuple(p.shape) for p in decayed["params"]] == [(4, 3)]
    assert [tuple(p.shape) for p in other["params"]] == [(4,), (4,), (4,)]
    assert other["weight_decay"] == 0.0


def test_a_loss_on_one_hot_targets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A loss that compares with one-hot targets gets them from the labels."""
    text = SPEC.read_text().replace("{cross_entropy: {label_smoothing: 0.05}}", "mse")
    script = load_script(build(tmp_path, text), monkeypatch)
    logits, labels = torch.randn(4, 10), torch.tensor([0, 3, 9, 3])
    got = script.compute_loss(script.make_loss(), logits, labels)
    want = ((logits - torch.eye(10)[labels]) ** 2).mean()
    assert torch.allclose(got, want)


def test_an_l1_penalty_adds_its_gradient_to_the_weights(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """λ·sign(w) on each weight's gradient, nothing on norm weights and biases."""
    text = SPEC.read_text().replace("  epochs: 12\n", "  epochs: 12\n  l1_penalty: 0.25\n")
    script = build(tmp_path, text)
    assert_ruff_clean(script)
    script = load_script(script, monkeypatch)
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.LayerNorm(4))
    for parameter in model.parameters():
        parameter.grad = torch.ones_like(parameter)
    script.add_l1_penalty(model)
    weight, bias, norm_weight, norm_bias = model.parameters()
    assert torch.equal(weight.grad, 1 + 0.25 * weight.sign())
    for parameter in (bias, norm_weight, norm_bias):
        assert torch.equal(parameter.grad, torch.ones_like(parameter))


@pytest.mark.parametrize("settings", ["", "{alpha: 0.6, gamma: 1.5}"])
def test_the_focal_loss_is_torchvisions(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, settings: str
) -> None:
    loss = f"{{focal: {settings}}}" if settings else "focal"
    text = SPEC.read_text().replace("{cross_entropy: {label_smoothing: 0.05}}", loss)
    built = build(tmp_path, text)
    assert_ruff_clean(built)
    script = load_script(built, monkeypatch)
    logits, labels = torch.randn(8, 10) * 3, torch.randint(0, 10, (8,))
    got = script.compute_loss(script.make_loss(), logits, labels)
    ops = torchvision().ops
    options = {"alpha": 0.6, "gamma": 1.5} if settings else {}
    want = ops.sigmoid_focal_loss(logits, torch.eye(10)[labels], reduction="mean", **options)
    assert torch.allclose(got, want, rtol=1e-6, atol=1e-7)


def student_script(folder: Path, text: str, monkeypatch: pytest.MonkeyPatch) -> Any:
    """The student's script loaded, its spec written beside a copy of its teacher's."""
    script = build(folder, student_spec(folder, text))
    assert_ruff_clean(script)
    return load_script(script, monkeypatch)


def test_soft_distillation_is_hintons(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """(1 - α)·CE(student, labels) + α·τ²·KL(teacher ‖ student), both softened by τ, with
    torch.nn.KLDivLoss on probabilities as the reference."""
    script = student_script(tmp_path, STUDENT.read_text(), monkeypatch)
    student, teacher = torch.randn(8, 10) * 2, torch.randn(8, 10) * 2
    labels = torch.randint(0, 10, (8,))
    got = script.distilled_loss(script.make_loss(), student, teacher, labels)
    kl = torch.nn.KLDivLoss(reduction="batchmean")(
        torch.log_softmax(student / 4.0, -1), torch.softmax(teacher / 4.0, -1)
    )
    want = 0.3 * torch.nn.functional.cross_entropy(student, labels) + 0.7 * 16.0 * kl
    assert torch.allclose(got, want, rtol=1e-6)


def test_hard_distillation_is_deits(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The class head learns the labels, the distillation head the teacher's top class."""
    script = student_script(tmp_path, DEIT_STUDENT, monkeypatch)
    outputs = {"out": torch.randn(8, 10), "dist": torch.randn(8, 10)}
    teacher, labels = torch.randn(8, 10), torch.randint(0, 10, (8,))
    got = script.distilled_loss(script.make_loss(), outputs, teacher, labels)
    cross_entropy = torch.nn.functional.cross_entropy
    want = 0.5 * cross_entropy(outputs["out"], labels)
    want = want + 0.5 * cross_entropy(outputs["dist"], teacher.argmax(-1))
    assert torch.allclose(got, want)


def test_a_student_learns_from_its_teachers_checkpoint(
    tmp_path: Path, digits: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The teacher trained by its own script; the student's script loads its last checkpoint
    (--teacher) and trains against it."""
    student = distil_from_a_trained_teacher(tmp_path, digits, "torch")
    # What the student learnt from: the trained teacher, far better than chance.
    script = load_script(student, monkeypatch)
    teacher_model = script.load_teacher(tmp_path / "teacher" / "weights", torch.device("cpu"))
    arrays = np.load(digits)
    predicted = teacher_model(torch.as_tensor(arrays["x_test"])).argmax(-1).numpy()
    assert (predicted == arrays["y_test"]).mean() > 0.5
