"""Specs without a library reference: the generated code is the oracle for counts, and the
paper for the headline figures."""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from tests.helpers import (  # noqa: E402
    DETECTION_SETTINGS,
    GENERATED,
    archc_stats,
    calibrate_batch_norms,
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


def darknet_detections(
    maps: list[np.ndarray], anchors: list[list[float]], size: int, thresh: float, nms: float
) -> list[tuple[float, int, np.ndarray]]:
    """Darknet's yolo layers and do_nms_sort, transcribed one box at a time (yolo_layer.c's
    get_yolo_box and get_yolo_detections, box.c's NMS): (score, class, x1 y1 x2 y2 in input
    pixels) of every (box, class) left with a score, best first."""
    sigmoid = lambda value: 1 / (1 + np.exp(-value))  # noqa: E731
    boxes, probs = [], []
    for head, pairs in zip(maps, anchors):  # head: (channels, h, w), anchor by anchor
        channels, height, width = head.shape
        count = len(pairs) // 2
        entries = head.reshape(count, channels // count, height, width)
        for n in range(count):
            for j in range(height):
                for i in range(width):
                    x = entries[n, :, j, i]
                    centre = ((i + sigmoid(x[0])) / width, (j + sigmoid(x[1])) / height)
                    sides = (
                        np.exp(x[2]) * pairs[2 * n] / size,
                        np.exp(x[3]) * pairs[2 * n + 1] / size,
                    )
                    objectness = sigmoid(x[4])
                    prob = objectness * sigmoid(x[5:])
                    probs.append(
                        np.where(prob > thresh, prob, 0.0) if objectness > thresh else 0 * prob
                    )
                    corner = np.subtract(centre, np.divide(sides, 2))
                    boxes.append(np.concatenate([corner, corner + sides]) * size)
    boxes, probs = np.asarray(boxes), np.asarray(probs)
    for k in range(probs.shape[1]):  # do_nms_sort: per class, best first, suppress overlaps
        order = np.argsort(-probs[:, k], kind="stable")
        for a, first in enumerate(order):
            if probs[first, k] == 0:
                continue
            for second in order[a + 1 :]:
                if iou(boxes[first], boxes[second]) > nms:
                    probs[second, k] = 0
    found = [(probs[b, k], k, boxes[b]) for b, k in zip(*np.nonzero(probs))]
    return sorted(found, key=lambda item: -item[0])


def iou(a: np.ndarray, b: np.ndarray) -> float:
    sides = np.clip(np.minimum(a[2:], b[2:]) - np.maximum(a[:2], b[:2]), 0, None)
    inter = sides[0] * sides[1]
    return inter / (np.prod(a[2:] - a[:2]) + np.prod(b[2:] - b[:2]) - inter)


def test_yolov3_detections_are_darknets() -> None:
    """detect() against darknet's own algorithm transcribed in the test (decoding, scores
    of objectness times class, per-class NMS) on a small image, a threshold that leaves a
    few candidates per class: the same detections, best first."""
    size, thresh = 96, DETECTION_SETTINGS["yolov3"]["score_thresh"]
    module = load_generated(GENERATED / "torch" / "yolov3.py")
    model = module.create_model(score_thresh=thresh)
    image = torch.rand(1, 3, size, size, generator=torch.Generator().manual_seed(0))
    calibrate_batch_norms(model, lambda model: model(image))  # or every score is 0.25
    with torch.no_grad():
        model.eval()
        maps = model(image)
        found = model.detect(image)[0]
    anchors = [[116, 90, 156, 198, 373, 326], [30, 61, 62, 45, 59, 119], [10, 13, 16, 30, 33, 23]]
    heads = [maps[key][0].numpy().astype(np.float64) for key in ("stride32", "stride16", "stride8")]
    want = darknet_detections(heads, anchors, size, thresh, 0.45)
    found = found[found[:, 5] >= 0].numpy()
    assert 100 < len(want) <= 300
    assert len(found) == len(want)
    for row, (score, label, box) in zip(found, want):
        assert row[5] == label
        assert abs(row[4] - score) <= 1e-5
        assert np.abs(row[:4] - box).max() <= 1e-3
