"""Specs without a library reference: the generated code is the oracle for counts, and the
paper for the headline figures."""

from __future__ import annotations

import json

import pytest

torch = pytest.importorskip("torch")

from tests.helpers import (  # noqa: E402
    GENERATED,
    archc_stats,
    count_macs,
    load_generated,
    run_archc,
)


def assert_counts_match_the_generated_code(name: str, *overrides: str) -> torch.Tensor:
    """archc's params, buffers and MACs against the generated module and FlopCounterMode;
    returns the output for one input of the spec's shape."""
    stats = archc_stats(f"specs/{name}.yaml", *overrides)
    settings = dict(item.split("=") for item in overrides)
    model = load_generated(GENERATED / "torch" / f"{name}.py")
    model = model.create_model(**{key: int(value) for key, value in settings.items()}).eval()
    macs, output = count_macs(model, torch.randn(stats["input"]))
    assert stats["macs"] == macs
    assert stats["params"] == sum(p.numel() for p in model.parameters())
    assert stats["buffers"] == sum(b.numel() for b in model.buffers())
    return output


PAPER = ["shufflenet_v1", "unet", "pspnet", "bisenetv1", "yolov3", "detnet59"]


def test_shufflenet_v1_counts_and_the_papers_140_million_multiply_adds() -> None:
    output = assert_counts_match_the_generated_code("shufflenet_v1")
    assert output.shape == (1, 1000)
    stats = archc_stats("specs/shufflenet_v1.yaml")
    # Zhang et al. 2017, Table 2: ShuffleNet 1x (g = 3) costs 140 MFLOPs (multiply-adds).
    assert abs(stats["macs"] - 140e6) / 140e6 <= 0.03


def test_unet_as_in_the_paper_572_in_388_out() -> None:
    # Ronneberger et al. 2015, Fig. 1: a 572x572 tile gives a 388x388 map of 2 classes.
    output = assert_counts_match_the_generated_code("unet")
    assert output.shape == (1, 2, 388, 388)


def test_unet_padded_keeps_the_size() -> None:
    output = assert_counts_match_the_generated_code("unet", "padding=1")
    assert output.shape == (1, 2, 256, 256)


def test_pspnet_counts_and_full_resolution_logits() -> None:
    output = assert_counts_match_the_generated_code("pspnet")
    assert output.shape == (1, 21, 473, 473)


def test_bisenetv1_counts_and_full_resolution_logits() -> None:
    output = assert_counts_match_the_generated_code("bisenetv1")
    assert output.shape == (1, 19, 512, 512)


def test_yolov3_counts_three_scales_and_darknets_published_figures() -> None:
    """Raw head maps of 3 x (5 + 80) channels at strides 32, 16 and 8; the 61,949,149
    parameters of darknet's yolov3.weights (COCO), and the FLOPs of the YOLOv3 table on
    darknet's site, 2 x the conv multiply-adds: 38.97 Bn at 320, 65.86 at 416, 140.69 at 608."""
    outputs = assert_counts_match_the_generated_code("yolov3")
    shapes = {name: tuple(value.shape) for name, value in outputs.items()}
    assert shapes == {
        "stride32": (1, 255, 13, 13),
        "stride16": (1, 255, 26, 26),
        "stride8": (1, 255, 52, 52),
    }
    assert archc_stats("specs/yolov3.yaml")["params"] == 61_949_149
    for size, billions in [(320, 38.97), (416, 65.86), (608, 140.69)]:
        result = run_archc("stats", "specs/yolov3.yaml", "--input", str(size), "--format", "json")
        assert result.returncode == 0, result.stderr
        assert round(json.loads(result.stdout)["flops"] / 1e9, 2) == billions


def test_detnet59_keeps_stride_16_and_costs_what_the_paper_adds_to_resnet50() -> None:
    """Li et al. 2018: 59 layers; stages 5 and 6 stay at stride 16 (14 x 14 at 224); the paper
    gives ResNet-50 3.8 and DetNet-59 4.8 GFLOPs (multiply-adds, each rounded to 0.1, in the
    ResNet paper's convention), so DetNet's two stages and smaller classifier add 1.0 +- 0.1
    billion multiply-adds to ResNet-50's, whatever the convention."""
    assert_counts_match_the_generated_code("detnet59")
    detnet, resnet50 = archc_stats("specs/detnet59.yaml"), archc_stats("specs/resnet50.yaml")
    assert detnet["depth"] == 59
    assert abs((detnet["macs"] - resnet50["macs"]) / 1e9 - (4.8 - 3.8)) <= 0.1
    model = load_generated(GENERATED / "torch" / "detnet59.py").create_model().eval()
    sizes = {}
    for name in ("layer3", "layer4", "layer5"):
        getattr(model, name).register_forward_hook(
            lambda module, inputs, output, name=name: sizes.update({name: output.shape[1:]})
        )
    with torch.no_grad():
        model(torch.randn(1, 3, 224, 224))
    assert sizes == {name: (1024, 14, 14) for name in ("layer3", "layer4", "layer5")}
