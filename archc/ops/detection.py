"""Ops of detectors: a head's maps as one row per anchor, and the detection stage after the
network (anchors, and the detections selected from the head's rows), which runs in the
generated model's `detect()`, not in its forward."""

from __future__ import annotations

from typing import Annotated

from archc.ir.graph import TensorType
from archc.ir.symbolic import concrete, source
from archc.ops import register
from archc.ops.attributes import NUMBERS, Range
from archc.ops.base import Attrs, Count, NoAttrs, Op, expect_rank
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
        problems = expect_rank(inputs, 4, "NCHW")
        channels = concrete(inputs[0].channels) if not problems else 0
        if not problems and channels % concrete(attrs.size):
            return [f"size={concrete(attrs.size)} must divide the {channels} channels"]
        return problems

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


class Loss(StageOp):
    """A training loss of the stage: a scalar against the targets, which `loss()` returns."""

    method = "loss"
    reads_targets = True

    def infer(self, attrs: Attrs, inputs: list[TensorType]) -> TensorType:
        return TensorType(())


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
class Detections(StageOp):
    name = "detections"
    method = "detect"
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

    def infer(self, attrs: DetectionsAttrs, inputs: list[TensorType]) -> TensorType:
        return TensorType((inputs[0].shape[0], attrs.limit, 6))

    def lower_torch(self, attrs: DetectionsAttrs, inputs: list[TensorType]) -> InlineCall:
        levels = ", ".join(f"{{{index}}}" for index in range(4, len(inputs)))
        settings = ", ".join(f"{key}={source(value)}" for key, value in attrs)
        return InlineCall(f"select_detections({{0}}, {{1}}, {{2}}, {{3}}, [{levels}], {settings})")

    lower_flax = lower_torch


def _each_of_rank(inputs: list[TensorType], rank: int, what: str) -> list[str]:
    """The first input that is not `rank`-d, as expect_rank words it."""
    return next(filter(None, (expect_rank([kind], rank, what) for kind in inputs)), [])


class MatchAttrs(Attrs):
    fg_iou_thresh: Annotated[float, Range(0, 1)] = 0.5
    """An anchor whose best IoU with a target box reaches this is that box's foreground."""
    bg_iou_thresh: Annotated[float, Range(0, 1)] = 0.4
    """Below this it is background; in between it is ignored."""


@register
class MatchAnchors(StageOp):
    name = "match_anchors"
    reads_targets = True
    Attrs = MatchAttrs
    summary = (
        "each anchor's target box, as torchvision's Matcher with low-quality matches: the "
        "index of its best box, -1 for background, -2 ignored; (N, rows) int64, a stage op"
    )

    def check(self, attrs: MatchAttrs, inputs: list[TensorType]) -> list[str]:
        if attrs.bg_iou_thresh > attrs.fg_iou_thresh:
            return ["bg_iou_thresh must not be above fg_iou_thresh"]
        return _boxes(inputs[0], "anchors")

    def infer(self, attrs: MatchAttrs, inputs: list[TensorType]) -> TensorType:
        return TensorType(inputs[0].shape[:2], dtype="i64")

    def lower_torch(self, attrs: MatchAttrs, inputs: list[TensorType]) -> InlineCall:
        high, low = source(attrs.fg_iou_thresh), source(attrs.bg_iou_thresh)
        return InlineCall(f"match_anchors({{0}}, targets, {high}, {low})")

    lower_flax = lower_torch


class FocalLossAttrs(Attrs):
    alpha: Annotated[float, Range(0, 1)] = 0.25
    """The weight of the positive class (1 - alpha for the negatives)."""
    gamma: Annotated[float, Range(0)] = 2.0
    """How much well-classified examples are down-weighted: (1 - p_t)^gamma."""


@register
class FocalLoss(Loss):
    name = "focal_loss"
    arity = 2
    Attrs = FocalLossAttrs
    summary = (
        "RetinaNet's classification loss from the class logits per anchor row and the matched "
        "boxes: sigmoid focal loss over the anchors not ignored, per image over its foreground "
        "count, averaged over the images; a loss of the stage"
    )

    def check(self, attrs: FocalLossAttrs, inputs: list[TensorType]) -> list[str]:
        return _rows(inputs[0], inputs[1], "logits")

    def lower_torch(self, attrs: FocalLossAttrs, inputs: list[TensorType]) -> InlineCall:
        alpha, gamma = source(attrs.alpha), source(attrs.gamma)
        return InlineCall(f"focal_loss({{0}}, {{1}}, targets, alpha={alpha}, gamma={gamma})")

    lower_flax = lower_torch


@register
class BoxL1Loss(Loss):
    name = "box_l1_loss"
    arity = 3
    Attrs = NoAttrs
    summary = (
        "RetinaNet's box regression loss from the box deltas and anchors per row and the "
        "matched boxes: L1 against the foreground anchors' encoded boxes, per image over its "
        "foreground count, averaged over the images; a loss of the stage"
    )

    def check(self, attrs: NoAttrs, inputs: list[TensorType]) -> list[str]:
        deltas, anchors, matched = inputs
        return _boxes(deltas, "deltas") or _boxes(anchors, "anchors") or _rows(deltas, matched)

    def lower_torch(self, attrs: NoAttrs, inputs: list[TensorType]) -> InlineCall:
        return InlineCall("box_l1_loss({0}, {1}, {2}, targets)")

    lower_flax = lower_torch


def _boxes(kind: TensorType, what: str) -> list[str]:
    """Rows of 4 box values: (N, rows, 4)."""
    if kind.rank == 3 and concrete(kind.shape[2]) == 4:
        return []
    return [f"{what} must be rows of 4 box values (N, rows, 4), got {kind}"]


def _rows(values: TensorType, matched: TensorType, what: str = "deltas") -> list[str]:
    """Values per anchor row, and the matches of those rows: (N, rows, …) and (N, rows)."""
    shaped = values.rank == 3 and matched.rank == 2 and matched.dtype == "i64"
    if shaped and concrete(values.shape[1]) == concrete(matched.shape[1]):
        return []
    return [f"{what} {values} and the matches {matched} must have one row per anchor"]
