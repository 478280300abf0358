"""The in-place pass: which ops may overwrite their input, and that doing so changes neither
outputs nor gradients."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from archc.emit.source_file import emit_file
from archc.emit.torch.emitter import TORCH
from archc.passes.in_place import mark_in_place
from archc.pipeline import compile_spec
from archc.resolve.classes import block_classes
from tests.helpers import load_generated

HEAD = "archc: 1\nname: net\ninput: [4, 8, 8]\nbody:\n"


def marked(tmp_path: Path, body: str) -> set[str]:
    spec = tmp_path / "net.yaml"
    spec.write_text(HEAD + body)
    model = block_classes(compile_spec(spec).program)[-1]
    return {child.name for child in mark_in_place(model).children if child.in_place}


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        # conv → bn → relu, and a skip added onto bn's fresh output: both as torchvision does
        (
            "  conv: {op: conv2d, out: 4, kernel: 1}\n  bn: batch_norm\n"
            "  add: {op: add, from: [bn, input]}\n  relu: relu\n",
            {"add", "relu"},
        ),
        # the block's input belongs to the caller
        ("  relu: relu\n", set()),
        ("  conv: {op: conv2d, out: 4, kernel: 1}\n  add: {op: add, from: [input, conv]}\n", set()),
        # conv's output is read twice: by the relu and by the add
        (
            "  conv: {op: conv2d, out: 4, kernel: 1}\n  relu: relu\n"
            "  add: {op: add, from: [relu, conv]}\n",
            set(),
        ),
        # sigmoid's backward reads its output; so would relu's, after a relu
        ("  s: sigmoid\n  relu: relu\n", set()),
        ("  conv: {op: conv2d, out: 4, kernel: 1}\n  r1: relu\n  r2: relu\n", {"r1"}),
        # dropout may hand its input back: looked through to what it was given
        ("  conv: {op: conv2d, out: 4, kernel: 1}\n  d: dropout\n  relu: relu\n", {"relu"}),
        ("  d: dropout\n  relu: relu\n", set()),
        # a switched-off conv is the identity: its output may be the block's input
        (
            "  conv: {op: conv2d, out: 4, kernel: 1, when: false}\n  relu: relu\n",
            set(),
        ),
        # sigmoid and gelu have no in-place form here
        ("  conv: {op: conv2d, out: 4, kernel: 1}\n  g: gelu\n", set()),
    ],
)
def test_only_fresh_unshared_tensors_are_overwritten(
    tmp_path: Path, body: str, expected: set[str]
) -> None:
    assert marked(tmp_path, body) == expected


def test_a_sequential_block_reads_the_item_before(tmp_path: Path) -> None:
    """In a list body each item reads `previous`: the relu after the norm runs in place, the
    one after a switchable relu does not (switched off, that one hands on the norm's output,
    but switched on, its own output, which its backward reads)."""
    spec = tmp_path / "net.yaml"
    spec.write_text(
        "archc: 1\nname: net\ninput: [4, 8, 8]\nblocks:\n  Unit:\n    params: {act: true}\n"
        "    body:\n      - {op: conv2d, out: 4, kernel: 1}\n      - batch_norm\n"
        "      - {op: relu, when: act}\n      - relu\nbody:\n  unit: Unit\n"
    )
    unit = next(c for c in block_classes(compile_spec(spec).program) if c.class_name == "Unit")
    assert [child.in_place for child in mark_in_place(unit).children] == [
        False,
        False,
        True,
        False,
    ]


@pytest.mark.parametrize("name", ["resnet18", "efficientnet_b0", "mobilenet_v3_small"])
def test_in_place_changes_neither_outputs_nor_gradients(name: str, tmp_path: Path) -> None:
    """A model built with and without the pass: same weights, same outputs and gradients
    after a training step's forward and backward (ReLU, SiLU, Hardswish, residual sums)."""
    torch = pytest.importorskip("torch")
    compiled = compile_spec(Path(f"specs/{name}.yaml"))
    models = []
    for backend in (TORCH, replace(TORCH, passes=())):
        text = emit_file(compiled.program, compiled.costs, "test", backend)
        path = tmp_path / f"{len(models)}.py"
        path.write_text(text)
        models.append(load_generated(path).create_model())
    assert "inplace=True" in (tmp_path / "0.py").read_text()
    assert "inplace=True" not in (tmp_path / "1.py").read_text()
    models[1].load_state_dict(models[0].state_dict())
    example = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    outputs = []
    for model in models:
        torch.manual_seed(0)  # the same stochastic-depth draws
        output = model.train()(example)
        output.square().sum().backward()
        outputs.append(output)
    assert torch.equal(outputs[0], outputs[1])
    for (name, first), second in zip(models[0].named_parameters(), models[1].parameters()):
        assert torch.equal(first.grad, second.grad), name


def test_alternative_activations_are_looked_through(tmp_path: Path) -> None:
    """A block's activations chosen by `act == '…'` never run after one another: the SiLU
    overwrites the norm's output through the switched-off ReLU6 and ReLU; after `when: gate`,
    which may hold with it, it does not."""
    spec = tmp_path / "net.yaml"
    spec.write_text(
        "archc: 1\nname: net\ninput: [4, 8, 8]\nblocks:\n  Unit:\n"
        "    params: {act: relu6, gate: false}\n    body:\n"
        "      - {op: conv2d, out: 4, kernel: 1}\n      - batch_norm\n"
        "      - {op: relu6, when: act == 'relu6'}\n      - {op: relu, when: act == 'relu'}\n"
        "      - {op: silu, when: act == 'silu'}\n      - {op: relu, when: gate}\n"
        "      - {op: hardswish, when: act == 'hardswish'}\n"
        "body:\n  a: {block: Unit, act: silu}\n  b: {block: Unit, act: hardswish}\n"
    )
    unit = next(c for c in block_classes(compile_spec(spec).program) if c.class_name == "Unit")
    assert [child.in_place for child in mark_in_place(unit).children] == [
        False,
        False,
        True,
        True,
        True,
        False,
        False,
    ]
