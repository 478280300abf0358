"""The generated jax training script, run for real: it learns scikit-learn's handwritten
digits, gives one device's losses on 8 host devices (data parallel, and with the parameters
sharded), resumes from its orbax checkpoint to the losses of an uninterrupted run, and its
losses, optimizers and schedules equal the torch script's: the same weights and batch give the
same loss and the same updated weights in both."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.train.scripts import (
    DEIT_STUDENT,
    SPEC,
    STUDENT,
    assert_ruff_clean,
    assert_same_step_losses,
    both_scripts,
    build,
    distil_from_a_trained_teacher,
    load_script,
    run,
    step_losses,
    student_spec,
)

torch = pytest.importorskip("torch")
jax = pytest.importorskip("jax")
nnx = pytest.importorskip("flax.nnx")
optax = pytest.importorskip("optax")

EIGHT_DEVICES = {"XLA_FLAGS": "--xla_force_host_platform_device_count=8"}
SPEC_OPTIMIZER = "{adamw: {lr: 0.003, weight_decay: 0.01}}"
CONSTANT_RATE = ("  schedule: cosine\n  warmup_epochs: 1\n", "")


def test_the_script_is_ruff_clean(tmp_path: Path) -> None:
    assert_ruff_clean(build(tmp_path, backend="flax"))


def test_it_learns_the_digits(tmp_path: Path, digits: Path) -> None:
    """The spec's own plan (AdamW, cosine after a warm-up, 12 epochs): at least 97% of the
    held-out digits right."""
    script = build(tmp_path, backend="flax")
    output = run(script, "--data", str(digits), "--metrics", "metrics.jsonl")
    assert "epoch 12/12" in output
    last = (tmp_path / "metrics.jsonl").read_text().splitlines()[-1]
    assert '"accuracy"' in last
    assert float(last.split('"accuracy": ')[1].split(",")[0]) >= 0.97


def test_eight_devices_give_one_devices_losses(tmp_path: Path, digits: Path) -> None:
    """The same global batches on 1 and on 8 host devices, the state replicated or split
    (--shard-params): the same loss at every step of an epoch (22 steps)."""
    script = build(tmp_path, backend="flax")
    common = ["--data", str(digits), "--stop-after", "1"]
    one = run(script, *common, "--metrics", "one.jsonl", "--checkpoint", "one")
    run(script, *common, "--metrics", "eight.jsonl", "--checkpoint", "8", environment=EIGHT_DEVICES)
    sharded = run(
        script,
        *common,
        "--shard-params",
        "--metrics",
        "sharded.jsonl",
        "--checkpoint",
        "sharded",
        environment=EIGHT_DEVICES,
    )
    assert one.startswith("devices: 1; state arrays split across them: 0 of ")
    split = int(sharded.split("devices: 8; state arrays split across them: ")[1].split()[0])
    assert split >= 20, sharded  # the convs' and the linear's weights and their Adam moments
    assert_same_step_losses(tmp_path, "one", "eight", "sharded", steps=22)


def test_a_resumed_run_continues_as_an_uninterrupted_one(tmp_path: Path, digits: Path) -> None:
    script = build(tmp_path, backend="flax")
    common = ["--data", str(digits), "--epochs", "3"]
    run(script, *common, "--metrics", "whole.jsonl", "--checkpoint", "whole")
    run(script, *common, "--stop-after", "2", "--metrics", "parts.jsonl", "--checkpoint", "parts")
    run(script, *common, "--resume", "--metrics", "parts.jsonl", "--checkpoint", "parts")
    whole, parts = step_losses(tmp_path / "whole.jsonl"), step_losses(tmp_path / "parts.jsonl")
    assert len(whole) == len(parts) == 66
    assert np.allclose(whole, parts, rtol=0, atol=1e-6)


LOSSES = [
    "{cross_entropy: {label_smoothing: 0.1}}",
    "cross_entropy",
    "nll",
    "{hinge: {margin: 0.5}}",
    "hinge",
    "bce",
    "mse",
    "l1",
    "{smooth_l1: {beta: 0.5}}",
    "focal",
    "{focal: {alpha: 0.6, gamma: 1.5}}",
]


@pytest.mark.parametrize("loss", LOSSES)
def test_a_loss_equals_torchs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, loss: str) -> None:
    text = SPEC.read_text().replace("{cross_entropy: {label_smoothing: 0.05}}", loss)
    torch_script, jax_script = both_scripts(tmp_path, text, monkeypatch)
    logits = torch.randn(16, 10) * 3
    if loss == "nll":
        logits = torch.log_softmax(logits, -1)
    labels = torch.randint(0, 10, (16,))
    want = torch_script.compute_loss(torch_script.make_loss(), logits, labels)
    got = jax_script.compute_loss(jax.numpy.asarray(logits.numpy()), labels.numpy())
    assert float(got) == pytest.approx(float(want), rel=1e-6, abs=1e-7)


SCHEDULES = [
    "{step: {step_size: 2, gamma: 0.5}}",
    "{multi_step: {milestones: [1, 3], gamma: 0.1}}",
    "{exponential: {gamma: 0.9}}",
    "cosine",
    "{cosine: {eta_min: 0.01}}",
    "constant",
]


@pytest.mark.parametrize("schedule", SCHEDULES)
@pytest.mark.parametrize("warmup", [0, 2])
def test_a_schedule_equals_torchs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, schedule: str, warmup: int
) -> None:
    """The learning rate of each epoch: optax's schedule against torch's scheduler."""
    text = SPEC.read_text().replace("schedule: cosine", f"schedule: {schedule}")
    text = text.replace("warmup_epochs: 1", f"warmup_epochs: {warmup}")
    torch_script, jax_script = both_scripts(tmp_path, text, monkeypatch)
    optimizer = torch_script.make_optimizer(torch.nn.Linear(2, 2))
    epochs = 8
    scheduler, schedule_ = (
        torch_script.make_schedule(optimizer, epochs),
        jax_script.make_schedule(epochs),
    )
    want, got = [], []
    for epoch in range(epochs):
        want.append(optimizer.param_groups[0]["lr"])
        got.append(float(schedule_(epoch)))
        optimizer.step()  # no gradients: nothing moves, but the order is as in training
        scheduler.step()
    assert np.allclose(got, want, rtol=1e-6, atol=1e-9), (got, want)


SGD_DECAYED = "{sgd: {lr: 0.1, momentum: 0.9, nesterov: true, weight_decay: 1.0e-3}}"
# optimizer → the largest difference in the loss and the weights after three steps, and the
# share of weights allowed beyond it. RMSProp's and AdaGrad's steps divide each gradient element
# by its own running size, so an element whose gradient is near zero moves by a full step of
# either sign: the two frameworks' float rounding decides a few such elements. (Centered RMSProp
# subtracts the squared mean from the mean square, near zero for a steady gradient: worse
# still, so it is not compared here.) With momentum, RMSProp also carries rounding on: where
# XLA's CPU code fuses multiply-adds (FMA, on an AMD EPYC) the third step differs by up to
# 3e-4 in most of the first layers' weights and by 8e-3 in about 2% of the elements with small
# gradients, against 1.5e-6 with XLA held to AVX (XLA_FLAGS=--xla_cpu_max_isa=AVX, no FMA).
OPTIMIZERS = {
    "{sgd: {lr: 0.1}}": (1e-6, 0),
    SGD_DECAYED: (1e-6, 0),
    "{adam: {lr: 0.001, betas: [0.8, 0.99], weight_decay: 1.0e-3}}": (1e-5, 0),
    SPEC_OPTIMIZER: (1e-5, 0),
    "{adamw: {lr: 0.003}}": (1e-5, 0),
    "{rmsprop: {lr: 0.001, momentum: 0.9}}": (1e-3, 2e-2),
    "{adagrad: {lr: 0.05, weight_decay: 1.0e-3}}": (1e-5, 1e-3),
    "{adadelta: {rho: 0.95}}": (1e-5, 0),
}


# Each with the spec's norm_weight_decay of 0; the two kinds of decay with norms decaying as
# the rest (None) and at a rate of their own; an L1 penalty.
CASES = [(optimizer, 0.0, "") for optimizer in OPTIMIZERS]
CASES += [(SGD_DECAYED, None, ""), (SGD_DECAYED, 0.1, ""), (SGD_DECAYED, 0.0, "l1_penalty: 0.01")]
CASES += [(SPEC_OPTIMIZER, None, ""), (SPEC_OPTIMIZER, 0.1, "")]


@pytest.mark.parametrize(("optimizer", "norm_decay", "extra"), CASES)
def test_a_step_equals_torchs(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    optimizer: str,
    norm_decay: float | None,
    extra: str,
) -> None:
    """The same weights and batch, three steps in each script (batch norm's statistics in
    training mode): the same losses, weights and running statistics."""
    text = SPEC.read_text().replace(SPEC_OPTIMIZER, optimizer).replace(*CONSTANT_RATE)
    norms = "" if norm_decay is None else f"  norm_weight_decay: {norm_decay}\n"
    text = text.replace("  norm_weight_decay: 0.0\n", norms + (f"  {extra}\n" if extra else ""))
    torch_script, jax_script = both_scripts(tmp_path, text, monkeypatch)
    model = torch_script.create_model()
    flax_file = sys.modules[jax_script.create_model.__module__]
    flax_model = jax_script.create_model(nnx.Rngs(0))
    flax_file.load_torch_state_dict(flax_model, numpy_state(model))
    images, labels = torch.randn(16, 1, 8, 8), torch.randint(0, 10, (16,))

    loss_fn, torch_optimizer = torch_script.make_loss(), torch_script.make_optimizer(model)
    want = []
    for _ in range(3):
        loss = torch_script.compute_loss(loss_fn, model(images), labels)
        torch_optimizer.zero_grad()
        loss.backward()
        if extra:  # as the torch script's loop does
            torch_script.add_l1_penalty(model)
        torch_optimizer.step()
        want.append(float(loss.detach()))

    graph, params, rest = nnx.split(flax_model, nnx.Param, ...)
    jax_optimizer = optax.inject_hyperparams(jax_script.make_optimizer)(
        learning_rate=jax_script.LEARNING_RATE
    )
    state = (params, rest, jax_optimizer.init(params))
    mesh = jax.make_mesh((1,), ("data",), axis_types=(jax.sharding.AxisType.Auto,))
    shardings = jax.tree.map(lambda value: jax_script.placement(value, mesh, False), state)
    step = jax_script.make_step(graph, jax_optimizer, shardings)
    got = []
    for _ in range(3):
        state, loss = step(state, images.numpy().transpose(0, 2, 3, 1), labels.numpy())
        got.append(float(loss))

    tolerance, share = OPTIMIZERS[optimizer]
    assert np.allclose(got, want, rtol=tolerance, atol=tolerance), (got, want)
    trained = jax_script.create_model(nnx.Rngs(1))
    flax_file.load_torch_state_dict(trained, numpy_state(model))  # torch's result, as flax
    want_state = nnx.split(trained, nnx.Param, ...)[1:]
    want_values, got_values = (
        np.concatenate([np.ravel(leaf) for leaf in jax.tree.leaves(tree)])
        for tree in (want_state, state[:2])
    )
    beyond = ~np.isclose(got_values, want_values, rtol=tolerance, atol=tolerance)
    assert beyond.mean() <= share, f"{beyond.sum()} of {beyond.size} values differ"


def numpy_state(model: Any) -> dict[str, np.ndarray]:
    return {name: value.detach().numpy() for name, value in model.state_dict().items()}


def test_the_options_run_and_clip_as_torch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """clip_grad_norm, patience, l1_penalty and bf16 in one run on synthetic data; the
    clipping equals torch's clip_grad_norm_ on the same gradients."""
    text = SPEC.read_text().replace(
        "  epochs: 12\n",
        "  epochs: 3\n  clip_grad_norm: 0.5\n  patience: 1\n  l1_penalty: 1.0e-4\n",
    )
    script = build(tmp_path, text, "flax")
    assert_ruff_clean(script)
    output = run(script, "--data", "synthetic", "--precision", "bf16")
    assert "epoch 2/3" in output
    module = load_script(script, monkeypatch)
    grads = [torch.randn(3, 4), torch.randn(5)]
    want = [grad.clone() for grad in grads]
    parameters = [torch.nn.Parameter(torch.zeros_like(grad)) for grad in grads]
    for parameter, grad in zip(parameters, want):
        parameter.grad = grad
    torch.nn.utils.clip_grad_norm_(parameters, 0.5)
    got = module.clip_by_global_norm([jax.numpy.asarray(grad.numpy()) for grad in grads], 0.5)
    for got_grad, parameter in zip(got, parameters):
        assert np.allclose(got_grad, parameter.grad.numpy(), rtol=1e-6, atol=1e-7)


