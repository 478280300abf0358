"""The zoo against torchvision: counts, strict state_dict loading, outputs, FlopCounterMode."""

from __future__ import annotations

import functools
import importlib
import json
from pathlib import Path
from typing import Any

import pytest

torch = pytest.importorskip("torch")

from tests.helpers import (  # noqa: E402
    DETECTION_SETTINGS,
    GENERATED,
    archc_stats,
    box_masks,
    canonical_detections,
    canonical_order,
    compare,
    count_macs,
    load_generated,
    run_archc,
    spread_detections,
    torchvision,
)

# Each spec and the torchvision builder it reproduces (random init, no downloads).
TORCHVISION = {
    "resnet18": "resnet18",
    "resnet34": "resnet34",
    "resnet50": "resnet50",
    "resnet101": "resnet101",
    "resnet152": "resnet152",
    "alexnet": "alexnet",
    "vgg16": "vgg16",
    "squeezenet1_0": "squeezenet1_0",
    "squeezenet1_1": "squeezenet1_1",
    "mobilenet_v2": "mobilenet_v2",
    "googlenet": "googlenet",
    "inception_v3": "inception_v3",
    "mobilenet_v3_large": "mobilenet_v3_large",
    "mobilenet_v3_small": "mobilenet_v3_small",
    "efficientnet_b0": "efficientnet_b0",
    "shufflenet_v2_x1_0": "shufflenet_v2_x1_0",
    "densenet121": "densenet121",
    "vit_b_16": "vit_b_16",
    "swin_t": "swin_t",
    "convnext_tiny": "convnext_tiny",
    "regnet_x_400mf": "regnet_x_400mf",
    "deeplabv3_resnet50": "segmentation.deeplabv3_resnet50",
    "resnet50_fpn": "detection.backbone_utils.resnet_fpn_backbone",
}
# Builder arguments: no auxiliary heads; the default truncated-normal init is slow and moot.
BUILDER_KWARGS = {
    "googlenet": {"aux_logits": False, "init_weights": False},
    "inception_v3": {"aux_logits": False, "init_weights": False},
    "deeplabv3_resnet50": {"weights": None, "weights_backbone": None, "aux_loss": False},
    "resnet50_fpn": {"backbone_name": "resnet50", "weights": None},  # FrozenBatchNorm2d
}
# Params of a spec set with --set, and the torchvision model they give.
VARIANTS = [
    ("resnet50", ["num_classes=10"], "resnet50", {"num_classes": 10}),
    ("resnet50", ["width_per_group=128"], "wide_resnet50_2", {}),
    ("vgg16", ["depth=11"], "vgg11", {}),
    ("vgg16", ["depth=13"], "vgg13", {}),
    ("vgg16", ["depth=19"], "vgg19", {}),
    ("mobilenet_v2", ["width_mult=0.5"], "mobilenet_v2", {"width_mult": 0.5}),
    ("efficientnet_b0", ["resolution=160"], "efficientnet_b0", {}),
    ("efficientnet_b0", ["depth_mult=1.1", "resolution=240"], "efficientnet_b1", {}),
    (  # 5 x 5 windows tile no stage (56, 28, 14, 7): every map is padded to whole windows
        "swin_t",
        ["window=5"],
        "swin_transformer.SwinTransformer",
        {
            "patch_size": [4, 4],
            "embed_dim": 96,
            "depths": [2, 2, 6, 2],
            "num_heads": [3, 6, 12, 24],
            "window_size": [5, 5],
            "stochastic_depth_prob": 0.2,
        },
    ),
    # RegNetX's widths and depths come from the paper's rule in the spec: other settings of it
    # are the other models.
    ("regnet_x_400mf", ["depth=16", "w0=56", "wa=35.73", "wm=2.28"], "regnet_x_800mf", {}),
    (  # an op param with attributes, as torchvision's norm_layer=partial(…)
        "mobilenet_v3_small",
        ["norm={op: batch_norm, eps: 0.01, momentum: 0.2}"],
        "mobilenet_v3_small",
        {"norm_layer": functools.partial(torch.nn.BatchNorm2d, eps=0.01, momentum=0.2)},
    ),
    (  # an attribute bound before the width, as partial(nn.GroupNorm, 8)
        "mobilenet_v3_small",
        ["norm={op: group_norm, groups: 8}"],
        "mobilenet_v3_small",
        {"norm_layer": functools.partial(torch.nn.GroupNorm, 8)},
    ),
    (
        "efficientnet_b0",
        ["width_mult=1.2", "depth_mult=1.4", "resolution=300"],
        "efficientnet_b3",
        {},
    ),
]


