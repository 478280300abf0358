"""An `op` param that picks another class at another call of its block: each backend builds
the class each call picks, with every attribute the spec gives it (flax's nnx.LayerNorm and
GroupNorm default to another epsilon than PyTorch's), the ones fixed before the width bound
as torchvision binds `partial(nn.GroupNorm, 32)`, and flax's `rngs` given to any class."""

from __future__ import annotations

import pytest

import archc
from tests.helpers import assert_flax_agrees, randomize_batch_norm

# The unit's norm is a BatchNorm at one call and `picked` at the other.
MIXED = """\
archc: 1
name: mixed
input: [3, 8, 8]
blocks:
  Unit:
    params: {{norm: {{type: op, default: batch_norm}}}}
    body:
      conv: {{op: conv2d, out: 8, kernel: 3, padding: 1, bias: false}}
      bn: norm
      act: relu
body:
  a: Unit
  b: {{block: Unit, norm: {picked}}}
"""

PICKED = {
    "layer_norm": ("LayerNorm2d", {"eps": 1e-5}),  # over an NCHW image's channels
    "{op: group_norm, groups: 4, eps: 0.001}": ("nn.GroupNorm", {"num_groups": 4, "eps": 1e-3}),
    "frozen_batch_norm": ("FrozenBatchNorm2d", {"eps": 1e-5}),
}


@pytest.mark.parametrize("picked", PICKED)
def test_a_param_picking_another_class_at_another_call_builds_it(picked: str) -> None:
    """The torch file builds each call's class with its settings; the flax file builds and
    computes the same outputs from the same weights."""
    nnx = pytest.importorskip("flax.nnx")
    compiled = archc.load(MIXED.format(picked=picked))
    model = compiled.torch()
    class_name, settings = PICKED[picked]
    norms = [type(model.a.bn).__name__, type(model.b.bn).__name__]
    assert norms == ["BatchNorm2d", class_name.removeprefix("nn.")]
    assert {key: getattr(model.b.bn, key) for key in settings} == settings
    assert sum(p.numel() for p in model.parameters()) == compiled.stats()["params"]
    randomize_batch_norm(model)
    flax_model = compiled.flax(nnx.Rngs(0))
    assert_flax_agrees(model, compiled.module("flax"), flax_model, (2, 3, 8, 8))
