"""Ops of detectors: a head's maps as one row per anchor, and the detection stage after the
network (anchors, and the detections selected from the head's rows), which runs in the
generated model's `detect()`, not in its forward."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from archc.ir.graph import TensorType
from archc.ir.symbolic import concrete, source
from archc.ops import register
from archc.ops.attributes import NUMBER_LISTS, NUMBERS, Range
from archc.ops.base import Attrs, Count, Epsilon, NoAttrs, Op, expect_channel_groups, expect_rank
from archc.ops.lowering import InlineCall


class AnchorRowsAttrs(Attrs):
    size: Count
    """The values each anchor has: its class scores, or its 4 box coordinates."""


@register
class AnchorRows(Op):
    name = "anchor_rows"
    Attrs = AnchorRowsAttrs
    summary = (
        "a head's map as one row per anchor: (N, A·size, H, W) to (N, H·W·A, size), positions "
        "row-major and each position's anchors in turn (torchvision's detection heads)"
    )

    def check(self, attrs: AnchorRowsAttrs, inputs: list[TensorType]) -> list[str]:
        return expect_channel_groups(inputs, "size", attrs.size)

    def infer(self, attrs: AnchorRowsAttrs, inputs: list[TensorType]) -> TensorType:
        n, channels, height, width = inputs[0].shape
        return TensorType((n, height * width * (channels // attrs.size), attrs.size))

    def macs(self, attrs: AnchorRowsAttrs, inputs: list[TensorType], output: TensorType) -> int:
        return 0  # a reshape

    def lower_torch(self, attrs: AnchorRowsAttrs, inputs: list[TensorType]) -> InlineCall:
        size = source(attrs.size)
        return InlineCall(f"{{0}}.permute(0, 2, 3, 1).reshape({{0}}.shape[0], -1, {size})")

    def lower_flax(self, attrs: AnchorRowsAttrs, inputs: list[TensorType]) -> InlineCall:
        return InlineCall(f"{{0}}.reshape({{0}}.shape[0], -1, {source(attrs.size)})")  # NHWC


class StageOp(Op):
    """An op of the detection stage (`postprocess:`), which runs after the network and is
    counted apart from it: no MACs."""

    stage = True

    def macs(self, attrs: Attrs, inputs: list[TensorType], output: TensorType) -> int:
        return 0


class Selection(StageOp):
    """A stage op that selects the detections, which `detect()` returns: (N, limit, 6) rows
    of x1, y1, x2, y2, score, label, best first, label -1 past an image's detections."""

    method = "detect"

    def infer(self, attrs: Attrs, inputs: list[TensorType]) -> TensorType:
        return TensorType((inputs[0].shape[0], attrs.limit, 6))


class Loss(StageOp):
    """A training loss of the stage: a scalar against the targets, which `loss()` returns,
    computed by the helper of the op's name from its inputs, the targets and its settings."""

    method = "loss"
    reads_targets = True

    def infer(self, attrs: Attrs, inputs: list[TensorType]) -> TensorType:
        return TensorType(())

    def lower_torch(self, attrs: Attrs, inputs: list[TensorType]) -> InlineCall:
        arguments = [f"{{{index}}}" for index in range(len(inputs))]
        arguments += ["targets"] if self.reads_targets else []
        if settings := _settings(attrs):
            arguments.append(settings)
        return InlineCall(f"{self.name}({', '.join(arguments)})")

    lower_flax = lower_torch


class ClassificationLoss(Loss):
    """A loss of the class logits per anchor row, against the rows' matched boxes."""

    arity = 2

    def check(self, attrs: Attrs, inputs: list[TensorType]) -> list[str]:
        return _rows(inputs[0], inputs[1], "logits")


class BoxLoss(Loss):
    """A loss of the box deltas per anchor row, against the matched boxes' encodings."""

    arity = 3

    def check(self, attrs: Attrs, inputs: list[TensorType]) -> list[str]:
        deltas, anchors, matched = inputs
        return (
            _boxes(deltas, "deltas")
            or _boxes(anchors, "anchors")
            or _rows(deltas, matched)
            or _rows(anchors, matched, "anchors")
        )


class AnchorsAttrs(Attrs):
    size: Count
    """The first level's anchor side in pixels; each later level's is twice the one before."""
    scales: Count = 1
    """Sides per level, an octave apart in even steps: side·2^(j/scales), truncated."""
    aspect_ratios: Annotated[NUMBERS, Range(0, above=True)] = (0.5, 1.0, 2.0)
    """Height over width of the anchors of each side."""


@register
class Anchors(StageOp):
    name = "anchors"
    takes_list = True
    arity = None
    Attrs = AnchorsAttrs
    summary = (
        "anchor boxes (x1, y1, x2, y2) at every position of each level, read after the image, "
        "as torchvision's AnchorGenerator lays them: (N, rows, 4), a stage op"
    )

    def check(self, attrs: AnchorsAttrs, inputs: list[TensorType]) -> list[str]:
        return _each_of_rank(inputs, 4, "NCHW")

    def infer(self, attrs: AnchorsAttrs, inputs: list[TensorType]) -> TensorType:
        per_position = attrs.scales * len(attrs.aspect_ratios)
        positions = sum(kind.shape[2] * kind.shape[3] for kind in inputs[1:])
        return TensorType((inputs[0].shape[0], positions * per_position, 4))

    def lower_torch(self, attrs: AnchorsAttrs, inputs: list[TensorType]) -> InlineCall:
        levels = ", ".join(f"{{{index}}}" for index in range(1, len(inputs)))
        ratios = repr(tuple(attrs.aspect_ratios))
        return InlineCall(
            f"grid_anchors({{0}}, [{levels}], {source(attrs.size)}, {source(attrs.scales)}, "
            f"{ratios})"
        )

    lower_flax = lower_torch