def torchvision_builder(path: str) -> Any:
    """A torchvision model builder by its path under torchvision.models."""
    found = torchvision().models
    for part in path.split("."):
        found = getattr(found, part)
    return found


@pytest.mark.parametrize("name", TORCHVISION)
def test_spec_matches_torchvision(name: str) -> None:
    torch.manual_seed(0)
    reference = torchvision_builder(TORCHVISION[name])(**BUILDER_KWARGS.get(name, {}))
    generated = load_generated(GENERATED / "torch" / f"{name}.py").create_model()
    compare(reference, generated, archc_stats(f"specs/{name}.yaml"))


# Detectors up to their heads' raw outputs (weights=None, weights_backbone=None).
DETECTORS = [
    "retinanet_resnet50_fpn",
    "retinanet_resnet50_fpn_v2",
    "ssd300_vgg16",
    "ssdlite320_mobilenet_v3_large",
]


class DetectorHeads(torch.nn.Module):
    """A torchvision detector's backbone and head, named as in the detector's state_dict:
    the heads' raw outputs for an image batch already resized and normalised."""

    def __init__(self, detector: torch.nn.Module) -> None:
        super().__init__()
        self.backbone, self.head = detector.backbone, detector.head

    def forward(self, images: torch.Tensor) -> Any:
        return self.head(list(self.backbone(images).values()))


@pytest.mark.parametrize("name", DETECTORS)
def test_detector_heads_match_torchvision(name: str) -> None:
    torch.manual_seed(0)
    builder = torchvision_builder(f"detection.{name}")
    detector = builder(weights=None, weights_backbone=None)
    generated = load_generated(GENERATED / "torch" / f"{name}.py").create_model()
    assert generated.state_dict().keys() == detector.state_dict().keys()
    compare(DetectorHeads(detector), generated, archc_stats(f"specs/{name}.yaml"))


class RPNOutputs(torch.nn.Module):
    """torchvision's Faster R-CNN up to its RPN head's raw outputs, one row per anchor, as
    torchvision's own concat_box_prediction_layers lays them; it holds the RoI heads (the
    box head, which its detection stage feeds pooled proposals) without running them."""

    def __init__(self, detector: torch.nn.Module) -> None:
        super().__init__()
        self.backbone, self.rpn, self.roi_heads = (
            detector.backbone,
            detector.rpn,
            detector.roi_heads,
        )

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        objectness, deltas = self.rpn.head(list(self.backbone(images).values()))
        rpn = importlib.import_module("torchvision.models.detection.rpn")
        objectness, deltas = rpn.concat_box_prediction_layers(objectness, deltas)
        count = len(images)
        return {
            "objectness": objectness.reshape(count, -1, 1),
            "pred_bbox_deltas": deltas.reshape(count, -1, 4),
        }


class BoxHead(torch.nn.Module):
    """The RoI box head and predictor on pooled boxes (torchvision's, or the generated
    model's of the same names): class logits and deltas."""

    def __init__(self, roi_heads: torch.nn.Module) -> None:
        super().__init__()
        self.roi_heads = roi_heads

    def forward(self, pooled: torch.Tensor) -> dict[str, torch.Tensor]:
        logits, deltas = self.roi_heads.box_predictor(self.roi_heads.box_head(pooled))
        return {"class_logits": logits, "box_regression": deltas}


class MaskHead(BoxHead):
    """The RoI mask head and predictor on pooled boxes: each class's mask logits."""

    def forward(self, pooled: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"mask_logits": self.roi_heads.mask_predictor(self.roi_heads.mask_head(pooled))}


# The R-CNNs' modules that their detection stage feeds, each with the stage value whose rows
# it runs on and the size that value pools to.
FED_HEADS = {
    "fasterrcnn_resnet50_fpn": [(BoxHead, "features", 7)],
    "maskrcnn_resnet50_fpn": [(BoxHead, "features", 7), (MaskHead, "mask_features", 14)],
}


