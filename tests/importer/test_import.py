"""`archc import`: torchvision models written back as specs build the same models.

The oracle is the original: the spec's generated model loads its state_dict strictly and
gives the same outputs on random images (small ones, where the architecture allows).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import archc
from tests.helpers import REPO, run_archc, torchvision

torch = pytest.importorskip("torch")

# Every torchvision classification model of the zoo, and ten the zoo does not have.
IN_THE_ZOO = {
    "resnet18": {},
    "resnet34": {},
    "resnet50": {},
    "resnet101": {},
    "resnet152": {},
    "alexnet": {},
    "vgg16": {},
    "squeezenet1_0": {},
    "squeezenet1_1": {},
    "mobilenet_v2": {},
    "mobilenet_v3_large": {},
    "mobilenet_v3_small": {},
    "efficientnet_b0": {},
    "regnet_x_400mf": {},
    "convnext_tiny": {},
    "densenet121": {},
    "shufflenet_v2_x1_0": {},
    "vit_b_16": {},
    "swin_t": {},
    "googlenet": {"aux_logits": False, "init_weights": False},  # eval never runs the aux heads
    "inception_v3": {"aux_logits": False, "init_weights": False},
}
NOT_IN_THE_ZOO = {
    "resnext50_32x4d": {},
    "wide_resnet50_2": {},
    "vgg11_bn": {},
    "regnet_y_400mf": {},
    "regnet_x_800mf": {},
    "efficientnet_b1": {},
    "shufflenet_v2_x0_5": {},
    "mnasnet0_5": {},
    "vit_b_32": {},
    "swin_s": {},
}
SIZES = {"alexnet": 64, "vgg16": 32, "vgg11_bn": 32, "inception_v3": 96, "vit_b_16": 224}
SIZES |= {"vit_b_32": 224}  # ViTs check for the size they were built for


@pytest.mark.parametrize("name", [*IN_THE_ZOO, *NOT_IN_THE_ZOO])
def test_an_imported_model_builds_the_original_again(name: str) -> None:
    kwargs = IN_THE_ZOO.get(name, NOT_IN_THE_ZOO.get(name))
    reference = torchvision().models.get_model(name, weights=None, **kwargs).eval()
    size = SIZES.get(name, 64)
    text = archc.import_spec(reference, name, (3, size, size))
    model = archc.load(text).torch().eval()
    model.load_state_dict(reference.state_dict(), strict=True)
    images = torch.randn(2, 3, size, size)
    with torch.no_grad():
        assert torch.allclose(model(images), reference(images), atol=1e-5, rtol=0)


def test_a_timm_model_imports_too() -> None:
    """timm writes ResNet-18 with other modules (identities for the unused drop and attention
    layers, its own activation wiring)."""
    torchvision()  # timm imports torchvision
    timm = pytest.importorskip("timm")
    reference = timm.create_model("resnet18", pretrained=False).eval()
    model = archc.load(archc.import_spec(reference, "resnet18", (3, 64, 64))).torch().eval()
    model.load_state_dict(reference.state_dict(), strict=True)
    images = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(model(images), reference(images), atol=1e-5, rtol=0)


def test_resnet50_calls_the_shipped_bottleneck_and_is_no_longer_than_the_hand_written_spec() -> (
    None
):
    text = archc.import_spec(torchvision().models.resnet50(), "resnet50")
    hand_written = (REPO / "specs" / "resnet50.yaml").read_text()
    lines = [line for line in text.splitlines() if line.strip()]
    assert len(lines) <= len([line for line in hand_written.splitlines() if line.strip()])
    assert "imports: [archc:resnet]" in text and "blocks:" not in text
    assert "layer1: {block: Bottleneck, repeat: 3, planes: 64}" in text  # stride 1: the default
    assert "layer2: {block: Bottleneck, repeat: 4, planes: 128, stride: 2 if i == 0 else 1}" in text


def test_mobilenet_v2_comes_out_as_its_papers_table() -> None:
    """Library blocks of another name (Conv2dNormActivation is ConvBNAct), a node switched off
    (the first block's 1x1 expansion), and runs split so a stage's strided block opens its run:
    the rows (t, c, n, s) of the paper's Table 2."""
    reference = torchvision().models.mobilenet_v2(weights=None).eval()
    text = archc.import_spec(reference, "mobilenet_v2", (3, 64, 64))
    assert "imports: [archc:mobilenet]" in text and "blocks:" not in text
    rows = [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1)]
    rows += [(6, 160, 3, 2), (6, 320, 1, 1)]
    for expand, out, repeat, stride in rows:
        runs = f"repeat: {repeat}, " if repeat > 1 else ""
        strides = f", stride: {stride} if i == 0 else 1" if stride > 1 and repeat > 1 else ""
        strides = f", stride: {stride}" if stride > 1 and repeat == 1 else strides
        call = f"{{block: InvertedResidual, {runs}out: {out}{strides}, expand_ratio: {expand}}}"
        assert call in text, call