def test_an_image_folder_is_read_as_torchvision_reads_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Classes in sorted folder order; images of any size and shape come out at INPUT (NCHW),
    normalised with ImageNet's statistics."""
    image_module = pytest.importorskip("PIL.Image")
    colours = {"cat": (255, 0, 0), "ant": (0, 128, 255)}
    for name, colour in colours.items():
        (tmp_path / "train" / name).mkdir(parents=True)
        for index, size in enumerate([(20, 12), (9, 30)]):
            image_module.new("RGB", size, colour).save(tmp_path / "train" / name / f"{index}.png")
    text = SPEC.read_text().replace("input: [1, 8, 8]", "input: [3, 8, 8]")
    script = load_script(build(tmp_path, text, "flax"), monkeypatch)
    images, labels = script.read_image_folder(tmp_path / "train")
    assert images.shape == (4, 3, 8, 8) and labels.tolist() == [0, 0, 1, 1]
    mean, std = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])
    for image, name in zip(images, ["ant", "ant", "cat", "cat"]):
        want = (np.array(colours[name]) / 255 - mean) / std
        assert np.allclose(image, want[:, None, None], atol=1e-5)


AUX_SPEC = SPEC.parent / "digits_aux.yaml"


def test_auxiliary_outputs_weigh_into_the_loss_alike(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """loss_weights {out: 1.0, aux: 0.3}: the torch script's loss is that sum of
    cross-entropies, and the jax step's loss from the same weights equals it."""
    torch_script, jax_script = both_scripts(tmp_path, AUX_SPEC.read_text(), monkeypatch)
    assert_ruff_clean(tmp_path / "torch" / "digits_aux_train.py")
    assert_ruff_clean(tmp_path / "flax" / "digits_aux_train.py")
    model = torch_script.create_model()
    images, labels = torch.randn(16, 1, 8, 8), torch.randint(0, 10, (16,))
    outputs = model(images)
    cross_entropy = torch.nn.functional.cross_entropy
    want = cross_entropy(outputs["out"], labels) + 0.3 * cross_entropy(outputs["aux"], labels)
    got = torch_script.total_loss(torch_script.make_loss(), outputs, labels)
    assert torch.allclose(got, want)

    flax_model = jax_script.create_model(nnx.Rngs(0))
    sys.modules[jax_script.create_model.__module__].load_torch_state_dict(
        flax_model, numpy_state(model)
    )
    graph, params, rest = nnx.split(flax_model, nnx.Param, ...)
    optimizer = optax.inject_hyperparams(jax_script.make_optimizer)(learning_rate=0.01)
    state = (params, rest, optimizer.init(params))
    mesh = jax.make_mesh((1,), ("data",), axis_types=(jax.sharding.AxisType.Auto,))
    shardings = jax.tree.map(lambda value: jax_script.placement(value, mesh, False), state)
    step = jax_script.make_step(graph, optimizer, shardings)
    _, loss = step(state, images.numpy().transpose(0, 2, 3, 1), labels.numpy())
    assert float(loss) == pytest.approx(float(want.detach()), rel=1e-5)


@pytest.mark.parametrize("backend", ["torch", "flax"])
def test_a_model_with_an_auxiliary_head_trains(backend: str, tmp_path: Path, digits: Path) -> None:
    """Both scripts run it end to end, scoring the first output (two epochs)."""
    script = build(tmp_path, AUX_SPEC, backend)
    output = run(script, "--data", str(digits), "--epochs", "2", "--metrics", "metrics.jsonl")
    assert "epoch 2/2" in output
    losses = step_losses(tmp_path / "metrics.jsonl")
    assert np.mean(losses[-5:]) < np.mean(losses[:5])


def student_scripts(folder: Path, text: str, monkeypatch: pytest.MonkeyPatch) -> tuple[Any, Any]:
    """Both scripts of a student spec, written beside a copy of its teacher's spec."""
    spec, scripts = student_spec(folder, text), []
    for backend in ("torch", "flax"):
        (folder / backend).mkdir()
        script = build(folder / backend, spec, backend)
        assert_ruff_clean(script)
        scripts.append(load_script(script, monkeypatch))
    return scripts[0], scripts[1]


@pytest.mark.parametrize("text", [STUDENT.read_text(), DEIT_STUDENT], ids=["soft", "deit"])
def test_distillation_equals_torchs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, text: str
) -> None:
    torch_script, jax_script = student_scripts(tmp_path, text, monkeypatch)
    names = ["out", "dist"] if "dist:" in text else [""]
    outputs = {name: torch.randn(8, 10) * 2 for name in names}
    teacher, labels = torch.randn(8, 10) * 2, torch.randint(0, 10, (8,))
    torch_outputs = outputs if len(names) == 2 else outputs[""]
    want = torch_script.distilled_loss(torch_script.make_loss(), torch_outputs, teacher, labels)
    jax_outputs = jax.tree.map(lambda value: jax.numpy.asarray(value.numpy()), torch_outputs)
    got = jax_script.distilled_loss(jax_outputs, jax.numpy.asarray(teacher.numpy()), labels.numpy())
    assert float(got) == pytest.approx(float(want), rel=1e-5)


def test_a_student_learns_from_its_teachers_orbax_checkpoint(
    tmp_path: Path, digits: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    student = distil_from_a_trained_teacher(tmp_path, digits, "flax")
    # What the student learnt from: the trained teacher, far better than chance.
    script = load_script(student, monkeypatch)
    graph, state = script.load_teacher(tmp_path / "teacher" / "weights")
    arrays = np.load(digits)
    images = arrays["x_test"].transpose(0, 2, 3, 1)
    predicted = np.asarray(script.predict_logits(graph, *state, images)).argmax(-1)
    assert (predicted == arrays["y_test"]).mean() > 0.5