@pytest.mark.parametrize("name", FED_HEADS)
def test_rcnn_heads_match_torchvision(name: str) -> None:
    """An R-CNN: the network's counts and raw RPN outputs as the other detectors'; and the
    heads its detection stage feeds, modules of the model (their parameters counted,
    state_dict under roi_heads.*) whose MACs are counted per pooled box: their raw outputs
    (class logits and deltas, mask logits) on the same pooled boxes."""
    torch.manual_seed(0)
    detector = torchvision_builder(f"detection.{name}")(weights=None, weights_backbone=None)
    generated = load_generated(GENERATED / "torch" / f"{name}.py").create_model()
    assert generated.state_dict().keys() == detector.state_dict().keys()
    stats = archc_stats(f"specs/{name}.yaml")
    compare(RPNOutputs(detector), generated, stats)
    generator = torch.Generator().manual_seed(2)
    per_row = {}
    for head, rows, size in FED_HEADS[name]:
        pooled = torch.randn(3, 256, size, size, generator=generator)
        per_row[rows], _ = count_macs(head(detector.roi_heads), pooled[:1])
        with torch.no_grad():
            got, want = head(generated.roi_heads)(pooled), head(detector.roi_heads)(pooled)
        assert got.keys() == want.keys()
        for key, value in got.items():
            assert (value - want[key]).abs().max() <= 1e-5, key
    assert stats["coverage"]["macs_per_row"] == per_row


def pure_nms(boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float) -> torch.Tensor:
    """Greedy NMS for the reference in place of torchvision's compiled kernel, which this
    CPU-only torchvision cannot load: each box in score order suppresses those it overlaps."""
    keep, suppressed = [], torch.zeros(len(boxes), dtype=torch.bool)
    for index in scores.argsort(descending=True).tolist():
        if not suppressed[index]:
            keep.append(index)
            overlaps = torchvision().ops.box_iou(boxes[index : index + 1], boxes)[0]
            suppressed |= overlaps > iou_threshold
    return torch.tensor(keep, dtype=torch.int64)


def kernel_roi_align(monkeypatch: pytest.MonkeyPatch) -> None:
    """torchvision's roi_align as its compiled kernels compute it. Without them (this
    CPU-only torchvision) it falls back to a pure-torch transcription, compiled on first use,
    that samples past the map's edge where the kernels read zero (a sample beyond -1 or the
    map's size), and that with the adaptive sampling ratio (sampling_ratio -1, Mask R-CNN's
    mask targets) samples every bin as often as the map has pixels (rois x 28² x 320², out
    of memory): the test runs that transcription uncompiled, with the kernels' rule, and the
    adaptive ratio one roi at a time, as the kernels loop."""
    torchvision()  # imported as tests must here, first
    module = importlib.import_module("torchvision.ops.roi_align")
    plain, exact = module._bilinear_interpolate, module._roi_align.__wrapped__

    def bilinear(features: torch.Tensor, owners: Any, y: Any, x: Any, *masks: Any) -> Any:
        height, width = features.shape[-2:]
        values = plain(features, owners, y, x, *masks)  # (K, C, PH, PW, IY, IX)
        y_out, x_out = (y < -1) | (y > height), (x < -1) | (x > width)
        outside = y_out[:, None, :, None, :, None] | x_out[:, None, None, :, None, :]
        return values.masked_fill(outside, 0)

    def roi_align(features: torch.Tensor, rois: torch.Tensor, scale: float, *rest: Any) -> Any:
        pooled_height, pooled_width, sampling_ratio, aligned = rest
        if sampling_ratio > 0:
            return exact(features, rois, scale, *rest)
        offset = 0.5 if aligned else 0.0
        sizes = torch.tensor([pooled_width, pooled_height])
        pooled = [features.new_zeros(0, features.shape[1], pooled_height, pooled_width)]
        for roi in rois:
            start, end = roi[1:3] * scale - offset, roi[3:5] * scale - offset
            bins = ((end - start) if aligned else (end - start).clamp(min=1.0)) / sizes
            grid = torch.ceil(bins).int()
            x, y = (
                start[axis]
                + torch.arange(sizes[axis])[:, None] * bins[axis]
                + (torch.arange(grid[axis]) + 0.5)[None] * bins[axis] / grid[axis]
                for axis in (0, 1)
            )  # as the kernels round: ((i + 0.5) * bin) / grid
            values = bilinear(features, roi[:1].int(), y[None], x[None], None, None)
            pooled.append(values.sum((-1, -2)) / max(int(grid.prod()), 1))
        return torch.cat(pooled)

    monkeypatch.setattr(module, "_bilinear_interpolate", bilinear)
    monkeypatch.setattr(module, "_roi_align", roi_align)


