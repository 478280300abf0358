"""Helpers that archc copies into generated PyTorch files (only those a file uses).

This file is read as text, never imported by archc: emission must not import torch. Each
top-level definition is one helper; it is linted and tested like the code it lands in.
"""

import math
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn


def with_autocast(model: nn.Module, dtype: torch.dtype) -> nn.Module:
    """The model, its forward now run under torch.autocast in `dtype` on the input's device
    type (its own forward, and so its state_dict, unchanged)."""
    forward = model.forward

    def autocast_forward(x: torch.Tensor) -> Any:
        with torch.autocast(x.device.type, dtype):
            return forward(x)

    model.forward = autocast_forward
    return model


def freeze_params(module: Any, when: bool = True) -> Any:
    """The module (or a parameter), its parameters not trained where `when` holds (the
    spec's `frozen:`); never unfrozen, so a block keeps what its own body froze."""
    return module.requires_grad_(False) if when else module


class StochasticDepth(nn.Module):
    """Drops a sample's whole residual branch with probability `p` in training and scales the
    survivors by 1 / (1 - p), as torchvision's `StochasticDepth(p, "row")`; the identity in eval.
    """

    def __init__(self, p: float) -> None:
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        survival = 1.0 - self.p
        noise = torch.empty((x.shape[0],) + (1,) * (x.ndim - 1), dtype=x.dtype, device=x.device)
        noise = noise.bernoulli_(survival)
        if survival > 0.0:
            noise.div_(survival)
        return x * noise


