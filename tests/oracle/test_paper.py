"""Specs without a library reference: the generated code is the oracle for counts, and the
paper for the headline figures."""

from __future__ import annotations

import json
import math

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


YOLO_ANCHORS = [[116, 90, 156, 198, 373, 326], [30, 61, 62, 45, 59, 119], [10, 13, 16, 30, 33, 23]]


def darknet_deltas(
    maps: list[np.ndarray], size: int, truths: list[tuple[float, ...]], ignore_thresh: float
) -> list[np.ndarray]:
    """The delta of darknet's yolo layers (forward_yolo_layer in yolo_layer.c, with
    delta_yolo_box and delta_yolo_class, truth_thresh 1) on one image's maps (channels, h,
    w), transcribed one anchor and one truth at a time: what darknet backpropagates into
    each map. `truths` are darknet's: x, y, w, h relative to the image, and the class."""
    sigmoid = lambda value: 1 / (1 + np.exp(-value))  # noqa: E731
    biases = [size for pairs in reversed(YOLO_ANCHORS) for size in pairs]  # the cfg's order
    masks = [[6, 7, 8], [3, 4, 5], [0, 1, 2]]  # the cfg's yolo layers, stride 32 first
    deltas = []
    for head, mask in zip(maps, masks):
        channels, lh, lw = head.shape
        out = head.reshape(3, channels // 3, lh, lw).copy()
        out[:, :2], out[:, 4:] = sigmoid(out[:, :2]), sigmoid(out[:, 4:])
        delta = np.zeros_like(out)
        for j in range(lh):
            for i in range(lw):
                for n in range(3):
                    pred = (
                        (i + out[n, 0, j, i]) / lw,
                        (j + out[n, 1, j, i]) / lh,
                        np.exp(out[n, 2, j, i]) * biases[2 * mask[n]] / size,
                        np.exp(out[n, 3, j, i]) * biases[2 * mask[n] + 1] / size,
                    )
                    best_iou = max([0.0] + [centre_iou(pred, truth[:4]) for truth in truths])
                    delta[n, 4, j, i] = 0 if best_iou > ignore_thresh else 0 - out[n, 4, j, i]
        for x, y, w, h, label in truths:
            i, j = int(x * lw), int(y * lh)
            shapes = [
                centre_iou((0, 0, w, h), (0, 0, bw / size, bh / size))
                for bw, bh in zip(biases[::2], biases[1::2])
            ]
            best_n = int(np.argmax(shapes))  # the first of the best
            if best_n not in mask:
                continue
            n, scale = mask.index(best_n), 2 - w * h
            wanted = (
                x * lw - i,
                y * lh - j,
                np.log(w * size / biases[2 * best_n]),
                np.log(h * size / biases[2 * best_n + 1]),
            )
            for k in range(4):
                delta[n, k, j, i] = scale * (wanted[k] - out[n, k, j, i])
            delta[n, 4, j, i] = 1 - out[n, 4, j, i]
            if delta[n, 5, j, i]:  # another truth's classes are set: add this one's
                delta[n, 5 + label, j, i] = 1 - out[n, 5 + label, j, i]
            else:
                delta[n, 5:, j, i] = (np.arange(channels // 3 - 5) == label) - out[n, 5:, j, i]
        deltas.append(delta.reshape(channels, lh, lw))
    return deltas


def centre_iou(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    """box.c's box_iou on boxes of centre x, y and sides w, h."""
    lows = [max(a[k] - a[k + 2] / 2, b[k] - b[k + 2] / 2) for k in (0, 1)]
    highs = [min(a[k] + a[k + 2] / 2, b[k] + b[k + 2] / 2) for k in (0, 1)]
    sides = [high - low for low, high in zip(lows, highs)]
    inter = 0.0 if min(sides) < 0 else sides[0] * sides[1]
    return inter / (a[2] * a[3] + b[2] * b[3] - inter)


def test_yolov3_loss_gradient_is_darknets_delta() -> None:
    """The generated yolo_loss's gradient on random maps of two 96 x 96 images against the
    delta darknet's yolo layers backpropagate, transcribed in the test: boxes charged to each
    map, two in one anchor's cell (the last one's box, both classes), one that another map's
    anchor predicts past ignore_thresh, and an image without boxes."""
    size = 96
    module = load_generated(GENERATED / "torch" / "yolov3.py")
    generator = torch.Generator().manual_seed(0)
    maps = [
        torch.randn(2, 255, size // stride, size // stride, generator=generator).double() * 0.5
        for stride in (32, 16, 8)
    ]
    # stride 8's second anchor (16 x 30) in cell (5, 5) predicts a 62 x 45 box at (44, 44)
    maps[2][0, 85:89, 5, 5] = torch.tensor([0.0, 0.0, math.log(62 / 16), math.log(45 / 30)])
    for head in maps:
        head.requires_grad_()
    boxes = torch.tensor(
        [
            [3.0, 8.0, 93.0, 88.0],  # 90 x 80: stride 32's 116 x 90
            [30.0, 20.0, 60.0, 80.0],  # 30 x 60: stride 16's 30 x 61
            [40.0, 41.0, 52.0, 55.0],  # 12 x 14: stride 8's 10 x 13
            [41.0, 42.0, 53.0, 55.0],  # the same anchor and cell, another class
            [13.0, 21.5, 75.0, 66.5],  # stride 16's (62 x 45), the box stride 8 predicts
        ],
        dtype=torch.float64,
    )
    labels = torch.tensor([0, 5, 79, 3, 5])
    targets = [{"boxes": boxes, "labels": labels}, {"boxes": boxes[:0], "labels": labels[:0]}]
    image = torch.zeros(2, 3, size, size, dtype=torch.float64)
    module.yolo_loss(image, maps, targets, YOLO_ANCHORS, 0.7).backward()
    centres = ((boxes[:, :2] + boxes[:, 2:]) / 2 / size).tolist()
    sides = ((boxes[:, 2:] - boxes[:, :2]) / size).tolist()
    truths = [(*centre, *side, int(label)) for centre, side, label in zip(centres, sides, labels)]
    for index, image_truths in enumerate([truths, []]):
        heads = [head[index].detach().numpy() for head in maps]
        want = darknet_deltas(heads, size, image_truths, 0.7)
        for head, delta in zip(maps, want):
            np.testing.assert_allclose(-head.grad[index].numpy(), delta, atol=1e-12)
        if image_truths:
            assert all(delta[4::85].max() > 0 for delta in want)  # charged on each map
            assert want[2][85 + 4, 5, 5] == 0  # ignored