# Each detector's image size for the stage tests, and the settings that make torchvision's
# transform only normalise images of that size.
STAGES = {
    "retinanet_resnet50_fpn": (320, {"min_size": 320, "max_size": 320}),
    "retinanet_resnet50_fpn_v2": (320, {"min_size": 320, "max_size": 320}),
    "ssd300_vgg16": (300, {}),  # resized to 300 x 300 whatever the settings
    "ssdlite320_mobilenet_v3_large": (320, {}),  # likewise, 320 x 320
    "fasterrcnn_resnet50_fpn": (320, {"min_size": 320, "max_size": 320}),
}
MASK_STAGE = {"maskrcnn_resnet50_fpn": STAGES["fasterrcnn_resnet50_fpn"]}  # its own test


def detector_pair(
    name: str, folder: Path = GENERATED, **settings: Any
) -> tuple[torch.nn.Module, torch.nn.Module]:
    """torchvision's detector (weights=None) and the generated model (from `folder`) with its
    state_dict."""
    torch.manual_seed(0)
    builder = torchvision_builder(f"detection.{name}")
    fixed_size = {**STAGES, **MASK_STAGE}[name][1]
    detector = builder(weights=None, weights_backbone=None, **fixed_size, **settings)
    module = load_generated(folder / "torch" / f"{name}.py")
    generated = module.create_model(**settings)
    generated.load_state_dict(detector.state_dict(), strict=True)
    return detector, generated


