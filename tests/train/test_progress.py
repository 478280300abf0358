"""Both training scripts show their progress as one line rewritten on a terminal, and
nothing when their output goes to a log."""

from __future__ import annotations

import io
import sys
from pathlib import Path

import pytest

from tests.train.scripts import build, load_script

pytest.importorskip("torch")
pytest.importorskip("jax")


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize("backend", ["torch", "flax"])
def test_progress_is_one_line_rewritten_on_a_terminal(
    backend: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    script = load_script(build(tmp_path, backend=backend), monkeypatch)
    terminal = Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    for step in range(3):
        script.progress(1, step, 3, 0.5 - step / 10, 1234.5)
    lines = terminal.getvalue().split("\r")
    assert lines[1:] == [
        "epoch 2  step 1/3  loss 0.5000  1,234 img/s",
        "epoch 2  step 2/3  loss 0.4000  1,234 img/s",
        "epoch 2  step 3/3  loss 0.3000  1,234 img/s\n",
    ]
    monkeypatch.setattr(sys, "stderr", io.StringIO())  # not a terminal: a log stays clean
    script.progress(1, 0, 3, 0.5, 1234.5)
    assert sys.stderr.getvalue() == ""
