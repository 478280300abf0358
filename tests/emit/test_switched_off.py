"""Nodes a `when:` switches off at the defaults: a class still builds them for the values that
switch them on, so their attributes need only hold there (GroupNorm(norm_groups) under
`when: norm_groups > 0`, norm_groups 0 by default)."""

from __future__ import annotations

import pytest

import archc
from archc.api import load_texts
from archc.errors import SpecError
from tests.helpers import assert_flax_agrees

# Optional GroupNorms, in the model and in a block, off at the defaults.
OPTIONAL_NORMS = """\
archc: 1
name: optional_norms
params: {norm_groups: 0}
input: [3, 8, 8]
body:
  conv: {op: conv2d, out: 8, kernel: 3, padding: 1}
  norm: {op: group_norm, groups: norm_groups, when: norm_groups > 0}
  head: {block: Head, norm_groups: norm_groups}
blocks:
  Head:
    params: {norm_groups: 0}
    body:
      conv: {op: conv2d, out: 8, kernel: 1}
      norm: {op: group_norm, groups: norm_groups, when: norm_groups > 0}
      act: relu
"""


@pytest.mark.parametrize("groups", [0, 4])
def test_a_node_switched_off_by_default_is_built_where_a_value_switches_it_on(
    groups: int,
) -> None:
    """create_model(norm_groups=…) in both backends against archc at `--set norm_groups=…`:
    the same parameters, and the same outputs from the same weights."""
    import torch

    nnx = pytest.importorskip("flax.nnx")
    defaults = archc.load(OPTIONAL_NORMS)
    compiled = archc.load(OPTIONAL_NORMS, set={"norm_groups": groups})
    model = defaults.torch(norm_groups=groups).eval()
    assert sum(p.numel() for p in model.parameters()) == compiled.stats()["params"]
    norms = [module for module in model.modules() if isinstance(module, torch.nn.GroupNorm)]
    assert [norm.num_groups for norm in norms] == [groups] * 2 * (groups > 0)
    flax_model = defaults.flax(nnx.Rngs(0), norm_groups=groups)
    assert_flax_agrees(model, defaults.module("flax"), flax_model, (2, 3, 8, 8))


@pytest.mark.parametrize(
    ("node", "problem", "value"),
    [
        # Written out, a value is wrong wherever the node is on.
        ("{op: group_norm, groups: 0, when: k > 0}", "groups: expected at least 1, got 0", "0,"),
        # Where a shape cannot even be inferred at the defaults, the attribute is refused.
        (
            "{op: max_pool2d, kernel: 3, stride: k, when: k > 0}",
            "stride: expected at least 1",
            "k,",
        ),
    ],
    ids=["written out", "no shape"],
)
def test_a_switched_off_node_is_still_refused_where_no_value_can_hold(
    node: str, problem: str, value: str
) -> None:
    """Refused at the value (`value`: its text, followed by a comma)."""
    line = f"  x: {node}"
    text = f"archc: 1\nname: s\nparams: {{k: 0}}\ninput: [8, 8, 8]\nbody:\n{line}\n"
    with pytest.raises(SpecError, match=problem) as caught:
        load_texts(text, emittable=True)  # as `archc check` does
    location = caught.value.location
    assert (location.line, location.col) == (6, line.index(value) + 1)