def test_mobilenet_v3_large_passes_its_norm_settings_to_the_library_block() -> None:
    """An op param found with settings of its own (torchvision's BatchNorm eps 0.001 and
    momentum 0.01, archc:mobilenet's Bneck default): left out where it is the default, written
    as `{op: …, …}` where it is not; the paper's Table 1 expansions (200, 184, 184)."""
    reference = torchvision().models.mobilenet_v3_large(weights=None).eval()
    text = archc.import_spec(reference, "mobilenet_v3_large", (3, 64, 64))
    assert "imports: [archc:mobilenet]" in text and "blocks:" not in text
    norm = "norm: {op: batch_norm, eps: 0.001, momentum: 0.01}"
    assert f"{{block: ConvBNAct, out: 16, stride: 2, act: hardswish, {norm}}}" in text
    assert "{block: Bneck, repeat: 3, kernel: 3, expanded: 200 if i == 0 else 184, out: 80" in text


def test_convnext_layer_scales_keep_their_starting_value() -> None:
    """ConvNeXt's layer scale starts at 1e-6 (float32): imported as `fill: 1e-06`, so the
    block is archc:convnext's CNBlock, whose default that is."""
    reference = torchvision().models.convnext_tiny(weights=None).eval()
    text = archc.import_spec(reference, "convnext_tiny", (3, 64, 64))
    assert "imports: [archc:convnext]" in text and "\n  CNBlock:\n" not in text
    assert "{block: CNBlock, repeat: 2, p: 0.0058823529411764705 if i == 0 else" in text


def test_googlenet_calls_the_shipped_inception_blocks() -> None:
    """Library blocks inside library blocks (Inception's BasicConv2d), a list param read
    element by element (`out: widths[2]`), and arguments at their defaults left out."""
    reference = torchvision().models.googlenet(weights=None, aux_logits=False, init_weights=False)
    text = archc.import_spec(reference.eval(), "googlenet", (3, 64, 64))
    assert "imports: [archc:inception]" in text and "blocks:" not in text
    assert "conv1: {block: BasicConv2d, out: 64, kernel: 7, stride: 2, padding: 3}" in text
    assert "inception3a: {block: Inception, widths: [64, 96, 128, 16, 32, 32]}" in text


def test_a_class_named_as_a_library_block_but_built_otherwise_is_defined_here() -> None:
    """A `Bottleneck` that is not ResNet's (no downsample, no activations) is tried as
    archc:resnet's and refused, so it is written out, renamed apart from the library's that
    the model's ResNet BasicBlock brings in; the spec builds the model again."""

    class Bottleneck(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv1 = torch.nn.Conv2d(8, 8, 1, bias=False)
            self.bn1 = torch.nn.BatchNorm2d(8)
            self.conv3 = torch.nn.Conv2d(8, 8, 1, bias=False)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.conv3(self.bn1(self.conv1(x))) + x

    basic = torchvision().models.resnet.BasicBlock(8, 8)
    reference = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 1), basic, Bottleneck()).eval()
    text = archc.import_spec(reference, "custom", (3, 16, 16))
    assert "imports: [archc:resnet]" in text
    assert "\n  Bottleneck2:\n" in text and "{block: BasicBlock, planes: 8}" in text
    model = archc.load(text).torch().eval()
    model.load_state_dict(reference.state_dict(), strict=True)
    images = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        assert torch.allclose(model(images), reference(images), atol=1e-5, rtol=0)


MODELS = """
import torch
from torch import nn


class Twice(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 3, padding=1)

    def forward(self, x):
        return self.conv(self.conv(x))


class Mean(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3)

    def forward(self, x):
        return self.conv(x).mean(1)


def plain():
    head = [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 4)]
    return nn.Sequential(nn.Conv2d(3, 8, 3, stride=2), nn.BatchNorm2d(8), nn.ReLU(), *head)


def twice():
    return Twice()


def mean():
    return Mean()


class Branching(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 1)

    def forward(self, x):
        return self.conv(x) if x.sum() > 0 else x


def branching():
    return Branching()
"""


@pytest.fixture
def models(tmp_path: Path) -> dict[str, str]:
    (tmp_path / "imported_models.py").write_text(MODELS)
    return {"PYTHONPATH": f"{tmp_path}:{REPO}", "PATH": "/usr/bin:/bin"}


@pytest.mark.usefixtures("models")
def test_the_command_writes_a_spec_that_checks(tmp_path: Path) -> None:
    out = tmp_path / "plain.yaml"
    # The console script, as a user runs it, finds the module in the working folder.
    command = [str(Path(sys.executable).parent / "archc"), "import", "imported_models:plain"]
    result = subprocess.run(
        [*command, "-o", str(out)], cwd=tmp_path, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    check = run_archc("check", str(out))
    assert check.returncode == 0, check.stderr
    assert ", 276 params," in check.stdout  # conv 3·8·9 + 8, batch norm 2·8, linear 8·4 + 4


@pytest.mark.parametrize(
    ("model", "message"),
    [
        ("imported_models:twice", "calls conv twice; archc has no shared weights"),
        ("imported_models:mean", "only a mean over an image's height and width imports"),
        ("imported_models:nothing", "module imported_models has no callable named 'nothing'"),
        ("imported_models:branching", "the model: torch.fx cannot trace its forward (TraceError"),
        ("resnet18", "expected a model like torchvision:resnet18"),
    ],
)
def test_what_cannot_be_imported_is_a_clear_error_and_no_file(
    model: str, message: str, models: dict[str, str], tmp_path: Path
) -> None:
    out = tmp_path / "out.yaml"
    result = run_archc("import", model, "-o", str(out), env=models)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert message in result.stderr and not out.exists()