class DetectionsAttrs(Attrs):
    score_thresh: Annotated[float, Range(0, 1)] = 0.05
    """A class score (sigmoid) must be above it to be a candidate."""
    candidates: Count = 1000
    """On each level, the best scoring candidates kept before NMS."""
    iou_thresh: Annotated[float, Range(0, 1)] = 0.5
    """NMS drops a box that overlaps a better one of its class by more than this (IoU)."""
    limit: Count = 300
    """The detections kept per image, best first."""


@register
class Detections(Selection):
    name = "detections"
    takes_list = True
    arity = None
    Attrs = DetectionsAttrs
    summary = (
        "RetinaNet's detections: from the image, class logits and box deltas per anchor row, "
        "the anchors and the levels, the best per level over the score threshold decoded, "
        "clipped and NMS'd per class; (N, limit, 6) rows of x1, y1, x2, y2, score, label "
        "(-1 past an image's detections), a stage op"
    )

    def check(self, attrs: DetectionsAttrs, inputs: list[TensorType]) -> list[str]:
        if len(inputs) < 5:
            return ["reads the image, logits, deltas, anchors and one or more levels"]
        image, logits, deltas, anchors, *levels = inputs
        problems = _each_of_rank([image, *levels], 4, "NCHW")
        problems += _each_of_rank([logits, deltas, anchors], 3, "rows (N, rows, values)")
        if problems:
            return problems
        rows = {concrete(kind.shape[1]) for kind in (logits, deltas, anchors)}
        if len(rows) > 1 or concrete(deltas.shape[2]) != 4 or concrete(anchors.shape[2]) != 4:
            return [
                f"logits, deltas and anchors need one row per anchor, deltas and anchors 4 "
                f"values each: got {logits}, {deltas} and {anchors}"
            ]
        positions = sum(concrete(kind.shape[2] * kind.shape[3]) for kind in levels)
        if rows.pop() % positions:
            return [f"the rows must be a whole number of anchors per level position ({positions})"]
        return []

    def lower_torch(self, attrs: DetectionsAttrs, inputs: list[TensorType]) -> InlineCall:
        levels = ", ".join(f"{{{index}}}" for index in range(4, len(inputs)))
        return InlineCall(
            f"select_detections({{0}}, {{1}}, {{2}}, {{3}}, [{levels}], {_settings(attrs)})"
        )

    lower_flax = lower_torch


class DefaultBoxesAttrs(Attrs):
    aspect_ratios: Annotated[NUMBER_LISTS, Range(0, above=True)]
    """Per level, the ratios r beyond 1: each adds a box of width s·√r, height s/√r and its
    transpose to the level's two squares."""
    scales: Annotated[NUMBERS, Range(0, above=True)] | None = None
    """Per level and one past the last, the box scale s as a fraction of the image; without
    it, even steps from min_ratio to max_ratio, then 1."""
    min_ratio: Annotated[float, Range(0, above=True)] = 0.15
    """The first level's scale when scales are not given."""
    max_ratio: Annotated[float, Range(0, above=True)] = 0.9
    """The last level's scale when scales are not given."""
    steps: Annotated[NUMBERS, Range(0, above=True)] | None = None
    """Per level, the image pixels between box centres; without it, the image over the map."""
    clip: bool = True
    """Whether the box sides are clipped to the image (as fractions, before the corners)."""


@register
class DefaultBoxes(StageOp):
    name = "default_boxes"
    takes_list = True
    arity = None
    Attrs = DefaultBoxesAttrs
    summary = (
        "SSD's default boxes (x1, y1, x2, y2) at every position of each level, read after the "
        "image, as torchvision's DefaultBoxGenerator lays them: two squares and two boxes per "
        "aspect ratio; (N, rows, 4), a stage op"
    )

    def check(self, attrs: DefaultBoxesAttrs, inputs: list[TensorType]) -> list[str]:
        levels = len(inputs) - 1
        counts = {
            "aspect_ratios": (concrete(attrs.aspect_ratios), levels),
            "scales": (concrete(attrs.scales), levels + 1),
            "steps": (concrete(attrs.steps), levels),
        }
        for key, (values, wanted) in counts.items():
            if values is not None and len(values) != wanted:
                return [f"{key} needs {wanted} values for {levels} levels, got {len(values)}"]
        return _each_of_rank(inputs, 4, "NCHW")

    def infer(self, attrs: DefaultBoxesAttrs, inputs: list[TensorType]) -> TensorType:
        ratios = concrete(attrs.aspect_ratios)
        rows = sum(
            kind.shape[2] * kind.shape[3] * (2 + 2 * len(level))
            for kind, level in zip(inputs[1:], ratios)
        )
        return TensorType((inputs[0].shape[0], rows, 4))

    def lower_torch(self, attrs: DefaultBoxesAttrs, inputs: list[TensorType]) -> InlineCall:
        levels = ", ".join(f"{{{index}}}" for index in range(1, len(inputs)))
        return InlineCall(f"default_boxes({{0}}, [{levels}], {_settings(attrs)})")

    lower_flax = lower_torch


