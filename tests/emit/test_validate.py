"""Translation validation: a generated file that disagrees with the IR is never written."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import pytest

from archc.cli import main
from archc.emit.flax.emitter import flax_source
from archc.emit.torch.emitter import torch_source
from archc.emit.validate import build_model, validate_flax, validate_torch
from archc.errors import InternalError
from archc.ops.linear import Linear
from archc.ops.lowering import ModuleCall
from archc.pipeline import compile_spec, flipped_points
from archc.resolve.classes import block_classes
from tests.helpers import SPECS


@pytest.fixture(scope="module")
def resnet18() -> tuple[str, object, list]:
    compiled = compile_spec(SPECS / "resnet18.yaml")
    source = torch_source(compiled.program, compiled.costs, "archc build")
    return source, compiled.program.graph, block_classes(compiled.program)


@pytest.mark.parametrize(
    ("old", "new", "problem"),
    [
        (
            "nn.Linear(512, num_classes)",
            "nn.Linear(511, num_classes)",
            "fc (linear) at specs/resnet18.yaml:24:7: built as Linear(511, 1000), the IR says "
            "Linear(512, 1000)",
        ),
        ("self.fc = ", "self.head = ", "fc (linear) at specs/resnet18.yaml:24:7: the generated "),
        (
            "nn.Linear(512, num_classes)",
            "nn.Linear(512, num_classes, bias=False)",
            "fc (linear) at specs/resnet18.yaml:24:7: bias=False, the IR leaves bias at the "
            "class's default",
        ),
        (
            "self.fc = ",
            "self.extra = nn.ReLU()\n        self.fc = ",
            "the generated model builds extra, which the IR has not",
        ),
        (
            'mode="fan_out"',
            'mode="fan_in"',
            "conv1 (conv2d) at specs/resnet18.yaml:14:10: its weight starts as normal(0.116642),"
            " the IR says normal(0.0252538)",
        ),
        (
            "        init_weights(self, zero_init_residual=zero_init_residual)\n",
            "",
            "its weight starts as the framework's default",
        ),
    ],
    ids=["width", "name", "keyword", "extra module", "init", "no init"],
)
def test_a_file_that_drifts_from_the_ir_is_caught(
    resnet18: tuple, old: str, new: str, problem: str
) -> None:
    source, graph, classes = resnet18
    assert old in source
    with pytest.raises(InternalError, match="translation validation: ") as caught:
        validate_torch(source.replace(old, new, 1), graph, classes)
    assert problem in str(caught.value)


def test_an_init_condition_the_model_does_not_pass_on_is_caught() -> None:
    """Built with zero_init_residual true, the IR zeroes each block's bn2 weight: a file whose
    model passes init_weights another value starts them at one, and is refused."""
    compiled = compile_spec(SPECS / "resnet18.yaml", {"zero_init_residual": "true"})
    source = torch_source(compiled.program, compiled.costs, "archc build")
    graph, classes = compiled.program.graph, block_classes(compiled.program)
    validate_torch(source, graph, classes)
    old = "init_weights(self, zero_init_residual=zero_init_residual)"
    assert old in source
    flipped = source.replace(old, "init_weights(self, zero_init_residual=False)")
    with pytest.raises(InternalError, match="translation validation: ") as caught:
        validate_torch(flipped, graph, classes)
    assert "bn2 (batch_norm)" in str(caught.value), caught.value


def test_a_picked_norm_that_loses_its_settings_is_caught() -> None:
    """mobilenet_v3_small's norm param holds partial(nn.BatchNorm2d, eps=0.001, …): a file
    whose partial drops eps builds norm(width) at the class default, which the IR refuses."""
    compiled = compile_spec(SPECS / "mobilenet_v3_small.yaml")
    source = torch_source(compiled.program, compiled.costs, "archc build")
    old = "functools.partial(nn.BatchNorm2d, eps=0.001, momentum=0.01)"
    assert source.count(old) == 2
    drifted = source.replace(old, "functools.partial(nn.BatchNorm2d, momentum=0.01)")
    with pytest.raises(InternalError, match=r"eps is left to the class, the IR says eps=0\.001"):
        validate_torch(drifted, compiled.program.graph, block_classes(compiled.program))


def test_a_flax_file_that_drifts_from_the_ir_is_caught() -> None:
    compiled = compile_spec(SPECS / "resnet18.yaml")
    source = flax_source(compiled.program, compiled.costs, "archc build")
    graph, classes = compiled.program.graph, block_classes(compiled.program)
    for old, new, problem in [
        ("nnx.Linear(512, num_classes", "nnx.Linear(511, num_classes", "built as Linear(511"),
        ("self.bn1 = BatchNorm(64", "self.bn1 = BatchNorm(63", "built as BatchNorm(63)"),
        ("sqrt(2 / fan_out)", "sqrt(8 / fan_out)", "its weight starts as normal(0.0505076)"),
        ("1 / sqrt(fan_in)))", "2 / sqrt(fan_in)))", "fc (linear) at specs/resnet18.yaml"),
    ]:
        assert old in source
        with pytest.raises(InternalError, match="translation validation: ") as caught:
            validate_flax(source.replace(old, new, 1), graph, classes)
        assert problem in str(caught.value)


def test_the_stand_ins_import_nothing_else(resnet18: tuple) -> None:
    source, graph, _ = resnet18
    with pytest.raises(ImportError, match="imports os"):
        build_model("import os\n" + source, graph.name)
    with pytest.raises(NameError, match="open"):
        build_model(source + "\nopen('x')\n", graph.name)


def test_build_exits_3_and_writes_nothing_when_validation_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A lowering that gives the class one width and the IR another (as the stale-width bug
    did): exit status 3, one line, no file."""
    original = Linear.lower_torch

    def drifting(self: Linear, attrs: object, inputs: list) -> ModuleCall:
        lowered = original(self, attrs, inputs)
        if isinstance(attrs.out, int):  # the concrete IR, not a class's symbolic width
            return ModuleCall(lowered.constructor, (lowered.args[0], attrs.out + 1))
        return lowered

    monkeypatch.setattr(Linear, "lower_torch", drifting)
    stderr = io.StringIO()
    with contextlib.redirect_stderr(stderr), contextlib.redirect_stdout(io.StringIO()):
        status = main(["build", str(SPECS / "resnet18.yaml"), "-o", str(tmp_path)])
    assert status == 3
    assert "translation validation: fc (linear)" in stderr.getvalue()
    assert len(stderr.getvalue().splitlines()) == 1
    assert not any(tmp_path.rglob("*.py"))


