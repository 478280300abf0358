"""Helpers of the training-script tests: build a spec's model file and training script for a
backend, run the script, read its metrics."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import archc
from tests.helpers import REPO, load_generated

SPEC = REPO / "tests" / "specs" / "digits_cnn.yaml"
STUDENT = SPEC.parent / "digits_student.yaml"
"""digits_cnn's student (soft distillation)."""
# The student with a second head for the teacher, DeiT's way.
DEIT_STUDENT = (
    STUDENT.read_text()
    .replace("kind: soft, temperature: 4.0, alpha: 0.7", "kind: hard, alpha: 0.5, output: dist")
    .replace(
        "  fc: {op: linear, out: classes}\n",
        "  fc: {op: linear, out: classes}\n"
        "  dist: {op: linear, out: classes, from: flatten}\noutputs: {out: fc, dist: dist}\n",
    )
)


def build(folder: Path, spec: str | Path = SPEC, backend: str = "torch", **overrides: Any) -> Path:
    """The model file and its training script in `folder`; the script's path."""
    model = archc.load(spec, set=overrides)
    (folder / f"{model.name}.py").write_text(model.source(backend, folder=folder))
    script = folder / f"{model.name}_train.py"
    script.write_text(model.train_source(folder, backend))
    if model.teacher is not None:  # a distillation's, imported by the script
        (folder / f"{model.teacher.name}.py").write_text(
            model.teacher.source(backend, folder=folder)
        )
    return script


def run(
    script: Path, *arguments: str, processes: int = 1, environment: dict[str, str] | None = None
) -> str:
    """Run the script (under torchrun with several processes) in its folder."""
    launcher = [sys.executable]
    if processes > 1:
        launcher += ["-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}"]
    done = subprocess.run(
        [*launcher, script.name, *arguments],
        cwd=script.parent,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "OMP_NUM_THREADS": "1", **(environment or {})},
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def assert_ruff_clean(script: Path) -> None:
    for command in (["check"], ["format", "--check"]):
        done = subprocess.run(
            [str(REPO / ".venv" / "bin" / "ruff"), *command, str(script)],
            capture_output=True,
            text=True,
        )
        assert done.returncode == 0, done.stdout + done.stderr


def load_script(script: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    """The script as a module, its model file imported from its own folder."""
    monkeypatch.syspath_prepend(str(script.parent))
    for module in script.parent.glob("*.py"):  # its model's and a teacher's, fresh
        monkeypatch.delitem(sys.modules, module.stem, raising=False)
    return load_generated(script)


def both_scripts(folder: Path, text: str, monkeypatch: pytest.MonkeyPatch) -> tuple[Any, Any]:
    """The torch and the jax training scripts of one spec, loaded (each with its model)."""
    scripts = []
    for backend in ("torch", "flax"):
        (folder / backend).mkdir()
        scripts.append(load_script(build(folder / backend, text, backend), monkeypatch))
    return scripts[0], scripts[1]


def step_losses(path: Path) -> list[float]:
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    return [line["loss"] for line in lines if "step" in line]


def assert_same_step_losses(folder: Path, reference: str, *others: str, steps: int) -> None:
    """The `steps` losses logged in folder/<reference>.jsonl, and the same in each other log
    (within 1e-5: the runs sum their gradients in different orders)."""
    losses = step_losses(folder / f"{reference}.jsonl")
    assert len(losses) == steps
    for name in others:
        other = step_losses(folder / f"{name}.jsonl")
        assert np.allclose(losses, other, rtol=0, atol=1e-5), (name, losses, other)


def student_spec(folder: Path, text: str) -> Path:
    """A student's spec written to `folder`, beside a copy of its teacher's."""
    (folder / "digits_cnn.yaml").write_text(SPEC.read_text())
    spec = folder / "student.yaml"
    spec.write_text(text)
    return spec


def distil_from_a_trained_teacher(folder: Path, digits: Path, backend: str) -> Path:
    """digits_cnn trained by its own script (2 epochs, in folder/teacher), then the student
    by its script against that checkpoint, its losses falling; the student's script."""
    (folder / "teacher").mkdir()
    teacher = build(folder / "teacher", backend=backend)
    run(teacher, "--data", str(digits), "--epochs", "2", "--checkpoint", "weights")
    student = build(folder, STUDENT, backend)
    arguments = ["--data", str(digits), "--epochs", "2", "--metrics", "metrics.jsonl"]
    output = run(student, *arguments, "--teacher", str(folder / "teacher" / "weights"))
    assert "epoch 2/2" in output
    losses = step_losses(folder / "metrics.jsonl")
    assert np.mean(losses[-5:]) < np.mean(losses[:5])
    return student