class FrozenBatchNorm2d(nn.Module):
    """BatchNorm2d whose statistics and affine terms are fixed buffers, as torchvision's (its
    detection backbones): x * weight / sqrt(running_var + eps) + (bias - running_mean * …)."""

    def __init__(self, num_features: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = eps
        self.register_buffer("weight", torch.ones(num_features))
        self.register_buffer("bias", torch.zeros(num_features))
        self.register_buffer("running_mean", torch.zeros(num_features))
        self.register_buffer("running_var", torch.ones(num_features))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = self.weight * (self.running_var + self.eps).rsqrt()
        shift = self.bias - self.running_mean * scale
        return x * scale.reshape(1, -1, 1, 1) + shift.reshape(1, -1, 1, 1)


class LayerNorm2d(nn.LayerNorm):
    """Layer normalisation over the channels of an NCHW image, as torchvision's ConvNeXt: the
    image is moved channels-last for nn.LayerNorm and back."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.permute(0, 2, 3, 1)
        x = F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)
        return x.permute(0, 3, 1, 2)


def center_crop(x: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """The centre of `x` at `like`'s height and width (the crop of U-Net's skips)."""
    height, width = like.shape[-2:]
    top, left = (x.shape[-2] - height) // 2, (x.shape[-1] - width) // 2
    return x[..., top : top + height, left : left + width]


def center_pad(x: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """`x` zero-padded to `like`'s height and width, centred; the odd row or column goes to
    the bottom or right (as U-Net ports pad their skips)."""
    height, width = (b - a for a, b in zip(x.shape[-2:], like.shape[-2:]))
    return F.pad(x, [width // 2, width - width // 2, height // 2, height - height // 2])


def attention(qkv: torch.Tensor, heads: int) -> torch.Tensor:
    """Multi-head scaled dot-product attention from packed q, k, v: (N, L, 3·D) to (N, L, D)."""
    n, length, packed = qkv.shape
    q, k, v = qkv.reshape(n, length, 3, heads, packed // (3 * heads)).permute(2, 0, 3, 1, 4)
    x = F.scaled_dot_product_attention(q, k, v)
    return x.transpose(1, 2).reshape(n, length, packed // 3)


class Permute(nn.Module):
    """Reorder the axes (torchvision's Permute): NCHW to NHWC and back."""

    def __init__(self, dims: tuple[int, ...]) -> None:
        super().__init__()
        self.dims = dims

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.permute(self.dims)


class ShiftedWindowAttention(nn.Module):
    """Swin's window attention on NHWC (torchvision's parameters and buffer): attention within
    window x window patches, cyclically shifted by `shift` first (not where the window covers
    the map), with a learned bias per relative position and head, and -100 added between
    positions that the shift brought together from different regions. A map the window does
    not divide is padded with zeros to whole windows and cropped back, as torchvision does."""

    def __init__(self, dim: int, *, window: int, shift: int, heads: int) -> None:
        super().__init__()
        self.window, self.shift, self.heads = window, shift, heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        table = torch.zeros((2 * window - 1) ** 2, heads)
        self.relative_position_bias_table = nn.Parameter(nn.init.trunc_normal_(table, std=0.02))
        self.register_buffer("relative_position_index", relative_position_index(window))
        self.masks: dict[tuple, torch.Tensor] = {}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w, heads = self.window, self.heads
        unpadded = x.shape[1:3]
        if unpadded[0] % w or unpadded[1] % w:  # zeros to whole windows, bottom and right
            x = F.pad(x, (0, 0, 0, -unpadded[1] % w, 0, -unpadded[0] % w))
        n, height, width, dim = x.shape
        shifts = [self.shift if w < size else 0 for size in (height, width)]
        x = torch.roll(x, shifts=(-shifts[0], -shifts[1]), dims=(1, 2))
        windows = x.reshape(n, height // w, w, width // w, w, dim).permute(0, 1, 3, 2, 4, 5)
        windows = windows.reshape(n, -1, w * w, dim)
        qkv = self.qkv(windows).reshape(n, windows.shape[1], w * w, 3, heads, dim // heads)
        q, k, v = qkv.permute(3, 0, 1, 4, 2, 5)  # each (N, windows, heads, w², head dim)
        bias = self.relative_position_bias_table[self.relative_position_index]
        bias = bias.reshape(w * w, w * w, heads).permute(2, 0, 1)  # (heads, w², w²)
        if sum(shifts) > 0:  # and the shift mask: (windows, heads, w², w²)
            bias = bias + self.mask(height, width, shifts, bias)[:, None]
        x = F.scaled_dot_product_attention(q, k, v, attn_mask=bias.to(q.dtype))
        x = self.proj(x.transpose(2, 3).reshape(n, -1, w * w, dim))
        x = x.reshape(n, height // w, width // w, w, w, dim)
        x = x.permute(0, 1, 3, 2, 4, 5).reshape(n, height, width, dim)
        x = torch.roll(x, shifts=(shifts[0], shifts[1]), dims=(1, 2))
        return x[:, : unpadded[0], : unpadded[1]]

    def mask(self, height: int, width: int, shifts: list[int], like: torch.Tensor) -> torch.Tensor:
        """The shift mask of a map size, made once per size, device and dtype, on the device:
        no host work in a forward."""
        key = (height, width, like.device, like.dtype)
        if key not in self.masks:
            self.masks[key] = window_mask(height, width, self.window, shifts, like)
        return self.masks[key]


def relative_position_index(window: int) -> torch.Tensor:
    """For each pair of positions in a window, the row of their offset in the bias table."""
    coords = torch.stack(torch.meshgrid(torch.arange(window), torch.arange(window), indexing="ij"))
    offsets = (coords.flatten(1)[:, :, None] - coords.flatten(1)[:, None, :]) + window - 1
    return (offsets[0] * (2 * window - 1) + offsets[1]).flatten()


def window_mask(
    height: int, width: int, window: int, shifts: list[int], like: torch.Tensor
) -> torch.Tensor:
    """-100 between positions of a window that come from different regions of the shifted
    map, 0 elsewhere: (windows, window², window²), on the device and in the dtype of `like`."""
    regions = like.new_zeros(height, width)
    bounds = [
        ((0, size - window), (size - window, size - shift), (size - shift, size))
        for size, shift in zip((height, width), shifts)
    ]
    for index, ((top, bottom), (left, right)) in enumerate(
        (rows, cols) for rows in bounds[0] for cols in bounds[1]
    ):
        regions[top:bottom, left:right] = index
    regions = regions.reshape(height // window, window, width // window, window)
    regions = regions.permute(0, 2, 1, 3).reshape(-1, window * window)
    different = regions[:, None, :] != regions[:, :, None]
    return different.to(like.dtype) * -100.0


def fans(weight: torch.Tensor) -> tuple[int, int]:
    """A weight's fan-in and fan-out as nn.init counts them: (out, in, *kernel)."""
    receptive = math.prod(weight.shape[2:])
    return weight.shape[1] * receptive, weight.shape[0] * receptive


def grid_anchors(
    image: torch.Tensor,
    levels: list[torch.Tensor],
    size: int,
    scales: int,
    aspect_ratios: tuple[float, ...],
) -> torch.Tensor:
    """Anchor boxes (x1, y1, x2, y2) at every position of every level, each position's in
    turn, as torchvision's AnchorGenerator lays them: on level k, sides size·2^k·2^(j/scales)
    (truncated) in each aspect ratio (height / width), rounded about the level's grid of
    stride image // level. (N, rows, 4) on the image's device."""
    height, width = image.shape[-2:]
    heights = torch.tensor(aspect_ratios, device=image.device).sqrt()
    boxes = []
    for index, level in enumerate(levels):
        sides = [int(size * 2**index * 2 ** (step / scales)) for step in range(scales)]
        sides = torch.tensor(sides, dtype=heights.dtype, device=image.device)
        box_widths = ((1 / heights)[:, None] * sides[None, :]).reshape(-1)
        box_heights = (heights[:, None] * sides[None, :]).reshape(-1)
        cell = (torch.stack([-box_widths, -box_heights, box_widths, box_heights], 1) / 2).round()
        rows, cols = level.shape[-2:]
        y = torch.arange(rows, device=image.device) * (height // rows)
        x = torch.arange(cols, device=image.device) * (width // cols)
        y, x = torch.meshgrid(y, x, indexing="ij")
        shifts = torch.stack([x, y, x, y], dim=-1).reshape(-1, 1, 4)
        boxes.append((shifts + cell).reshape(-1, 4))
    return torch.cat(boxes).expand(len(image), -1, -1)


def default_boxes(
    image: torch.Tensor,
    levels: list[torch.Tensor],
    aspect_ratios: tuple[tuple[float, ...], ...],
    scales: tuple[float, ...] | None,
    min_ratio: float,
    max_ratio: float,
    steps: tuple[float, ...] | None,
    clip: bool,
) -> torch.Tensor:
    """SSD's default boxes (x1, y1, x2, y2) at every position of every level, each
    position's in turn, as torchvision's DefaultBoxGenerator lays them: on level k, squares
    of sides s_k and √(s_k·s_k+1), then for each aspect ratio r a box s_k·√r wide and s_k/√r
    high and its transpose (sides as fractions of the image, clipped to 1 if `clip`),
    centred on the level's grid (every `steps[k]` pixels, or the map's own grid).
    (N, rows, 4) on the image's device."""
    height, width = image.shape[-2:]
    if scales is None:
        scales = default_scales(len(levels), min_ratio, max_ratio)
    boxes = []
    for index, (level, ratios) in enumerate(zip(levels, aspect_ratios)):
        side, between = scales[index], math.sqrt(scales[index] * scales[index + 1])
        sides = [[side, side], [between, between]]
        for ratio in ratios:
            wide, high = side * math.sqrt(ratio), side / math.sqrt(ratio)
            sides += [[wide, high], [high, wide]]
        sides = torch.tensor(sides, dtype=torch.float32, device=image.device)
        sides = sides.clamp(min=0, max=1) if clip else sides
        rows, cols = level.shape[-2:]
        grid = (width / steps[index], height / steps[index]) if steps else (cols, rows)
        x = (torch.arange(cols, device=image.device) + 0.5) / grid[0]
        y = (torch.arange(rows, device=image.device) + 0.5) / grid[1]
        y, x = torch.meshgrid(y, x, indexing="ij")
        centres = torch.stack([x.reshape(-1), y.reshape(-1)], dim=-1)
        centres = centres.repeat_interleave(len(sides), dim=0)
        sides = sides.repeat(rows * cols, 1)
        boxes.append(torch.cat([centres - 0.5 * sides, centres + 0.5 * sides], dim=1))
    scale = torch.tensor([width, height, width, height], device=image.device)
    return (torch.cat(boxes) * scale).expand(len(image), -1, -1)


def default_scales(levels: int, min_ratio: float, max_ratio: float) -> list[float]:
    """SSD's box scales when none are given: even steps from min_ratio to max_ratio over the
    levels, then 1 (computed as torchvision does, to the last bit)."""
    if levels == 1:
        return [min_ratio, max_ratio]
    steps = [min_ratio + (max_ratio - min_ratio) * k / (levels - 1.0) for k in range(levels)]
    return [*steps, 1.0]


def decode_boxes(
    deltas: torch.Tensor,
    anchors: torch.Tensor,
    weights: tuple[float, ...] = (1.0, 1.0, 1.0, 1.0),
) -> torch.Tensor:
    """Boxes from their anchors' deltas (dx, dy, dw, dh) over `weights`, as torchvision's
    BoxCoder decodes them: the centre moved by (dx, dy) anchor sizes, the sides scaled by
    exp(dw), exp(dh) (dw, dh clipped at log(1000 / 16))."""
    widths, heights = anchors[:, 2] - anchors[:, 0], anchors[:, 3] - anchors[:, 1]
    centre_x, centre_y = anchors[:, 0] + 0.5 * widths, anchors[:, 1] + 0.5 * heights
    dx, dy, dw, dh = (deltas / deltas.new_tensor(weights)).unbind(-1)
    limit = math.log(1000.0 / 16)
    x, y = dx * widths + centre_x, dy * heights + centre_y
    half_w, half_h = (
        0.5 * (dw.clamp(max=limit).exp() * widths),
        0.5 * (dh.clamp(max=limit).exp() * heights),
    )
    return torch.stack([x - half_w, y - half_h, x + half_w, y + half_h], dim=-1)


def clip_boxes(boxes: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Boxes (x1, y1, x2, y2) clipped to a height x width image."""
    x, y = boxes[..., 0::2].clamp(min=0, max=width), boxes[..., 1::2].clamp(min=0, max=height)
    return torch.stack([x[..., 0], y[..., 0], x[..., 1], y[..., 1]], dim=-1)


def class_nms(
    boxes: torch.Tensor, scores: torch.Tensor, labels: torch.Tensor, iou_thresh: float
) -> torch.Tensor:
    """Greedy non-maximum suppression within each class, as torchvision's batched_nms (in
    plain torch: no compiled kernel): the indices kept, best score first (equal scores in
    index order)."""
    order = scores.argsort(descending=True, stable=True)
    boxes, labels = boxes[order], labels[order]
    keep = torch.zeros(len(order), dtype=torch.bool, device=boxes.device)
    for label in labels.unique():
        members = torch.where(labels == label)[0]
        keep[members] = greedy_nms(boxes[members], iou_thresh)
    return order[keep]


def greedy_nms(boxes: torch.Tensor, iou_thresh: float) -> torch.Tensor:
    """Which boxes, best first, no better kept box overlaps by more than `iou_thresh`. The
    loop runs on the host over one copy of the overlaps: on a GPU it never waits per box."""
    overlaps = (box_iou(boxes, boxes) > iou_thresh).cpu()
    keep = torch.ones(len(boxes), dtype=torch.bool)
    for index in range(len(boxes)):
        if keep[index]:
            keep[index + 1 :] &= ~overlaps[index, index + 1 :]
    return keep.to(boxes.device)


def best_scores(
    scores: torch.Tensor, score_thresh: float, candidates: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """The `candidates` best scores above `score_thresh`, best first, and their indices (a
    stable sort, not topk: equal scores in index order, as flax's top_k keeps them)."""
    kept = torch.where(scores > score_thresh)[0]
    best, order = scores[kept].sort(descending=True, stable=True)
    return best[:candidates], kept[order[:candidates]]


def detection_rows(
    boxes: torch.Tensor,
    scores: torch.Tensor,
    labels: torch.Tensor,
    iou_thresh: float,
    limit: int,
) -> torch.Tensor:
    """The candidates NMS'd within each class, the `limit` best as (limit, 6) rows of x1,
    y1, x2, y2, score, label; past the detections, zeros with label -1."""
    keep = class_nms(boxes, scores, labels, iou_thresh)[:limit]
    rows = boxes.new_zeros(limit, 6)
    rows[:, 5] = -1
    rows[: len(keep)] = torch.cat([boxes[keep], scores[keep, None], labels[keep, None]], dim=1)
    return rows


def select_detections(
    image: torch.Tensor,
    logits: torch.Tensor,
    deltas: torch.Tensor,
    anchors: torch.Tensor,
    levels: list[torch.Tensor],
    score_thresh: float,
    candidates: int,
    iou_thresh: float,
    limit: int,
) -> torch.Tensor:
    """RetinaNet's detections, as torchvision selects them: on each level the `candidates`
    best class scores (sigmoid) above `score_thresh`, their boxes decoded from the anchors
    and clipped to the image; then NMS within each class and the `limit` best. (N, limit, 6)
    rows of x1, y1, x2, y2, score, label, best first; past an image's detections, zeros
    with label -1."""
    height, width = image.shape[-2:]
    positions = [level.shape[-2] * level.shape[-1] for level in levels]
    sizes = [count * (anchors.shape[1] // sum(positions)) for count in positions]
    found = []
    for image_logits, image_deltas, image_anchors in zip(logits, deltas, anchors):
        boxes, scores, labels = [], [], []
        for level_logits, level_deltas, level_anchors in zip(
            image_logits.split(sizes), image_deltas.split(sizes), image_anchors.split(sizes)
        ):
            classes = level_logits.shape[-1]
            best, kept = best_scores(level_logits.sigmoid().flatten(), score_thresh, candidates)
            rows = torch.div(kept, classes, rounding_mode="floor")
            level_boxes = decode_boxes(level_deltas[rows], level_anchors[rows])
            boxes.append(clip_boxes(level_boxes, height, width))
            scores.append(best)
            labels.append(kept % classes)
        boxes, scores, labels = torch.cat(boxes), torch.cat(scores), torch.cat(labels)
        found.append(detection_rows(boxes, scores, labels.to(boxes.dtype), iou_thresh, limit))
    return torch.stack(found)


def softmax_detections(
    image: torch.Tensor,
    logits: torch.Tensor,
    deltas: torch.Tensor,
    boxes: torch.Tensor,
    score_thresh: float,
    candidates: int,
    iou_thresh: float,
    limit: int,
    weights: tuple[float, ...],
) -> torch.Tensor:
    """SSD's detections, as torchvision selects them: the boxes decoded from their deltas
    (over `weights`) and clipped to the image; for each class but the background (0) the
    `candidates` best scores (softmax) above `score_thresh`; then NMS within each class and
    the `limit` best. (N, limit, 6) rows of x1, y1, x2, y2, score, label, best first; past an
    image's detections, zeros with label -1."""
    height, width = image.shape[-2:]
    found = []
    for image_logits, image_deltas, image_boxes in zip(logits, deltas, boxes):
        decoded = clip_boxes(decode_boxes(image_deltas, image_boxes, weights), height, width)
        scores = image_logits.softmax(dim=-1)
        classes = range(1, scores.shape[-1])  # all but the background
        found.append(
            class_detections(decoded, scores, classes, score_thresh, candidates, iou_thresh, limit)
        )
    return torch.stack(found)


def class_detections(
    boxes: torch.Tensor,
    scores: torch.Tensor,
    classes: range,
    score_thresh: float,
    candidates: int,
    iou_thresh: float,
    limit: int,
) -> torch.Tensor:
    """An image's detections from its boxes (rows, 4), or each row's per class (rows,
    classes, 4), and their scores per class (rows, classes): for each of `classes` the
    `candidates` best scores above `score_thresh`, NMS'd within the class, the `limit` best
    as detection_rows gives them."""
    kept_boxes, kept_scores, labels = [], [], []
    for label in classes:
        best, rows = best_scores(scores[:, label], score_thresh, candidates)
        kept_boxes.append(boxes[rows] if boxes.dim() == 2 else boxes[rows, label])
        kept_scores.append(best)
        labels.append(torch.full_like(best, label))
    kept_boxes, kept_scores = torch.cat(kept_boxes), torch.cat(kept_scores)
    return detection_rows(kept_boxes, kept_scores, torch.cat(labels), iou_thresh, limit)


def yolo_detections(
    image: torch.Tensor,
    maps: list[torch.Tensor],
    anchors: tuple[tuple[float, ...], ...],
    score_thresh: float,
    candidates: int,
    iou_thresh: float,
    limit: int,
) -> torch.Tensor:
    """YOLOv3's detections, as darknet's yolo layers find them: on each map, every cell's
    anchors (w, h pairs in input pixels) predict a box, centred at the cell plus
    sigmoid(tx, ty) and sized exp(tw, th) times the anchor, an objectness and class
    scores (sigmoids), a class's score their product; then for each class the `candidates`
    best above `score_thresh`, NMS within each class and the `limit` best. (N, limit, 6)
    rows of x1, y1, x2, y2, score, label, best first; past an image's detections, zeros
    with label -1."""
    height, width = image.shape[-2:]
    boxes, scores = [], []
    for head, pairs in zip(maps, anchors):
        head, predicted = yolo_entries(head, pairs, height, width)
        boxes.append(predicted.flatten(1, 3))
        scores.append((head[..., 4:5].sigmoid() * head[..., 5:].sigmoid()).flatten(1, 3))
    boxes, scores = torch.cat(boxes, dim=1), torch.cat(scores, dim=1)
    classes = range(scores.shape[-1])
    return torch.stack(
        [
            class_detections(
                image_boxes, image_scores, classes, score_thresh, candidates, iou_thresh, limit
            )
            for image_boxes, image_scores in zip(boxes, scores)
        ]
    )


def region_proposals(
    image: torch.Tensor,
    objectness: torch.Tensor,
    deltas: torch.Tensor,
    anchors: torch.Tensor,
    levels: list[torch.Tensor],
    candidates: int,
    iou_thresh: float,
    limit: int,
    score_thresh: float,
    min_size: float,
) -> torch.Tensor:
    """A region proposal network's proposals, as torchvision's RPN filters them: on each
    level the `candidates` best objectness logits, their boxes decoded from the anchors and
    clipped to the image; those under `min_size` a side or `score_thresh` (sigmoid) dropped;
    NMS within each level and the `limit` best. (N, limit, 4) boxes, best first; past an
    image's proposals, zeros (boxes of no size, which pool nothing a detection keeps)."""
    height, width = image.shape[-2:]
    positions = [level.shape[-2] * level.shape[-1] for level in levels]
    sizes = [count * (anchors.shape[1] // sum(positions)) for count in positions]
    objectness, deltas = objectness.detach(), deltas.detach()  # no gradient through boxes
    found = []
    for image_logits, image_deltas, image_anchors in zip(objectness[..., 0], deltas, anchors):
        rows, labels, start = [], [], 0
        for index, size in enumerate(sizes):
            _, kept = best_scores(image_logits[start : start + size], -math.inf, candidates)
            rows.append(start + kept)
            labels.append(torch.full_like(kept, index))
            start += size
        rows, labels = torch.cat(rows), torch.cat(labels)
        boxes = clip_boxes(decode_boxes(image_deltas[rows], image_anchors[rows]), height, width)
        scores = image_logits[rows].sigmoid()
        sides = boxes[:, 2:] - boxes[:, :2]
        valid = (sides >= min_size).all(dim=1) & (scores >= score_thresh)
        boxes, scores, labels = boxes[valid], scores[valid], labels[valid]
        keep = class_nms(boxes, scores, labels, iou_thresh)[:limit]
        found.append(torch.cat([boxes[keep], boxes.new_zeros(limit - len(keep), 4)]))
    return torch.stack(found)


def roi_align(
    image: torch.Tensor,
    boxes: torch.Tensor,
    levels: list[torch.Tensor],
    size: int,
    sampling_ratio: int,
    canonical_scale: float,
    canonical_level: int,
) -> torch.Tensor:
    """Each box's features pooled to size x size, as torchvision's MultiScaleRoIAlign: a
    box of side s (the root of its area) pools from level floor(canonical_level +
    log2(s / canonical_scale)) of those given (level k has stride 2^k, read from its size),
    by RoIAlign. (N·R, C, size, size), the boxes (N, R, 4, or more columns after them) of
    each image in turn."""
    scales = [2.0 ** round(math.log2(level.shape[-2] / image.shape[-2])) for level in levels]
    first, last = -math.log2(scales[0]), -math.log2(scales[-1])
    rois = boxes[..., :4].reshape(-1, 4)  # any columns after the box are not read
    owners = torch.arange(len(boxes), device=boxes.device).repeat_interleave(boxes.shape[1])
    sides = ((rois[:, 2] - rois[:, 0]) * (rois[:, 3] - rois[:, 1])).sqrt()
    chosen = torch.floor(canonical_level + torch.log2(sides / canonical_scale) + 1e-6)
    chosen = chosen.clamp(first, last) - first
    pooled = rois.new_zeros(len(rois), levels[0].shape[1], size, size)
    for index, (level, scale) in enumerate(zip(levels, scales)):
        rows = torch.where(chosen == index)[0]
        pooled[rows] = align_boxes(level, owners[rows], rois[rows] * scale, size, sampling_ratio)
    return pooled


def align_boxes(
    level: torch.Tensor, owners: torch.Tensor, rois: torch.Tensor, size: int, sampling_ratio: int
) -> torch.Tensor:
    """RoIAlign on one map, as torchvision's roi_align (aligned=False): each box (in the
    map's pixels, of image `owners[i]`, at least 1 a side) split into size x size bins, each
    the mean of sampling_ratio² bilinear samples spread evenly over it. (rows, C, size,
    size)."""
    height, width = level.shape[-2:]
    start, bins = rois[:, :2], (rois[:, 2:] - rois[:, :2]).clamp(min=1.0) / size  # (x, y)
    x_points = bin_points(start[:, 0], bins[:, 0], size, sampling_ratio, sampling_ratio)
    y_points = bin_points(start[:, 1], bins[:, 1], size, sampling_ratio, sampling_ratio)
    x_low, x_high, x_weights = bilinear_taps(x_points, width)
    y_low, y_high, y_weights = bilinear_taps(y_points, height)
    images = owners[:, None, None]
    values = 0
    for y_taps, y_weight in ((y_low, y_weights[..., 0]), (y_high, y_weights[..., 1])):
        for x_taps, x_weight in ((x_low, x_weights[..., 0]), (x_high, x_weights[..., 1])):
            taps = level[images, :, y_taps[:, :, None], x_taps[:, None, :]]  # (rows, y, x, C)
            values = values + (y_weight[:, :, None] * x_weight[:, None, :])[..., None] * taps
    grid = values.reshape(len(rois), size, sampling_ratio, size, sampling_ratio, len(level[0]))
    grid = grid.permute(0, 5, 1, 3, 2, 4).contiguous()  # (rows, C, size, size, samples)
    return grid.sum(dim=(-1, -2)) / sampling_ratio**2


def bin_points(
    starts: torch.Tensor, bins: torch.Tensor, size: int, ratios: Any, most: int
) -> torch.Tensor:
    """Where RoIAlign samples along one axis of each box (its start and bin length): sample
    i of bin p at start + p·bin + (i + 0.5)·bin / ratio, for i below `most` (the ratio, or
    more, per box, for samples that align_weights drops). (rows, size·most)."""
    steps = torch.arange(size, device=starts.device).repeat_interleave(most)
    within = torch.arange(most, device=starts.device).repeat(size) + 0.5
    return starts[:, None] + steps * bins[:, None] + within * bins[:, None] / ratios


def bilinear_taps(
    points: torch.Tensor, length: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Where bilinear sampling at `points` along an axis of `length` pixels reads, as
    RoIAlign does: the pixel below and above each and their weights (points, 2); a point
    beyond -1 or `length` weighs nothing, one under 0 reads pixel 0, one past the last
    pixel reads the last."""
    outside = (points < -1.0) | (points > length)
    points = points.clamp(min=0)
    low = points.floor()
    edge = low >= length - 1
    low = torch.where(edge, length - 1, low)
    points = torch.where(edge, low, points)
    high = torch.where(edge, low, low + 1)
    fraction = points - low
    weights = torch.stack([1 - fraction, fraction], dim=-1) * ~outside[..., None]
    return low.long(), high.long(), weights


def roi_detections(
    image: torch.Tensor,
    logits: torch.Tensor,
    deltas: torch.Tensor,
    proposals: torch.Tensor,
    score_thresh: float,
    iou_thresh: float,
    limit: int,
    weights: tuple[float, ...],
    min_size: float,
) -> torch.Tensor:
    """Faster R-CNN's detections, as torchvision's RoIHeads selects them: each proposal's
    box for each class decoded from its deltas (over `weights`) and clipped to the image;
    for each class but the background (0) the boxes whose score (softmax) is above
    `score_thresh` and sides reach `min_size`; NMS within each class and the `limit` best.
    (N, limit, 6) rows of x1, y1, x2, y2, score, label, best first; past an image's
    detections, zeros with label -1."""
    height, width = image.shape[-2:]
    count, classes = proposals.shape[1], logits.shape[-1]
    found = []
    for image_logits, image_deltas, image_proposals in zip(
        logits.unflatten(0, (-1, count)), deltas.unflatten(0, (-1, count)), proposals
    ):
        anchors = image_proposals.repeat_interleave(classes, dim=0)
        boxes = decode_boxes(image_deltas.reshape(-1, 4), anchors, weights)
        boxes = clip_boxes(boxes, height, width).reshape(count, classes, 4)
        large = (boxes[..., 2:] - boxes[..., :2] >= min_size).all(dim=-1)
        scores = image_logits.softmax(dim=-1).where(large, 0.0)  # a small box scores nothing
        found.append(
            class_detections(
                boxes, scores, range(1, classes), score_thresh, count, iou_thresh, limit
            )
        )
    return torch.stack(found)


def paste_masks(
    image: torch.Tensor, logits: torch.Tensor, detections: torch.Tensor
) -> torch.Tensor:
    """Mask R-CNN's masks, as torchvision pastes them (paste_masks_in_image): each
    detection's mask, the sigmoid of its label's logits (M x M), padded by a pixel and
    resized bilinearly to its box, enlarged alike and cut to whole pixels, then put into the
    image there. (N, R, H, W) probabilities; zeros past an image's detections."""
    height, width = image.shape[-2:]
    labels = detections[..., 5].flatten().long()
    masks = logits[torch.arange(len(labels), device=labels.device), labels.clamp(min=0)]
    masks = F.pad(masks.sigmoid(), (1, 1, 1, 1)) * (labels >= 0)[:, None, None]
    size = masks.shape[-1]  # M + 2
    boxes = detections[..., :4].reshape(-1, 4)
    centres, halves = (boxes[:, :2] + boxes[:, 2:]) * 0.5, (boxes[:, 2:] - boxes[:, :2]) * 0.5
    scale = torch.tensor(size, dtype=torch.float32) / (size - 2)
    halves = halves * scale
    corners = torch.cat([centres - halves, centres + halves], dim=1).long()  # toward zero
    across = resize_taps(corners[:, 0], corners[:, 2], size, width)  # (rows, W) each
    down = resize_taps(corners[:, 1], corners[:, 3], size, height)  # (rows, H)
    rows = sum(  # (rows, M + 2, W): each mask row resized across
        masks.gather(2, taps[:, None].expand(-1, size, -1)) * weight[:, None]
        for taps, weight in zip(across[:2], across[2:])
    )
    pasted = sum(
        rows.gather(1, taps[:, :, None].expand(-1, -1, width)) * weight[:, :, None]
        for taps, weight in zip(down[:2], down[2:])
    )
    return pasted.reshape(*detections.shape[:2], height, width)


def resize_taps(
    start: torch.Tensor, end: torch.Tensor, size: int, length: int
) -> tuple[torch.Tensor, ...]:
    """For each box (from pixel `start` to `end` along an axis) and each pixel of the image
    along it, where F.interpolate (bilinear, align_corners=False) resizing `size` values to
    the box's pixels (at least 1) reads for that pixel: the value below and above and their
    weights, which are zero for a pixel outside the box. (rows, length) each."""
    offsets = torch.arange(length, device=start.device) - start[:, None]
    inside = (offsets >= 0) & (offsets <= (end - start)[:, None])
    # size / pixels as F.interpolate divides (torch's `number / tensor` is a reciprocal times)
    step = torch.tensor(float(size), device=start.device) / (end - start + 1).clamp(min=1)
    source = ((offsets + 0.5) * step[:, None] - 0.5).clamp(min=0)
    low = source.long().clamp(max=size - 1)
    high = (low + 1).clamp(max=size - 1)
    fraction = (source - low) * inside
    return low, high, (1 - fraction) * inside, fraction


def yolo_entries(
    head: torch.Tensor, pairs: tuple[float, ...], height: int, width: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """A yolo head's map (N, anchors·(5 + classes), rows, cols) as each anchor's entries
    (N, anchors, rows, cols, 5 + classes), and the boxes they predict (x1, y1, x2, y2 in
    input pixels): centred at the cell plus sigmoid(tx, ty), sized exp(tw, th) times the
    anchor (`pairs` of w, h)."""
    count, _, rows, cols = head.shape
    sizes = head.new_tensor(pairs).reshape(-1, 1, 1, 2)  # (anchors, 1, 1, w h)
    head = head.reshape(count, len(sizes), -1, rows, cols).permute(0, 1, 3, 4, 2)
    y, x = torch.meshgrid(
        torch.arange(rows, device=head.device),
        torch.arange(cols, device=head.device),
        indexing="ij",
    )
    centres = torch.stack([x, y], dim=-1) + head[..., :2].sigmoid()
    centres = centres * head.new_tensor([width / cols, height / rows])
    halves = head[..., 2:4].exp() * sizes / 2
    return head, torch.cat([centres - halves, centres + halves], dim=-1)


def yolo_loss(
    image: torch.Tensor,
    maps: list[torch.Tensor],
    targets: list[dict[str, torch.Tensor]],
    anchors: tuple[tuple[float, ...], ...],
    ignore_thresh: float,
) -> torch.Tensor:
    """YOLOv3's training loss, whose gradient on each map is the delta of darknet's yolo
    layers (forward_yolo_layer), summed over the images. A target box is the charge of the
    anchor, of all the maps', whose shape overlaps its own best (the first of a tie), in
    the cell of its centre: binary cross entropy of its tx, ty against the centre's place in
    the cell and half the squared error of tw, th against log(side / anchor), both times 2
    less the box's share of the image; its objectness against 1 and its class scores
    against its boxes' classes (binary cross entropy). Every other anchor's objectness
    counts against 0, unless its box overlaps a target box by more than `ignore_thresh`
    (IoU). Of boxes in one anchor's cell, the last one's box counts."""
    height, width = image.shape[-2:]
    sizes = image.new_tensor([size for pairs in anchors for size in pairs]).reshape(-1, 2)
    total = image.new_zeros(())
    for index, target in enumerate(targets):
        boxes = target["boxes"].to(image.dtype)
        sides = boxes[:, 2:] - boxes[:, :2]
        centred = torch.cat([-sides / 2, sides / 2], dim=1)  # shapes only, as darknet's
        best = box_iou(centred, torch.cat([-sizes / 2, sizes / 2], dim=1)).argmax(dim=1)
        shares = (boxes[:, :2] + boxes[:, 2:]) / 2 / image.new_tensor([width, height])
        scale = 2 - (sides / image.new_tensor([width, height])).prod(dim=-1)
        start = 0
        for head, pairs in zip(maps, anchors):
            entries, predicted = yolo_entries(head[index : index + 1], pairs, height, width)
            count, rows, cols = entries.shape[1:4]
            centres = shares * image.new_tensor([cols, rows])  # in cells, as darknet's x * w
            last_cell = image.new_tensor([cols - 1, rows - 1])
            cells = torch.minimum(centres.floor().clamp(min=0), last_cell)
            flat = ((best - start) * rows + cells[:, 1].long()) * cols + cells[:, 0].long()
            flat = torch.where((best >= start) & (best < start + count), flat, -1)
            wanted = torch.cat([centres - cells, torch.log(sides / sizes[best])], dim=1)
            charge = (flat, target["labels"], wanted, scale)
            overlaps = box_iou(predicted.reshape(-1, 4), boxes)
            entries = entries.reshape(-1, entries.shape[-1])
            total = total + yolo_map_loss(entries, overlaps, charge, ignore_thresh)
            start += count
    return total


def yolo_map_loss(
    entries: torch.Tensor,
    overlaps: torch.Tensor,
    charge: tuple[torch.Tensor, ...],
    ignore_thresh: float,
) -> torch.Tensor:
    """yolo_loss on one image's map: its anchors' entries (anchor cells, 5 + classes), their
    boxes' IoU with the target boxes, and the charge of each box: its anchor cell (-1 off
    the map), label, wanted tx, ty, tw, th and the scale of their losses."""
    flat, labels, wanted, scale = charge
    charged = flat >= 0
    order = torch.arange(len(flat), device=flat.device)
    later = (flat[:, None] == flat[None]) & (order[:, None] < order[None])
    last = charged & ~later.any(dim=1)
    nearest = torch.cat([overlaps, overlaps.new_zeros(len(overlaps), 1)], dim=1).amax(dim=1)
    truth = torch.zeros_like(entries[:, 4])
    truth[flat[charged]] = 1
    weight = (nearest <= ignore_thresh).to(entries.dtype)
    weight[flat[charged]] = 1
    objectness = F.binary_cross_entropy_with_logits(entries[:, 4], truth, weight, reduction="sum")
    classes = torch.zeros_like(entries[:, 5:])
    classes[flat[charged], labels[charged]] = 1
    chosen = entries[flat[last]]
    places = F.binary_cross_entropy_with_logits(chosen[:, :2], wanted[last, :2], reduction="none")
    shapes = (wanted[last, 2:] - chosen[:, 2:4]) ** 2 / 2
    boxes = (scale[last, None] * (places + shapes)).sum()
    scores = F.binary_cross_entropy_with_logits(chosen[:, 5:], classes[flat[last]], reduction="sum")
    return objectness + boxes + scores


def box_iou(boxes: torch.Tensor, others: torch.Tensor) -> torch.Tensor:
    """Intersection over union of every box (x1, y1, x2, y2) with every other: (len, len)."""
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    other_areas = (others[:, 2] - others[:, 0]) * (others[:, 3] - others[:, 1])
    corners = torch.max(boxes[:, None, :2], others[None, :, :2])
    far_corners = torch.min(boxes[:, None, 2:], others[None, :, 2:])
    sides = (far_corners - corners).clamp(min=0)
    inter = sides[..., 0] * sides[..., 1]
    return inter / (areas[:, None] + other_areas[None, :] - inter)


def match_anchors(
    anchors: torch.Tensor,
    targets: list[dict[str, torch.Tensor]],
    fg_iou_thresh: float,
    bg_iou_thresh: float,
    low_quality: str,
) -> torch.Tensor:
    """Each anchor's target box, as torchvision's Matcher: the index of the box it overlaps
    most where that IoU reaches `fg_iou_thresh`, -1 below `bg_iou_thresh` (background), -2
    in between (ignored). Low-quality matches: "keep", every box's best anchors (all ties)
    keep their own best box; "force" (SSDMatcher), every box's best anchor is matched to
    it; "off", neither. `targets`: per image, "boxes" (x1, y1, x2, y2) and "labels".
    (N, rows)"""
    matched = torch.full(anchors.shape[:2], -1, dtype=torch.int64, device=anchors.device)
    for index, target in enumerate(targets):
        if len(target["boxes"]) == 0:
            continue
        overlaps = box_iou(target["boxes"], anchors[index])
        best, found = overlaps.max(dim=0)
        matches = found.clone()
        matches[best < bg_iou_thresh] = -1
        matches[(best >= bg_iou_thresh) & (best < fg_iou_thresh)] = -2
        if low_quality == "keep":
            _, closest = torch.where(overlaps == overlaps.max(dim=1).values[:, None])
            matches[closest] = found[closest]
        elif low_quality == "force":
            matches[overlaps.argmax(dim=1)] = torch.arange(len(overlaps), device=anchors.device)
        matched[index] = matches
    return matched


def focal_loss(
    logits: torch.Tensor,
    matched: torch.Tensor,
    targets: list[dict[str, torch.Tensor]],
    alpha: float,
    gamma: float,
) -> torch.Tensor:
    """RetinaNet's classification loss, as torchvision computes it: sigmoid focal loss
    against each foreground anchor's box label (one-hot), over every anchor not ignored,
    summed per image over its foreground count, averaged over the images."""
    losses = []
    for image_logits, matches, target in zip(logits, matched, targets):
        foreground = matches >= 0
        truth = torch.zeros_like(image_logits)
        truth[foreground, target["labels"][matches[foreground]]] = 1.0
        valid = matches != -2
        image_logits, truth = image_logits[valid], truth[valid]
        probabilities = image_logits.sigmoid()
        cross_entropy = F.binary_cross_entropy_with_logits(image_logits, truth, reduction="none")
        right = probabilities * truth + (1 - probabilities) * (1 - truth)
        weights = alpha * truth + (1 - alpha) * (1 - truth)
        loss = (weights * cross_entropy * (1 - right) ** gamma).sum()
        losses.append(loss / foreground.sum().clamp(min=1))
    return sum(losses) / max(1, len(losses))


def encode_boxes(
    boxes: torch.Tensor,
    anchors: torch.Tensor,
    weights: tuple[float, ...] = (1.0, 1.0, 1.0, 1.0),
) -> torch.Tensor:
    """The deltas (dx, dy, dw, dh) that move each anchor onto its box, times `weights`, as
    torchvision's BoxCoder encodes them (decode_boxes undoes it)."""
    widths, heights = anchors[:, 2] - anchors[:, 0], anchors[:, 3] - anchors[:, 1]
    centre_x, centre_y = anchors[:, 0] + 0.5 * widths, anchors[:, 1] + 0.5 * heights
    box_widths, box_heights = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    box_x, box_y = boxes[:, 0] + 0.5 * box_widths, boxes[:, 1] + 0.5 * box_heights
    wx, wy, ww, wh = weights
    return torch.stack(
        [
            wx * (box_x - centre_x) / widths,
            wy * (box_y - centre_y) / heights,
            ww * torch.log(box_widths / widths),
            wh * torch.log(box_heights / heights),
        ],
        dim=1,
    )


def box_l1_loss(
    deltas: torch.Tensor,
    anchors: torch.Tensor,
    matched: torch.Tensor,
    targets: list[dict[str, torch.Tensor]],
) -> torch.Tensor:
    """RetinaNet's box regression loss, as torchvision computes it: L1 between the deltas of
    the foreground anchors and those that move each onto its box, summed per image over its
    foreground count, averaged over the images."""

    def l1(deltas: torch.Tensor, anchors: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
        return F.l1_loss(deltas, encode_boxes(boxes, anchors), reduction="sum")

    return foreground_box_loss(deltas, anchors, matched, targets, l1)


def box_giou_loss(
    deltas: torch.Tensor,
    anchors: torch.Tensor,
    matched: torch.Tensor,
    targets: list[dict[str, torch.Tensor]],
    eps: float,
) -> torch.Tensor:
    """RetinaNet's box regression loss of torchvision's "giou" type (retinanet_resnet50_fpn_v2):
    1 - generalized IoU between each foreground anchor's decoded box and its box, summed per
    image over its foreground count, averaged over the images."""

    def giou(deltas: torch.Tensor, anchors: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
        return (1 - generalized_iou(decode_boxes(deltas, anchors), boxes, eps)).sum()

    return foreground_box_loss(deltas, anchors, matched, targets, giou)


def foreground_box_loss(
    deltas: torch.Tensor,
    anchors: torch.Tensor,
    matched: torch.Tensor,
    targets: list[dict[str, torch.Tensor]],
    loss: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor],
) -> torch.Tensor:
    """`loss` of the foreground anchors' deltas, anchors and matched boxes, per image over its
    foreground count, averaged over the images (torchvision's RetinaNet regression head)."""
    losses = []
    for image_deltas, image_anchors, matches, target in zip(deltas, anchors, matched, targets):
        foreground = torch.where(matches >= 0)[0]
        boxes = target["boxes"][matches[foreground]]
        image_loss = loss(image_deltas[foreground], image_anchors[foreground], boxes)
        losses.append(image_loss / max(1, len(foreground)))
    return sum(losses) / max(1, len(losses))


def generalized_iou(boxes: torch.Tensor, others: torch.Tensor, eps: float) -> torch.Tensor:
    """The generalized IoU of each box (x1, y1, x2, y2) with the other of its row, as
    torchvision's generalized_box_iou_loss: the IoU less the share of the smallest box
    enclosing both that neither covers. (rows,)"""
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    other_areas = (others[:, 2] - others[:, 0]) * (others[:, 3] - others[:, 1])
    sides = torch.min(boxes[:, 2:], others[:, 2:]) - torch.max(boxes[:, :2], others[:, :2])
    inter = sides.clamp(min=0).prod(dim=1)
    union = areas + other_areas - inter
    hull = torch.max(boxes[:, 2:], others[:, 2:]) - torch.min(boxes[:, :2], others[:, :2])
    hull_area = hull.prod(dim=1)
    return inter / (union + eps) - (hull_area - union) / (hull_area + eps)


def hard_negative_loss(
    logits: torch.Tensor,
    matched: torch.Tensor,
    targets: list[dict[str, torch.Tensor]],
    negatives_per_positive: float,
) -> torch.Tensor:
    """SSD's classification loss, as torchvision computes it: cross entropy of every row
    labelled by its box (background 0 where unmatched), summed over the foreground rows and,
    per image, the `negatives_per_positive` times as many background rows of highest loss;
    over the batch's foreground count."""
    truth = torch.zeros_like(matched)
    for index, target in enumerate(targets):
        foreground = torch.where(matched[index] >= 0)[0]
        truth[index, foreground] = target["labels"][matched[index, foreground]]
    losses = F.cross_entropy(logits.flatten(0, 1), truth.flatten(), reduction="none")
    losses = losses.view(truth.shape)
    foreground = truth > 0
    hardness = losses.masked_fill(foreground, -math.inf)
    ranks = hardness.argsort(dim=1, descending=True, stable=True).argsort(dim=1)
    hardest = ranks < negatives_per_positive * foreground.sum(dim=1, keepdim=True)
    count = max(1, int((matched >= 0).sum()))
    return (losses[foreground].sum() + losses[hardest].sum()) / count


def box_smooth_l1_loss(
    deltas: torch.Tensor,
    anchors: torch.Tensor,
    matched: torch.Tensor,
    targets: list[dict[str, torch.Tensor]],
    beta: float,
    weights: tuple[float, ...],
    normalizer: str,
) -> torch.Tensor:
    """SSD's or an RPN's box regression loss, as torchvision computes them: smooth L1 between
    the deltas of the foreground rows and those that move each anchor onto its box (times
    `weights`), summed over the batch and divided by its "foreground" count or by its rows
    not ignored ("sampled": an RPN's sample)."""
    losses = []
    for image_deltas, image_anchors, matches, target in zip(deltas, anchors, matched, targets):
        foreground = torch.where(matches >= 0)[0]
        boxes = target["boxes"][matches[foreground]]
        truth = encode_boxes(boxes, image_anchors[foreground], weights)
        losses.append(F.smooth_l1_loss(image_deltas[foreground], truth, reduction="sum", beta=beta))
    counted = matched >= 0 if normalizer == "foreground" else matched >= -1
    return sum(losses) / max(1, int(counted.sum()))


def sample_matches(
    matched: torch.Tensor, batch_size_per_image: int, positive_fraction: float
) -> torch.Tensor:
    """A random sample of each image's matched rows for training, as torchvision's
    BalancedPositiveNegativeSampler draws it (torch.randperm over the foreground rows, then
    the background ones, image by image): up to `batch_size_per_image` rows, foreground up to
    `positive_fraction` of them. (N, rows): the match where sampled, -1 for sampled
    background, -2 elsewhere."""
    return torch.stack(
        [sample_rows(matches, batch_size_per_image, positive_fraction) for matches in matched]
    )


def sample_rows(
    matches: torch.Tensor, batch_size_per_image: int, positive_fraction: float
) -> torch.Tensor:
    """One image's sample of its matched rows, as sample_matches draws it."""
    foreground, background = torch.where(matches >= 0)[0], torch.where(matches == -1)[0]
    positives = min(len(foreground), int(batch_size_per_image * positive_fraction))
    negatives = min(len(background), batch_size_per_image - positives)
    foreground = foreground[torch.randperm(len(foreground), device=matches.device)[:positives]]
    background = background[torch.randperm(len(background), device=matches.device)[:negatives]]
    sampled = torch.full_like(matches, -2)
    sampled[foreground] = matches[foreground]
    sampled[background] = -1
    return sampled


def sample_proposals(
    proposals: torch.Tensor,
    targets: list[dict[str, torch.Tensor]],
    batch_size_per_image: int,
    positive_fraction: float,
    fg_iou_thresh: float,
    bg_iou_thresh: float,
) -> torch.Tensor:
    """Training samples of each image's proposals (rows of no size are padding) and its
    target boxes, added to them, as torchvision's RoIHeads draws them: matched without
    low-quality matches, then sampled as sample_matches does. (N, batch_size_per_image, 5)
    rows of x1, y1, x2, y2 and the target box's index (-1 for background), in the boxes'
    order; past an image's samples, zeros with -2."""
    found = []
    for image_proposals, target in zip(proposals, targets):
        sides = image_proposals[:, 2:] - image_proposals[:, :2]
        real = image_proposals[(sides > 0).all(dim=1)]
        boxes = torch.cat([real, target["boxes"].to(real.dtype)])
        matches = match_anchors(boxes[None], [target], fg_iou_thresh, bg_iou_thresh, "off")[0]
        sampled = sample_rows(matches, batch_size_per_image, positive_fraction)
        kept = torch.where(sampled >= -1)[0]
        rows = boxes.new_zeros(batch_size_per_image, 5)
        rows[:, 4] = -2
        rows[: len(kept)] = torch.cat([boxes[kept], sampled[kept, None].to(boxes.dtype)], dim=1)
        found.append(rows)
    return torch.stack(found)


def objectness_loss(logits: torch.Tensor, sampled: torch.Tensor) -> torch.Tensor:
    """An RPN's objectness loss, as torchvision computes it: binary cross entropy of each
    sampled row's logit against 1 for foreground and 0 for background, averaged over the
    batch's samples."""
    chosen = sampled >= -1
    truth = (sampled[chosen] >= 0).to(logits.dtype)
    return F.binary_cross_entropy_with_logits(logits[..., 0][chosen], truth)


def sample_labels(samples: torch.Tensor, targets: list[dict[str, torch.Tensor]]) -> torch.Tensor:
    """Each sample's class: its target box's label, 0 for background, -1 past the samples."""
    labels = []
    for image_samples, target in zip(samples, targets):
        matches = image_samples[:, 4].long()
        found = torch.zeros_like(matches)
        if len(target["labels"]):
            found = target["labels"][matches.clamp(min=0)]
        labels.append(torch.where(matches >= 0, found, torch.where(matches == -1, 0, -1)))
    return torch.stack(labels)


def roi_classification_loss(
    logits: torch.Tensor, samples: torch.Tensor, targets: list[dict[str, torch.Tensor]]
) -> torch.Tensor:
    """Fast R-CNN's classification loss, as torchvision computes it: cross entropy of each
    sampled proposal's class logits against its box's label (0 for background), averaged
    over the samples."""
    labels = sample_labels(samples, targets).flatten()
    return F.cross_entropy(logits, labels, ignore_index=-1)


def foreground_samples(samples: torch.Tensor, limit: int) -> torch.Tensor:
    """Each image's foreground samples (those of sample_proposals matched to a target box),
    as torchvision's RoIHeads feeds its mask head in training: (N, limit, 5) in the samples'
    order, then zeros with -2."""
    kept = torch.argsort((samples[..., 4] < 0).int(), dim=1, stable=True)[:, :limit]
    rows = samples.gather(1, kept[..., None].expand(-1, -1, 5))
    empty = samples.new_tensor([0.0, 0.0, 0.0, 0.0, -2.0])
    return torch.where(rows[..., 4:] >= 0, rows, empty)


def mask_loss(
    logits: torch.Tensor, samples: torch.Tensor, targets: list[dict[str, torch.Tensor]]
) -> torch.Tensor:
    """Mask R-CNN's mask loss, as torchvision computes it: binary cross entropy of each
    foreground sample's mask logits for its box's class against its box's target mask
    ("masks", 0 or 1 per pixel) cropped to the sample and pooled to the logits' size,
    averaged over those samples' pixels."""
    size = logits.shape[-1]
    logits = logits.reshape(*samples.shape[:2], *logits.shape[1:])
    chosen, truth = [], []
    for image_logits, image_samples, target in zip(logits, samples, targets):
        foreground = torch.where(image_samples[:, 4] >= 0)[0]
        matches = image_samples[foreground, 4].long()
        chosen.append(image_logits[foreground, target["labels"][matches]])
        masks = target["masks"][matches].to(logits.dtype)
        truth.append(crop_masks(masks, image_samples[foreground, :4], size))
    if not sum(map(len, chosen)):
        return logits.sum() * 0  # no foreground: a zero that keeps the graph
    return F.binary_cross_entropy_with_logits(torch.cat(chosen), torch.cat(truth))


def crop_masks(masks: torch.Tensor, boxes: torch.Tensor, size: int) -> torch.Tensor:
    """Each box's crop of its mask (rows, H, W) pooled to size x size, as torchvision's
    project_masks_on_boxes does: RoIAlign (aligned=False) with its adaptive sampling ratio,
    as a matrix of sample weights per axis. (rows, size, size)."""
    rows = align_weights(boxes[:, 1], boxes[:, 3], size, masks.shape[-2])
    columns = align_weights(boxes[:, 0], boxes[:, 2], size, masks.shape[-1])
    return rows @ masks @ columns.transpose(1, 2)


def align_weights(starts: torch.Tensor, ends: torch.Tensor, size: int, length: int) -> torch.Tensor:
    """RoIAlign's sampling along one axis of `length` pixels as a matrix (rows, size,
    length): each bin's mean weight on each pixel over its ceil(bin) samples (the adaptive
    ratio; a box longer than the axis samples as one as long would)."""
    bins = (ends - starts).clamp(min=1.0) / size
    most = math.ceil(length / size)
    ratios = bins.ceil().clamp(max=most)[:, None]
    low, high, weights = bilinear_taps(bin_points(starts, bins, size, ratios, most), length)
    taken = torch.arange(most, device=starts.device).repeat(size) < ratios
    weights = weights * (taken / ratios)[..., None]
    matrix = weights.new_zeros(len(starts), size * most, length)
    matrix.scatter_add_(2, low[..., None], weights[..., :1])
    matrix.scatter_add_(2, high[..., None], weights[..., 1:])
    return matrix.reshape(len(starts), size, most, length).sum(dim=2)


def roi_box_loss(
    deltas: torch.Tensor,
    samples: torch.Tensor,
    targets: list[dict[str, torch.Tensor]],
    beta: float,
    weights: tuple[float, ...],
) -> torch.Tensor:
    """Fast R-CNN's box regression loss, as torchvision computes it: smooth L1 between each
    foreground sample's deltas for its box's class and those that move the sample onto its
    box (times `weights`), summed and divided by the number of samples."""
    labels = sample_labels(samples, targets)
    deltas = deltas.reshape(*labels.shape, -1, 4)
    losses = []
    for image_deltas, image_labels, image_samples, target in zip(deltas, labels, samples, targets):
        foreground = torch.where(image_labels > 0)[0]
        boxes = target["boxes"][image_samples[foreground, 4].long()]
        truth = encode_boxes(boxes, image_samples[foreground, :4], weights)
        chosen = image_deltas[foreground, image_labels[foreground]]
        losses.append(F.smooth_l1_loss(chosen, truth, reduction="sum", beta=beta))
    return sum(losses) / max(1, int((labels >= 0).sum()))
