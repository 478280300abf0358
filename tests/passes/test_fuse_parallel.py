"""The inference export's joining of parallel branches: which branches join, and that the
export launches fewer convolutions with the training model's outputs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.helpers import SPECS, randomize_batch_norm
from tests.passes.exports import assert_export_matches, models

SPEC = """\
archc: 1
name: net
input: [4, 8, 8]
blocks:
  Unit:
    params: {out: int, kernel: 1}
    body:
      conv: {op: conv2d, out: out, kernel: kernel, padding: kernel // 2}
      bn: batch_norm
      relu: relu
  Grouped:
    params: {out: int}
    body:
      - {op: conv2d, out: out, kernel: 1, groups: 2}
      - relu
body:
"""


def convolutions(model: Any, example: Any) -> int:
    """How many convolutions a forward launches, counted at the aten level."""
    import torch
    from torch.utils._python_dispatch import TorchDispatchMode

    class Count(TorchDispatchMode):
        calls = 0

        def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None):
            if func is torch.ops.aten.convolution.default:
                Count.calls += 1
            return func(*args, **(kwargs or {}))

    with torch.no_grad(), Count():
        model(example)
    return Count.calls


def test_googlenet_export_launches_fewer_convolutions(tmp_path: Path) -> None:
    """Each of GoogLeNet's nine Inception blocks runs its three 1x1 convs on the block's
    input as one: two convolutions fewer per block."""
    torch = pytest.importorskip("torch")
    training, inference, export = models(SPECS / "googlenet.yaml", tmp_path)
    example = torch.randn(1, 3, 64, 64)
    model = training.create_model().eval()
    randomize_batch_norm(model)
    exported = inference.create_model().eval()
    exported.load_state_dict(inference.inference_state_dict(model.state_dict()))
    before, after = convolutions(model, example), convolutions(exported, example)
    assert before == sum(isinstance(m, torch.nn.Conv2d) for m in model.modules())
    assert after == before - 2 * 9
    assert len(export.joined) == 9


CASES = [
    # two instances that differ only in width: one conv of 4 + 6 channels, then slices
    (
        "  a: {block: Unit, out: 4}\n  b: {block: Unit, out: 6, from: input}\n"
        "  cat: {op: concat, from: [b, a]}\n",
        ["a_b.conv"],
    ),
    # a sequence that starts with one: the rest of it reads its slice
    (
        "  a: {block: Unit, out: 4}\n"
        "  s: {from: input, seq: [{block: Unit, out: 6}, {op: conv2d, out: 2, kernel: 1}]}\n"
        "  cat: {op: concat, from: [a, s]}\n",
        ["a_s.conv"],
    ),
    # another kernel, another input, a `when:`, grouped convs: nothing to join
    (
        "  a: {block: Unit, out: 4}\n  b: {block: Unit, out: 6, kernel: 3, from: input}\n"
        "  cat: {op: concat, from: [a, b]}\n",
        [],
    ),
    (
        "  a: {block: Unit, out: 4}\n  b: {block: Unit, out: 6}\n"
        "  cat: {op: concat, from: [a, b]}\n",
        [],
    ),
    (
        "  a: {block: Unit, out: 4}\n  b: {block: Unit, out: 6, from: input, when: false}\n"
        "  cat: {op: concat, from: [a, b]}\n",
        [],
    ),
    (
        "  a: {block: Grouped, out: 4}\n  b: {block: Grouped, out: 6, from: input}\n"
        "  cat: {op: concat, from: [a, b]}\n",
        [],
    ),
]


@pytest.mark.parametrize(("body", "joined"), CASES)
def test_which_branches_join(body: str, joined: list[str], tmp_path: Path) -> None:
    pytest.importorskip("torch")
    spec = tmp_path / "net.yaml"
    spec.write_text(SPEC + body)
    assert_export_matches(spec, tmp_path, 8, channels=4)
    _, _, export = models(spec, tmp_path)
    assert [name for name, _ in export.joined] == joined