@pytest.mark.parametrize("name", STAGES)
def test_detections_match_torchvision(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """detect() against the detector in eval on raw images: the same boxes, scores and
    labels in the same order."""
    monkeypatch.setattr(torchvision().ops.boxes, "nms", pure_nms)
    kernel_roi_align(monkeypatch)
    size = STAGES[name][0]
    detector, generated = detector_pair(name, **DETECTION_SETTINGS[name])
    images = torch.rand(2, 3, size, size, generator=torch.Generator().manual_seed(3))
    normalised = detector.transform(list(images))[0].tensors
    assert normalised.shape == images.shape
    spread_detections(detector, name, lambda model: DetectorHeads(model)(normalised))
    generated.load_state_dict(detector.state_dict(), strict=True)
    with torch.no_grad():
        expected = detector.eval()(list(images))
        found = generated.eval().detect(normalised)
    for rows, want in zip(found, expected):
        # best first; rows of one score (degenerate boxes clipped alike) in one order
        rows = torch.as_tensor(canonical_detections(rows[rows[:, 5] >= 0]))
        columns = [want["boxes"], want["scores"][:, None], want["labels"][:, None]]
        want = torch.as_tensor(canonical_detections(torch.cat(columns, dim=1).float()))
        assert len(want) == len(rows) >= 100
        # boxes within 1e-4 and 1e-5 of their size (the rounding of a box head's deltas)
        assert torch.allclose(rows[:, :4], want[:, :4], atol=1e-4, rtol=1e-5)
        assert torch.allclose(rows[:, 4], want[:, 4], atol=1e-6)
        assert torch.equal(rows[:, 5], want[:, 5])


def test_mask_rcnn_masks_match_torchvision(monkeypatch: pytest.MonkeyPatch) -> None:
    """Mask R-CNN's detect() against the detector in eval on a raw image: its detections as
    Faster R-CNN's, and each one's mask, pasted into the image (probabilities within 1e-4:
    its features pool from boxes equal to 1e-4)."""
    monkeypatch.setattr(torchvision().ops.boxes, "nms", pure_nms)
    kernel_roi_align(monkeypatch)
    settings = {"box_score_thresh": 0.0, "box_detections_per_img": 40}
    detector, generated = detector_pair("maskrcnn_resnet50_fpn", **settings)
    image = torch.rand(1, 3, 320, 320, generator=torch.Generator().manual_seed(3))
    normalised = detector.transform(list(image))[0].tensors
    with torch.no_grad():
        want = detector.eval()(list(image))[0]
        found = generated.eval().detect(normalised)
    rows = found["detections"][0]
    columns = [want["boxes"], want["scores"][:, None], want["labels"][:, None].float()]
    wanted = torch.cat(columns, dim=1)
    order, wanted_order = canonical_order(rows), canonical_order(wanted)
    assert len(wanted) == len(rows) == 40
    assert torch.allclose(rows[order, :4], wanted[wanted_order, :4], atol=1e-4, rtol=1e-5)
    assert torch.equal(rows[order, 5], wanted[wanted_order, 5])
    masks, wanted_masks = found["masks"][0][order], want["masks"][wanted_order, 0]
    assert masks.shape == wanted_masks.shape == (40, 320, 320)
    assert (masks - wanted_masks).abs().max() <= 1e-4
    assert (wanted_masks > 0).sum(dim=(1, 2)).min() > 0  # every mask covers pixels


def test_paste_masks_is_torchvisions() -> None:
    """The generated paste_masks on masks and boxes of every kind (inside the image, across
    its edges, of no size, past the detections) against torchvision's paste_masks_in_image
    on each detection's mask of its label (sigmoid)."""
    module = load_generated(GENERATED / "torch" / "maskrcnn_resnet50_fpn.py")
    generator = torch.Generator().manual_seed(4)
    boxes = random_boxes(12, 96, generator) * 1.5 - 20  # some across the edges
    boxes[0] = torch.tensor([30.0, 40.0, 30.0, 40.0])  # of no size
    labels = torch.randint(0, 5, (12, 1), generator=generator).float()
    labels[-2:] = -1  # past the detections
    detections = torch.cat([boxes, torch.rand(12, 1, generator=generator), labels], dim=1)
    logits = torch.randn(12, 5, 28, 28, generator=generator) * 4
    image = torch.zeros(1, 3, 96, 112)
    pasted = module.paste_masks(image, logits, detections[None])[0]
    chosen = logits[torch.arange(10), labels[:10, 0].long()].sigmoid()[:, None]
    roi_heads = importlib.import_module("torchvision.models.detection.roi_heads")
    want = roi_heads.paste_masks_in_image(chosen, boxes[:10], (96, 112))[:, 0]
    # within 1e-6 or so: torch's CPU kernel fuses its source index into an FMA (an ulp apart)
    assert (pasted[:10] - want).abs().max() <= 1e-5
    assert (want > 0).sum(dim=(1, 2)).min() > 0 and not pasted[10:].any()


def test_crop_masks_is_torchvisions(monkeypatch: pytest.MonkeyPatch) -> None:
    """The generated crop_masks (Mask R-CNN's mask targets) on boxes of every kind (long,
    small, of no size, across the edges) against torchvision's project_masks_on_boxes
    (RoIAlign with the adaptive sampling ratio, as its kernels compute it)."""
    kernel_roi_align(monkeypatch)
    module = load_generated(GENERATED / "torch" / "maskrcnn_resnet50_fpn.py")
    generator = torch.Generator().manual_seed(6)
    boxes = random_boxes(12, 96, generator)[:, [1, 0, 3, 2]] * torch.tensor([1.0, 0.8, 1.0, 0.8])
    boxes[:4] -= 30  # across the top and left edges
    boxes[4] = torch.tensor([30.0, 40.0, 30.0, 40.0])  # of no size
    boxes[5] = torch.tensor([10.0, 10.0, 10.5, 10.7])  # under a pixel
    masks = (torch.rand(12, 80, 96, generator=generator) < 0.5).to(torch.uint8)
    roi_heads = importlib.import_module("torchvision.models.detection.roi_heads")
    want = roi_heads.project_masks_on_boxes(masks, boxes, torch.arange(12), 28)
    cropped = module.crop_masks(masks.float(), boxes, 28)
    assert (cropped - want).abs().max() <= 1e-6
    assert want[6:].std() > 0.1  # the crops of real boxes vary


def random_boxes(count: int, size: int, generator: torch.Generator) -> torch.Tensor:
    """Boxes (x1, y1, x2, y2) of 16 to 116 pixels a side inside a size x size image."""
    corners = torch.rand(count, 2, generator=generator) * (size - 80)
    sides = 16 + torch.rand(count, 2, generator=generator) * 100
    return torch.cat([corners, (corners + sides).clamp(max=size)], dim=1)


@pytest.mark.parametrize("name", DETECTORS)
def test_losses_match_torchvision(name: str) -> None:
    """loss() against the detector in training on the same images and targets (one image
    with three boxes, one with none): its classification and box regression losses."""
    assert_losses_match(*detector_pair(name), STAGES[name][0])


def test_giou_loss_gradient_matches_torchvision() -> None:
    """retinanet_resnet50_fpn_v2's box loss (GIoU) against torchvision's: its gradient on the
    box head's last conv, from the targets of the loss test."""
    name = "retinanet_resnet50_fpn_v2"
    detector, generated = detector_pair(name)
    losses, expected = assert_losses_match(detector, generated, STAGES[name][0])
    losses["bbox_regression"].backward()
    expected["bbox_regression"].backward()
    found = generated.head.regression_head.bbox_reg.weight.grad
    want = detector.head.regression_head.bbox_reg.weight.grad
    assert want.abs().max() > 0
    assert torch.allclose(found, want, rtol=1e-4, atol=1e-6 * want.abs().max())


def assert_losses_match(
    detector: torch.nn.Module, generated: torch.nn.Module, size: int
) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """The generated model's losses and the detector's, after checking that they are equal."""
    generator = torch.Generator().manual_seed(3)
    images = torch.rand(2, 3, size, size, generator=generator)
    targets = [
        {"boxes": random_boxes(3, size, generator), "labels": torch.tensor([1, 5, 90])},
        {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)},
    ]
    expected = detector.train()(list(images), targets)
    normalised = detector.transform(list(images))[0].tensors
    losses = generated.train().loss(normalised, targets)
    assert losses.keys() == expected.keys() == {"classification", "bbox_regression"}
    for key, value in losses.items():
        assert torch.allclose(value, expected[key], rtol=1e-5), key
    assert losses["bbox_regression"] > 0
    return losses, expected