class SoftmaxDetectionsAttrs(Attrs):
    score_thresh: Annotated[float, Range(0, 1)] = 0.01
    """A class score (softmax) must be above it to be a candidate."""
    candidates: Count = 400
    """For each class, the best scoring candidates kept before NMS."""
    iou_thresh: Annotated[float, Range(0, 1)] = 0.45
    """NMS drops a box that overlaps a better one of its class by more than this (IoU)."""
    limit: Count = 200
    """The detections kept per image, best first."""
    weights: Annotated[NUMBERS, Range(0, above=True)] = (10.0, 10.0, 5.0, 5.0)
    """The box coder's weights: the deltas (dx, dy, dw, dh) are divided by them."""


@register
class SoftmaxDetections(Selection):
    name = "softmax_detections"
    arity = 4
    Attrs = SoftmaxDetectionsAttrs
    summary = (
        "SSD's detections: from the image, class logits and box deltas per row and the boxes, "
        "softmax scores, for each class but the background (0) the best over the score "
        "threshold, decoded, clipped and NMS'd per class; (N, limit, 6) rows of x1, y1, x2, "
        "y2, score, label (-1 past an image's detections), a stage op"
    )

    def check(self, attrs: SoftmaxDetectionsAttrs, inputs: list[TensorType]) -> list[str]:
        image, logits, deltas, boxes = inputs
        if len(concrete(attrs.weights)) != 4:
            return [f"weights needs 4 values (dx, dy, dw, dh), got {len(attrs.weights)}"]
        problems = expect_rank([image], 4, "NCHW")
        problems = problems or _boxes(deltas, "deltas") or _boxes(boxes, "boxes")
        if problems or logits.rank != 3 or concrete(logits.shape[1]) != concrete(deltas.shape[1]):
            return problems or [f"logits {logits} and deltas {deltas} need one row per box"]
        if concrete(deltas.shape[1]) != concrete(boxes.shape[1]):
            return [f"deltas {deltas} and boxes {boxes} need one row per box"]
        return []

    def lower_torch(self, attrs: SoftmaxDetectionsAttrs, inputs: list[TensorType]) -> InlineCall:
        return InlineCall(f"softmax_detections({{0}}, {{1}}, {{2}}, {{3}}, {_settings(attrs)})")

    lower_flax = lower_torch


class YoloDetectionsAttrs(Attrs):
    anchors: Annotated[NUMBER_LISTS, Range(0, above=True)]
    """Per map, its anchors' sizes in input pixels as w, h pairs: `[116, 90, 156, 198]`."""
    score_thresh: Annotated[float, Range(0, 1)] = 0.005
    """A class's score (objectness times class probability) must be above it."""
    candidates: Count = 1000
    """For each class, the best scoring candidates kept before NMS."""
    iou_thresh: Annotated[float, Range(0, 1)] = 0.45
    """NMS drops a box that overlaps a better one of its class by more than this (IoU)."""
    limit: Count = 300
    """The detections kept per image, best first."""


@register
class YoloDetections(Selection):
    name = "yolo_detections"
    takes_list = True
    arity = None
    Attrs = YoloDetectionsAttrs
    summary = (
        "YOLOv3's detections: from the image and each head's map of every anchor's box, "
        "objectness and class scores (darknet's yolo layer), the boxes decoded, for each "
        "class the best over the score threshold, NMS'd per class; (N, limit, 6) rows of "
        "x1, y1, x2, y2, score, label (-1 past an image's detections), a stage op"
    )

    def check(self, attrs: YoloDetectionsAttrs, inputs: list[TensorType]) -> list[str]:
        return _yolo_maps(attrs, inputs)

    def lower_torch(self, attrs: YoloDetectionsAttrs, inputs: list[TensorType]) -> InlineCall:
        return _yolo_call(self.name, attrs, inputs, "")

    lower_flax = lower_torch


class YoloLossAttrs(Attrs):
    anchors: Annotated[NUMBER_LISTS, Range(0, above=True)]
    """Per map, its anchors' sizes in input pixels as w, h pairs: `[116, 90, 156, 198]`."""
    ignore_thresh: Annotated[float, Range(0, 1)] = 0.7
    """An anchor whose box overlaps a target box by more than this (IoU) is not taught that
    it sees no object."""


@register
class YoloLoss(Loss):
    name = "yolo_loss"
    takes_list = True
    arity = None
    Attrs = YoloLossAttrs
    summary = (
        "YOLOv3's training loss from the image and each head's map, as darknet's yolo layers "
        "train (its gradient on the maps is their delta): each target box's best-shaped "
        "anchor in the cell of its centre learns the box (binary cross entropy of tx, ty, "
        "squared error of tw, th), objectness 1 and the box's class; every other anchor "
        "objectness 0 unless its box overlaps a target by more than ignore_thresh; summed "
        "over the images, a loss of the stage"
    )

    def check(self, attrs: YoloLossAttrs, inputs: list[TensorType]) -> list[str]:
        return _yolo_maps(attrs, inputs)

    def lower_torch(self, attrs: YoloLossAttrs, inputs: list[TensorType]) -> InlineCall:
        return _yolo_call(self.name, attrs, inputs, "targets, ")

    lower_flax = lower_torch