SWITCHED = Path("tests/specs/switched.yaml")


@pytest.mark.parametrize(
    ("spec", "old", "new", "problem"),
    [
        (
            SPECS / "resnet18.yaml",
            "nn.init.zeros_(module.bn2.weight)",
            "nn.init.zeros_(module.bn1.weight)",
            "layer1.0.bn1 (batch_norm) at archc/blocks/resnet.yaml:10:12: its weight starts as"
            " constant(0), the IR says the framework's default",
        ),
        (
            SWITCHED,
            "nn.Conv2d(in_channels, 4, kernel_size=1)",
            "nn.Conv2d(in_channels, 4, kernel_size=2)",
            "extra.conv (conv2d) at tests/specs/switched.yaml:18:13: kernel_size=2, the IR says"
            " kernel_size=1",
        ),
    ],
    ids=["init", "switched-off block"],
)
def test_a_drift_that_only_another_value_of_a_bool_param_builds_is_caught(
    spec: Path, old: str, new: str, problem: str
) -> None:
    """What the defaults do not build (resnet18's zero_init_residual, a block under `when:
    deep`) passes validation at the defaults, and is caught with the param the other way."""
    compiled = compile_spec(spec)
    source = torch_source(compiled.program, compiled.costs, "archc build")
    assert old in source
    drifted = source.replace(old, new)
    graph, classes = compiled.program.graph, block_classes(compiled.program)
    validate_torch(drifted, graph, classes)  # the defaults do not build it
    (point,) = flipped_points(compiled, spec).points
    (param,) = point.params.items()
    assert param in [("zero_init_residual", True), ("deep", True)]
    with pytest.raises(InternalError, match="translation validation: ") as caught:
        validate_torch(drifted, graph, classes, True, [point])
    assert f"{problem}, with {param[0]}=True (this is a bug in archc)" in str(caught.value)