@pytest.mark.parametrize("name", FED_HEADS)
def test_rcnn_losses_match_torchvision(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """loss() against the detector's RPN and RoI heads in training on the same images and
    targets (one image with three boxes and their masks, one with none), both drawing their
    samples of anchors and proposals from torch's generator seeded alike: the RPN's and box
    head's four losses, and Mask R-CNN's mask loss. The reference's transform runs before the
    seed, since in training it draws each image's size."""
    monkeypatch.setattr(torchvision().ops.boxes, "nms", pure_nms)
    kernel_roi_align(monkeypatch)
    detector, generated = detector_pair(name)
    generator = torch.Generator().manual_seed(3)
    images = torch.rand(2, 3, 320, 320, generator=generator)
    boxes = random_boxes(3, 320, generator)
    targets = [
        {"boxes": boxes, "labels": torch.tensor([1, 5, 90]), "masks": box_masks(boxes, 320)},
        {
            "boxes": torch.zeros(0, 4),
            "labels": torch.zeros(0, dtype=torch.int64),
            "masks": torch.zeros(0, 320, 320, dtype=torch.uint8),
        },
    ]
    batch, resized = detector.train().transform(list(images), targets)
    torch.manual_seed(7)
    features = detector.backbone(batch.tensors)
    proposals, expected = detector.rpn(batch, features, resized)
    expected.update(detector.roi_heads(features, proposals, batch.image_sizes, resized)[1])
    torch.manual_seed(7)
    losses = generated.train().loss(batch.tensors, targets)
    assert losses.keys() == expected.keys()
    for key, value in losses.items():
        # The classifier's cross-entropy over 512 sampled rows of 91 logits, each from 12,544
        # pooled features, is float32 noise apart: Mask R-CNN's 3.5e-5 relative on an AVX2
        # CPU (2e-6 on others, and Faster R-CNN's 2e-6); the other losses agree to 1e-7.
        rtol = 1e-4 if key == "loss_classifier" else 1e-5
        assert torch.allclose(value, expected[key], rtol=rtol), key
    torch.manual_seed(8)  # other draws sample other background rows
    assert generated.loss(batch.tensors, targets)["loss_objectness"] != losses["loss_objectness"]


def test_swin_pads_maps_its_windows_do_not_tile() -> None:
    """At 320 x 320 the stages are 80, 40, 20 and 10 wide: 7 x 7 windows tile none of them, so
    torchvision pads each map to whole windows; archc's counts and the generated code agree."""
    torch.manual_seed(0)
    reference = torchvision().models.swin_t()
    generated = load_generated(GENERATED / "torch" / "swin_t.py").create_model()
    stats = run_archc("stats", "specs/swin_t.yaml", "--input", "320", "--format", "json")
    assert stats.returncode == 0, stats.stderr
    compare(reference, generated, json.loads(stats.stdout))


@pytest.mark.parametrize(
    ("name", "overrides", "builder", "kwargs"),
    VARIANTS,
    ids=[f"{name}-{','.join(overrides)}" for name, overrides, *_ in VARIANTS],
)
def test_set_override_matches_torchvision(
    name: str, overrides: list[str], builder: str, kwargs: dict, tmp_path: Path
) -> None:
    spec = f"specs/{name}.yaml"
    sets = [f"--set={item}" for item in overrides]
    build = run_archc("build", spec, "-o", str(tmp_path), *sets)
    assert build.returncode == 0, build.stderr
    generated = load_generated(tmp_path / "torch" / f"{name}.py").create_model()
    torch.manual_seed(0)
    reference = torchvision_builder(builder)(**kwargs)
    compare(reference, generated, archc_stats(spec, *overrides))


def test_create_model_overrides_match_the_set_build() -> None:
    """create_model(**overrides) on the committed file builds what --set builds."""
    module = load_generated(GENERATED / "torch" / "resnet50.py")
    wide = module.create_model(width_per_group=128)
    reference = torchvision().models.wide_resnet50_2()
    wide.load_state_dict(reference.state_dict(), strict=True)
    assert sum(p.numel() for p in wide.parameters()) == 68_883_240


def test_generated_code_computes_the_regnet_rule() -> None:
    """The committed regnet_x_400mf.py computes its widths and depths from the rule, so
    create_model with RegNetX-1.6GF's settings builds torchvision's regnet_x_1_6gf."""
    settings = {"depth": 18, "w0": 80, "wa": 34.01, "wm": 2.25, "group_width": 24}
    generated = load_generated(GENERATED / "torch" / "regnet_x_400mf.py").create_model(**settings)
    torch.manual_seed(0)
    reference = torchvision().models.regnet_x_1_6gf()
    sets = [f"{key}={value}" for key, value in settings.items()]
    compare(reference, generated, archc_stats("specs/regnet_x_400mf.yaml", *sets))


def test_activation_count_matches_traced_outputs() -> None:
    """archc's activation elements == the summed output sizes of the traced generated module."""
    from torch.fx import symbolic_trace
    from torch.fx.passes.shape_prop import ShapeProp

    model = load_generated(GENERATED / "torch" / "resnet18.py").create_model().eval()
    traced = symbolic_trace(model)
    ShapeProp(traced).propagate(torch.randn(1, 3, 224, 224))
    computed = [
        node
        for node in traced.graph.nodes
        if node.op in ("call_module", "call_function", "call_method")
    ]
    traced_total = sum(node.meta["tensor_meta"].shape.numel() for node in computed)
    assert archc_stats("specs/resnet18.yaml")["activations"] == traced_total


def test_stochastic_depth_helper_draws_as_torchvision_does() -> None:
    """The generated StochasticDepth equals torchvision's in training (same draws, same
    scaling) and is the identity in eval."""
    model = load_generated(GENERATED / "torch" / "efficientnet_b0.py")
    ours, theirs = model.StochasticDepth(0.3), torchvision().ops.StochasticDepth(0.3, "row")
    example = torch.randn(64, 4, 3, 3)
    outputs = []
    for module in (ours, theirs):
        torch.manual_seed(5)
        outputs.append(module.train()(example))
    assert torch.equal(outputs[0], outputs[1])
    assert 0 < (outputs[0] == 0).all(dim=(1, 2, 3)).sum() < 64
    assert torch.equal(ours.eval()(example), example)


@pytest.mark.parametrize("name", ["vit_b_16", "swin_t"])
def test_attention_macs_are_the_references_batched_matmuls(name: str) -> None:
    """The MACs `archc stats` lists by kind against FlopCounterMode's per-op counts on the
    reference: convolutions, linear layers (addmm, mm) and attention's matmuls (bmm)."""
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.utils.flop_counter import FlopCounterMode

    model = getattr(torchvision().models, name)().eval()
    with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
        model(torch.randn(1, 3, 224, 224))
    counts = {str(op): flops // 2 for op, flops in counter.get_flop_counts()["Global"].items()}
    kinds = archc_stats(f"specs/{name}.yaml")["macs_by_kind"]
    assert kinds["attention"] == counts["aten.bmm"]
    assert kinds["linear"] == counts["aten.addmm"] + counts.get("aten.mm", 0)
    assert kinds["conv"] == counts["aten.convolution"]


def test_stats_per_module_match_the_references_modules() -> None:
    """`stats --depth 2`: each module's params, MACs and output shape equal the reference's
    submodule at that path (its parameters, FlopCounterMode's per-module count, a hook)."""
    from torch.utils.flop_counter import FlopCounterMode

    result = run_archc("stats", "specs/resnet50.yaml", "--depth", "2", "--format", "json")
    assert result.returncode == 0, result.stderr
    blocks = json.loads(result.stdout)["blocks"]
    assert "layer3.5" in blocks and "layer3.5.conv1" not in blocks
    reference = torchvision().models.resnet50().eval()
    modules = dict(reference.named_modules())
    assert [path for path in blocks if path not in modules] == ["flatten"]  # torch.flatten
    shapes: dict[str, Any] = {}

    def record(module: Any, inputs: Any, output: Any) -> None:
        shapes.setdefault(module, output.shape)

    for path in [path for path in blocks if path in modules]:
        modules[path].register_forward_hook(record)
    with FlopCounterMode(display=False) as counter:
        reference(torch.randn(1, 3, 224, 224))
    counts = counter.get_flop_counts().items()
    flops = {key.removeprefix("ResNet."): sum(ops.values()) for key, ops in counts}
    for path, row in blocks.items():
        if path in modules:
            assert row["params"] == sum(p.numel() for p in modules[path].parameters()), path
            assert row["macs"] == flops.get(path, 0) // 2, path
            shape = shapes[modules[path]][1:]
            assert row["output"] == "f32[N," + ",".join(map(str, shape)) + "]", path


def test_per_layer_input_and_kernel_shapes_are_the_modules() -> None:
    """`stats --per-layer`: each node's input types and kernel (weight) shape equal what the
    generated module at that path is given and holds."""
    result = run_archc("stats", "specs/resnet18.yaml", "--format", "json")
    nodes = json.loads(result.stdout)["nodes"]
    model = load_generated(GENERATED / "torch" / "resnet18.py").create_model().eval()
    modules = dict(model.named_modules())
    given: dict[Any, Any] = {}

    def record(module: Any, inputs: Any) -> None:
        given.setdefault(module, [tuple(value.shape[1:]) for value in inputs])

    for node in nodes:
        if node["name"] in modules:
            modules[node["name"]].register_forward_pre_hook(record)
    model(torch.randn(1, 3, 224, 224))
    checked = 0
    for node in nodes:
        module = modules.get(node["name"])
        if module is None:  # written inline in forward (the flatten, the residual sums)
            continue
        shapes = [tuple(int(d) for d in kind[4:-1].split(",")[1:]) for kind in node["inputs"]]
        assert shapes == given[module], node["name"]
        weight = getattr(module, "weight", None)
        expected = list(weight.shape) if weight is not None and weight.ndim > 1 else None
        assert node["kernel"] == expected, node["name"]
        checked += 1
    assert checked == len(nodes) - 1 - 8  # flatten, and the eight residual sums