def _yolo_maps(attrs: YoloDetectionsAttrs | YoloLossAttrs, inputs: list[TensorType]) -> list[str]:
    """The image and yolo heads' maps, each of its anchors x (4 box values, objectness and the
    same classes) channels, with w, h pairs of anchors for each."""
    anchors, maps = concrete(attrs.anchors), inputs[1:]
    if len(anchors) != len(maps):
        return [f"anchors needs one list per map ({len(maps)}), got {len(anchors)}"]
    if any(not pairs or len(pairs) % 2 for pairs in anchors):
        return ["anchors: each map's list must be w, h pairs"]
    problems = _each_of_rank(inputs, 4, "NCHW")
    if problems:
        return problems
    widths = [concrete(kind.channels) for kind in maps]
    values = {width // (len(pairs) // 2) for width, pairs in zip(widths, anchors)}
    whole = all(width % (len(pairs) // 2) == 0 for width, pairs in zip(widths, anchors))
    if not whole or len(values) > 1 or values.pop() < 6:
        return [
            f"each map needs its anchors x (4 box values, objectness and the same classes) "
            f"channels: got {widths} for {[len(pairs) // 2 for pairs in anchors]} anchors"
        ]
    return []


def _yolo_call(name: str, attrs: Attrs, inputs: list[TensorType], targets: str) -> InlineCall:
    """`name(image, [maps…], targets, settings)`: a yolo stage op's helper call."""
    maps = ", ".join(f"{{{index}}}" for index in range(1, len(inputs)))
    return InlineCall(f"{name}({{0}}, [{maps}], {targets}{_settings(attrs)})")


class ProposalsAttrs(Attrs):
    candidates: Count = 1000
    """On each level, the best objectness logits kept before NMS (pre_nms_top_n)."""
    iou_thresh: Annotated[float, Range(0, 1)] = 0.7
    """NMS, within each level, drops a box that overlaps a better one by more than this."""
    limit: Count = 1000
    """The proposals kept per image, best first (post_nms_top_n)."""
    score_thresh: Annotated[float, Range(0, 1)] = 0.0
    """A proposal's objectness (sigmoid) must reach it."""
    min_size: Annotated[float, Range(0)] = 1e-3
    """A proposal narrower or lower than this (pixels) is dropped."""


@register
class Proposals(StageOp):
    name = "proposals"
    takes_list = True
    arity = None
    Attrs = ProposalsAttrs
    summary = (
        "a region proposal network's proposals, as torchvision's RPN filters them: from the "
        "image, objectness and box deltas per anchor row, the anchors and the levels, the best "
        "per level decoded, clipped, small ones dropped, NMS'd per level; (N, limit, 4) boxes "
        "best first, zeros past an image's proposals, a stage op"
    )

    def check(self, attrs: ProposalsAttrs, inputs: list[TensorType]) -> list[str]:
        if len(inputs) < 5:
            return ["reads the image, objectness, deltas, anchors and one or more levels"]
        image, objectness, deltas, anchors, *levels = inputs
        problems = _each_of_rank([image, *levels], 4, "NCHW")
        problems = problems or _boxes(deltas, "deltas") or _boxes(anchors, "anchors")
        if problems:
            return problems
        if objectness.rank != 3 or concrete(objectness.shape[2]) != 1:
            return [f"objectness must be one value per anchor row (N, rows, 1), got {objectness}"]
        rows = {concrete(kind.shape[1]) for kind in (objectness, deltas, anchors)}
        positions = sum(concrete(kind.shape[2] * kind.shape[3]) for kind in levels)
        if len(rows) > 1 or rows.pop() % positions:
            return [
                f"objectness, deltas and anchors need the same whole number of rows per level "
                f"position ({positions}): got {objectness}, {deltas} and {anchors}"
            ]
        return []

    def infer(self, attrs: ProposalsAttrs, inputs: list[TensorType]) -> TensorType:
        return TensorType((inputs[0].shape[0], attrs.limit, 4))

    def lower_torch(self, attrs: ProposalsAttrs, inputs: list[TensorType]) -> InlineCall:
        levels = ", ".join(f"{{{index}}}" for index in range(4, len(inputs)))
        return InlineCall(
            f"region_proposals({{0}}, {{1}}, {{2}}, {{3}}, [{levels}], {_settings(attrs)})"
        )

    lower_flax = lower_torch


class RoIAlignAttrs(Attrs):
    size: Count = 7
    """The pooled map's height and width."""
    sampling_ratio: Count = 2
    """Samples per bin along each axis, averaged."""
    canonical_scale: Annotated[float, Range(0, above=True)] = 224.0
    """A box of this side (√area, pixels) pools from level `canonical_level`."""
    canonical_level: Count = 4
    """The level (its stride is 2^level) a box of `canonical_scale` pools from."""


@register
class RoIAlign(StageOp):
    name = "roi_align"
    takes_list = True
    arity = None
    Attrs = RoIAlignAttrs
    summary = (
        "each box's features pooled to size x size from its level (torchvision's "
        "MultiScaleRoIAlign: the level by the box's side, bilinear samples averaged per bin); "
        "from the image, boxes (N, R, 4, or more columns after them) and the levels: "
        "(N·R, C, size, size), a stage op that "
        "network modules in postprocess: may read, one row per box"
    )

    def check(self, attrs: RoIAlignAttrs, inputs: list[TensorType]) -> list[str]:
        if len(inputs) < 3:
            return ["reads the image, the boxes and one or more levels"]
        image, boxes, *levels = inputs
        problems = _each_of_rank([image, *levels], 4, "NCHW")
        if not problems and (boxes.rank != 3 or concrete(boxes.shape[2]) < 4):
            problems = [f"boxes must be rows of 4 box values or more (N, rows, 4+), got {boxes}"]
        widths = {concrete(level.channels) for level in levels}
        if not problems and len(widths) > 1:
            return [f"the levels need the same channels, got {sorted(widths)}"]
        return problems

    def infer(self, attrs: RoIAlignAttrs, inputs: list[TensorType]) -> TensorType:
        image, boxes, level = inputs[:3]
        rows = image.shape[0] * boxes.shape[1]
        return TensorType((rows, level.channels, attrs.size, attrs.size))

    def lower_torch(self, attrs: RoIAlignAttrs, inputs: list[TensorType]) -> InlineCall:
        levels = ", ".join(f"{{{index}}}" for index in range(2, len(inputs)))
        return InlineCall(f"roi_align({{0}}, {{1}}, [{levels}], {_settings(attrs)})")

    lower_flax = lower_torch


class RoIDetectionsAttrs(Attrs):
    score_thresh: Annotated[float, Range(0, 1)] = 0.05
    """A class score (softmax) must be above it."""
    iou_thresh: Annotated[float, Range(0, 1)] = 0.5
    """NMS drops a box that overlaps a better one of its class by more than this (IoU)."""
    limit: Count = 100
    """The detections kept per image, best first."""
    weights: Annotated[NUMBERS, Range(0, above=True)] = (10.0, 10.0, 5.0, 5.0)
    """The box coder's weights: the deltas (dx, dy, dw, dh) are divided by them."""
    min_size: Annotated[float, Range(0)] = 1e-2
    """A detection narrower or lower than this (pixels) is dropped."""


@register
class RoIDetections(Selection):
    name = "roi_detections"
    arity = 4
    Attrs = RoIDetectionsAttrs
    summary = (
        "Faster R-CNN's detections: from the image, class logits and per-class box deltas of "
        "each proposal (N·R rows) and the proposals (N, R, 4), softmax scores, each class's "
        "box decoded and clipped, for each class but the background (0) the boxes over the "
        "score threshold NMS'd per class; (N, limit, 6) rows of x1, y1, x2, y2, score, label "
        "(-1 past an image's detections), a stage op"
    )

    def check(self, attrs: RoIDetectionsAttrs, inputs: list[TensorType]) -> list[str]:
        image, logits, deltas, proposals = inputs
        if len(concrete(attrs.weights)) != 4:
            return [f"weights needs 4 values (dx, dy, dw, dh), got {len(attrs.weights)}"]
        problems = expect_rank([image], 4, "NCHW") or _boxes(proposals, "proposals")
        if problems:
            return problems
        rows = concrete(image.shape[0] * proposals.shape[1])
        shaped = logits.rank == deltas.rank == 2
        if not shaped or {concrete(logits.shape[0]), concrete(deltas.shape[0])} != {rows}:
            return [
                f"logits and deltas need one row per proposal ({rows}, values), got {logits} "
                f"and {deltas}"
            ]
        if concrete(deltas.shape[1]) != 4 * concrete(logits.shape[1]):
            return [f"deltas need 4 values per class of the logits {logits}, got {deltas}"]
        return []

    def lower_torch(self, attrs: RoIDetectionsAttrs, inputs: list[TensorType]) -> InlineCall:
        return InlineCall(f"roi_detections({{0}}, {{1}}, {{2}}, {{3}}, {_settings(attrs)})")

    lower_flax = lower_torch


@register
class PasteMasks(StageOp):
    name = "paste_masks"
    arity = 3
    method = "detect"
    summary = (
        "Mask R-CNN's masks: from the image, each detection's mask logits per class "
        "(N·R, classes, M, M) and the detections (N, R, 6), the sigmoid of its label's "
        "logits pasted into the image over its box as torchvision's paste_masks_in_image "
        "does; (N, R, H, W) probabilities, zeros past an image's detections, a stage op"
    )

    def check(self, attrs: NoAttrs, inputs: list[TensorType]) -> list[str]:
        image, logits, detections = inputs
        if problems := expect_rank([image], 4, "NCHW"):
            return problems
        if detections.rank != 3 or concrete(detections.shape[2]) != 6:
            return [f"detections must be rows of box, score, label (N, R, 6), got {detections}"]
        return _mask_logits(logits, image.shape[0] * detections.shape[1], "detection")

    def infer(self, attrs: NoAttrs, inputs: list[TensorType]) -> TensorType:
        image, _, detections = inputs
        return TensorType((image.shape[0], detections.shape[1], *image.shape[2:]))

    def lower_torch(self, attrs: NoAttrs, inputs: list[TensorType]) -> InlineCall:
        return InlineCall("paste_masks({0}, {1}, {2})")

    lower_flax = lower_torch


def _settings(attrs: Attrs) -> str:
    """Every attribute as a keyword argument: `score_thresh=0.01, limit=200`."""
    return ", ".join(f"{key}={source(value)}" for key, value in attrs)


def _each_of_rank(inputs: list[TensorType], rank: int, what: str) -> list[str]:
    """The first input that is not `rank`-d, as expect_rank words it."""
    return next(filter(None, (expect_rank([kind], rank, what) for kind in inputs)), [])


class MatchAttrs(Attrs):
    fg_iou_thresh: Annotated[float, Range(0, 1)] = 0.5
    """An anchor whose best IoU with a target box reaches this is that box's foreground."""
    bg_iou_thresh: Annotated[float, Range(0, 1)] = 0.4
    """Below this it is background; in between it is ignored."""
    low_quality: Literal["keep", "off", "force"] = "keep"
    """What a target box's best anchor gets: "keep" (torchvision's Matcher with low-quality
    matches) every anchor tied best for a box keeps its own best box whatever its IoU; "off"
    nothing; "force" (SSDMatcher) each box's best anchor is matched to that box."""


@register
class MatchAnchors(StageOp):
    name = "match_anchors"
    reads_targets = True
    Attrs = MatchAttrs
    summary = (
        "each anchor's target box, as torchvision's Matcher: the index of its best box, -1 "
        "for background, -2 ignored, low-quality matches kept, off or forced (SSDMatcher); "
        "(N, rows) int64, a stage op"
    )

    def check(self, attrs: MatchAttrs, inputs: list[TensorType]) -> list[str]:
        return _matching(attrs, inputs[0], "anchors")

    def infer(self, attrs: MatchAttrs, inputs: list[TensorType]) -> TensorType:
        return TensorType(inputs[0].shape[:2], dtype="i64")

    def lower_torch(self, attrs: MatchAttrs, inputs: list[TensorType]) -> InlineCall:
        return InlineCall(f"match_anchors({{0}}, targets, {_settings(attrs)})")

    lower_flax = lower_torch


class FocalLossAttrs(Attrs):
    alpha: Annotated[float, Range(0, 1)] = 0.25
    """The weight of the positive class (1 - alpha for the negatives)."""
    gamma: Annotated[float, Range(0)] = 2.0
    """How much well-classified examples are down-weighted: (1 - p_t)^gamma."""


@register
class FocalLoss(ClassificationLoss):
    name = "focal_loss"
    Attrs = FocalLossAttrs
    summary = (
        "RetinaNet's classification loss from the class logits per anchor row and the matched "
        "boxes: sigmoid focal loss over the anchors not ignored, per image over its foreground "
        "count, averaged over the images; a loss of the stage"
    )


@register
class BoxL1Loss(BoxLoss):
    name = "box_l1_loss"
    Attrs = NoAttrs
    summary = (
        "RetinaNet's box regression loss from the box deltas and anchors per row and the "
        "matched boxes: L1 against the foreground anchors' encoded boxes, per image over its "
        "foreground count, averaged over the images; a loss of the stage"
    )


class BoxGIoULossAttrs(Attrs):
    eps: Epsilon = 1e-7
    """Added to the union and the enclosing box's area before dividing by them."""


@register
class BoxGIoULoss(BoxLoss):
    name = "box_giou_loss"
    Attrs = BoxGIoULossAttrs
    summary = (
        "RetinaNet's box regression loss of torchvision's giou type (retinanet_resnet50_fpn_v2) "
        "from the box deltas and anchors per row and the matched boxes: 1 - generalized IoU "
        "of the foreground anchors' decoded boxes and their boxes, per image over its "
        "foreground count, averaged over the images; a loss of the stage"
    )


class HardNegativeLossAttrs(Attrs):
    negatives_per_positive: Annotated[float, Range(0)] = 3.0
    """Per image, the hardest background rows counted for each foreground one."""


@register
class HardNegativeLoss(ClassificationLoss):
    name = "hard_negative_loss"
    Attrs = HardNegativeLossAttrs
    summary = (
        "SSD's classification loss from the class logits per row and the matched boxes: "
        "cross entropy of the foreground rows (their box's label) and of the hardest "
        "background rows (label 0), over the batch's foreground count; a loss of the stage"
    )


class BoxSmoothL1LossAttrs(Attrs):
    beta: Annotated[float, Range(0, above=True)] = 1.0
    """Where the loss turns from quadratic to linear."""
    weights: Annotated[NUMBERS, Range(0, above=True)] = (10.0, 10.0, 5.0, 5.0)
    """The box coder's weights: the encoded deltas (dx, dy, dw, dh) are multiplied by them."""
    normalizer: Literal["foreground", "sampled"] = "foreground"
    """What the summed loss is divided by: the batch's foreground rows (SSD), or all its rows
    not ignored (an RPN's sampled rows, `sample_matches`)."""


@register
class BoxSmoothL1Loss(BoxLoss):
    name = "box_smooth_l1_loss"
    Attrs = BoxSmoothL1LossAttrs
    summary = (
        "SSD's box regression loss from the box deltas and boxes per row and the matched "
        "boxes: smooth L1 against the foreground rows' encoded boxes (weighted), over the "
        "batch's foreground count; a loss of the stage"
    )

    def check(self, attrs: BoxSmoothL1LossAttrs, inputs: list[TensorType]) -> list[str]:
        if len(concrete(attrs.weights)) != 4:
            return [f"weights needs 4 values (dx, dy, dw, dh), got {len(attrs.weights)}"]
        return super().check(attrs, inputs)


def _matching(attrs: MatchAttrs | SampleProposalsAttrs, boxes: TensorType, what: str) -> list[str]:
    """Boxes to match against the targets, with thresholds in order."""
    if attrs.bg_iou_thresh > attrs.fg_iou_thresh:
        return ["bg_iou_thresh must not be above fg_iou_thresh"]
    return _boxes(boxes, what)


def _boxes(kind: TensorType, what: str) -> list[str]:
    """Rows of 4 box values: (N, rows, 4)."""
    if kind.rank == 3 and concrete(kind.shape[2]) == 4:
        return []
    return [f"{what} must be rows of 4 box values (N, rows, 4), got {kind}"]


def _mask_logits(logits: TensorType, rows: Any, what: str) -> list[str]:
    """Mask logits: a square map per class for each of `rows` boxes (rows, classes, M, M)."""
    square = logits.rank == 4 and concrete(logits.shape[2]) == concrete(logits.shape[3])
    if square and concrete(logits.shape[0]) == concrete(rows):
        return []
    return [
        f"mask logits need a square map per class for each {what} ({concrete(rows)}, classes, "
        f"M, M), got {logits}"
    ]


def _samples(kind: TensorType) -> list[str]:
    """Samples of proposals, as sample_proposals gives them: (N, S, 5)."""
    if kind.rank == 3 and concrete(kind.shape[2]) == 5:
        return []
    return [f"expected samples (N, S, 5) as sample_proposals gives them, got {kind}"]


def _rows(values: TensorType, matched: TensorType, what: str = "deltas") -> list[str]:
    """Values per anchor row, and the matches of those rows: (N, rows, …) and (N, rows)."""
    shaped = values.rank == 3 and matched.rank == 2 and matched.dtype == "i64"
    if shaped and concrete(values.shape[1]) == concrete(matched.shape[1]):
        return []
    return [f"{what} {values} and the matches {matched} must have one row per anchor"]


class SampleAttrs(Attrs):
    batch_size_per_image: Count = 256
    """Rows sampled per image: foreground ones up to `positive_fraction` of them, then
    background ones."""
    positive_fraction: Annotated[float, Range(0, 1)] = 0.5
    """The most of a sample that is foreground."""


@register
class SampleMatches(StageOp):
    name = "sample_matches"
    Attrs = SampleAttrs
    summary = (
        "a random sample of each image's matched rows for training, as torchvision's "
        "BalancedPositiveNegativeSampler draws it: (N, rows) int64, the match where sampled, -1 "
        "for sampled background, -2 elsewhere; a stage op"
    )

    def check(self, attrs: SampleAttrs, inputs: list[TensorType]) -> list[str]:
        if inputs[0].rank == 2 and inputs[0].dtype == "i64":
            return []
        return [f"expected matches (N, rows) int64, as match_anchors gives them, got {inputs[0]}"]

    def infer(self, attrs: SampleAttrs, inputs: list[TensorType]) -> TensorType:
        return inputs[0]

    def lower_torch(self, attrs: SampleAttrs, inputs: list[TensorType]) -> InlineCall:
        return InlineCall(f"sample_matches({{0}}, {_settings(attrs)})")

    def lower_flax(self, attrs: SampleAttrs, inputs: list[TensorType]) -> InlineCall:
        call = f"sample_matches({{0}}, {{self}}_rngs.sample(), {_settings(attrs)})"
        return _sampled_in_flax(call)


class SampleProposalsAttrs(SampleAttrs):
    fg_iou_thresh: Annotated[float, Range(0, 1)] = 0.5
    """A box whose best IoU with a target box reaches this is that box's foreground."""
    bg_iou_thresh: Annotated[float, Range(0, 1)] = 0.5
    """Below this it is background; in between it is never sampled."""
    batch_size_per_image: Count = 512
    positive_fraction: Annotated[float, Range(0, 1)] = 0.25


@register
class SampleProposals(StageOp):
    name = "sample_proposals"
    reads_targets = True
    Attrs = SampleProposalsAttrs
    summary = (
        "training samples of each image's proposals and its target boxes (added to them), as "
        "torchvision's RoIHeads draws them: matched without low-quality matches, then a random "
        "sample as sample_matches; (N, batch_size_per_image, 5) rows of x1, y1, x2, y2 and "
        "the target box's index (-1 background) in the boxes' order, then zeros with -2; a "
        "stage op"
    )

    def check(self, attrs: SampleProposalsAttrs, inputs: list[TensorType]) -> list[str]:
        return _matching(attrs, inputs[0], "proposals")

    def infer(self, attrs: SampleProposalsAttrs, inputs: list[TensorType]) -> TensorType:
        return TensorType((inputs[0].shape[0], attrs.batch_size_per_image, 5))

    def lower_torch(self, attrs: SampleProposalsAttrs, inputs: list[TensorType]) -> InlineCall:
        return InlineCall(f"sample_proposals({{0}}, targets, {_settings(attrs)})")

    def lower_flax(self, attrs: SampleProposalsAttrs, inputs: list[TensorType]) -> InlineCall:
        call = f"sample_proposals({{0}}, targets, {{self}}_rngs.sample(), {_settings(attrs)})"
        return _sampled_in_flax(call)


def _sampled_in_flax(call: str) -> InlineCall:
    """A sampler's flax call, drawing its keys from a stream of its own, made with the model
    (nnx.Rngs, as nnx.Dropout keeps one)."""
    return InlineCall(call, (("_rngs", "nnx.Rngs(sample=rngs.params())"),))


@register
class ObjectnessLoss(ClassificationLoss):
    name = "objectness_loss"
    reads_targets = False
    Attrs = NoAttrs
    summary = (
        "a region proposal network's objectness loss from the objectness logit per anchor row "
        "and the sampled matches: binary cross entropy (foreground 1, background 0) averaged "
        "over the sampled rows; a loss of the stage"
    )

    def check(self, attrs: Attrs, inputs: list[TensorType]) -> list[str]:
        logits = inputs[0]
        if logits.rank != 3 or concrete(logits.shape[2]) != 1:
            return [f"expected one objectness logit per anchor row (N, rows, 1), got {logits}"]
        return super().check(attrs, inputs)


class ForegroundSamplesAttrs(Attrs):
    limit: Count = 128
    """Rows kept per image: sample_proposals samples at most batch_size_per_image ×
    positive_fraction foreground rows (`int(box_batch_size_per_image *
    box_positive_fraction)` keeps them all)."""


@register
class ForegroundSamples(StageOp):
    name = "foreground_samples"
    Attrs = ForegroundSamplesAttrs
    summary = (
        "the foreground rows of each image's samples (those sample_proposals matched to a "
        "target box), as torchvision's RoIHeads feeds its mask head in training: (N, limit, 5) "
        "in the samples' order, then zeros with -2; a stage op"
    )

    def check(self, attrs: ForegroundSamplesAttrs, inputs: list[TensorType]) -> list[str]:
        samples = inputs[0]
        if problems := _samples(samples):
            return problems
        if concrete(attrs.limit) > concrete(samples.shape[1]):
            return [f"limit={concrete(attrs.limit)} is more than the {samples.shape[1]} samples"]
        return []

    def infer(self, attrs: ForegroundSamplesAttrs, inputs: list[TensorType]) -> TensorType:
        return TensorType((inputs[0].shape[0], attrs.limit, 5))

    def lower_torch(self, attrs: ForegroundSamplesAttrs, inputs: list[TensorType]) -> InlineCall:
        return InlineCall(f"foreground_samples({{0}}, {_settings(attrs)})")

    lower_flax = lower_torch


@register
class MaskLoss(Loss):
    name = "mask_loss"
    arity = 2
    Attrs = NoAttrs
    summary = (
        "Mask R-CNN's mask loss from the mask logits per class of each foreground sample "
        "(N·F, classes, M, M) and those samples (N, F, 5): binary cross entropy of its box's "
        "class's logits against its box's target mask cropped to the sample and pooled to M "
        "x M (RoIAlign, adaptive sampling), averaged over the pixels; a loss of the stage"
    )

    def check(self, attrs: NoAttrs, inputs: list[TensorType]) -> list[str]:
        logits, samples = inputs
        if problems := _samples(samples):
            return problems
        return _mask_logits(logits, samples.shape[0] * samples.shape[1], "sample")


class RoILoss(Loss):
    """A loss of the box head's values per sampled proposal (N·S rows), against the samples
    (N, S, 5) of sample_proposals."""

    arity = 2

    def check(self, attrs: Attrs, inputs: list[TensorType]) -> list[str]:
        values, samples = inputs
        if problems := _samples(samples):
            return problems
        rows = concrete(samples.shape[0] * samples.shape[1])
        if values.rank != 2 or concrete(values.shape[0]) != rows:
            return [f"expected one row per sample ({rows}, values), got {values}"]
        return []


@register
class RoIClassificationLoss(RoILoss):
    name = "roi_classification_loss"
    Attrs = NoAttrs
    summary = (
        "Fast R-CNN's classification loss from the class logits of each sampled proposal and "
        "the samples: cross entropy against the matched box's label (0 for background), "
        "averaged over the samples; a loss of the stage"
    )


class RoIBoxLossAttrs(Attrs):
    beta: Annotated[float, Range(0, above=True)] = 1 / 9
    """Where the loss turns from quadratic to linear."""
    weights: Annotated[NUMBERS, Range(0, above=True)] = (10.0, 10.0, 5.0, 5.0)
    """The box coder's weights: the encoded deltas (dx, dy, dw, dh) are multiplied by them."""


@register
class RoIBoxLoss(RoILoss):
    name = "roi_box_loss"
    Attrs = RoIBoxLossAttrs
    summary = (
        "Fast R-CNN's box regression loss from the per-class box deltas of each sampled "
        "proposal and the samples: smooth L1 between a foreground sample's deltas for its "
        "box's class and those that move it onto its box (times weights), summed and divided "
        "by the number of samples; a loss of the stage"
    )

    def check(self, attrs: RoIBoxLossAttrs, inputs: list[TensorType]) -> list[str]:
        if len(concrete(attrs.weights)) != 4:
            return [f"weights needs 4 values (dx, dy, dw, dh), got {len(attrs.weights)}"]
        return super().check(attrs, inputs)
