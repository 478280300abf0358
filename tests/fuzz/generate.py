"""A generator of random valid specs (nnsmith-style): a trunk of ops over an image, then tokens
or a vector, with model params in expressions, blocks with params (residual, strided with a
conditional projection, parallel branches, numbered sequences), `repeat` with the loop
index, `when`, `frozen`, `names`, `branches`, `seq`, `shared`, several outputs, `init:` rules
and a detection head with its `postprocess:` stage
(some under `when:` the model's flag).

It tracks shapes with its own rules (PyTorch's output-size formulas), so that what it writes
is valid; archc's checker and the frameworks are then held to each other.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass, field


@dataclass
class Value:
    name: str
    shape: tuple[int, ...]
    """Per sample: (C, H, W) images, (L, D) tokens, (D,) vectors."""
    channels_last: bool = False


@dataclass
class Spec:
    rng: random.Random
    lines: list[str] = field(default_factory=list)
    blocks: list[str] = field(default_factory=list)
    values: list[Value] = field(default_factory=list)
    count: int = 0
    width: int = 8
    """The model param `w` (the trunk's width)."""

    def name(self, prefix: str = "n") -> str:
        """A fresh node name; now and then one Python cannot spell (`n-3`, `class3`)."""
        self.count += 1
        joint = self.rng.choice(["", "", "", "-", "_"])
        return f"{self.rng.choice([prefix, prefix, 'class', 'def'])}{joint}{self.count}"

    def add(self, text: str, value: Value) -> None:
        """A node of the model's body; now and then frozen, for good or by the param `flag`."""
        if text.startswith("{") and self.rng.random() < 0.1:
            text = f"{text[:-1]}, frozen: {self.rng.choice(['true', 'flag', 'not flag'])}}}"
        self.lines.append(f"  {value.name}: {text}")
        self.values.append(value)


def conv_size(size: int, kernel: int, stride: int, padding: int, dilation: int = 1) -> int:
    return (size + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1


def pool_size(size: int, kernel: int, stride: int, padding: int, ceil: bool) -> int:
    out = (size + 2 * padding - kernel + (stride - 1 if ceil else 0)) // stride + 1
    if ceil and (out - 1) * stride >= size + padding:
        out -= 1
    return out


def image_step(spec: Spec, x: Value) -> None:
    """One op (or block) on the image `x`."""
    rng = spec.rng
    c, h, w = x.shape
    choice = rng.choice(
        [
            "conv",
            "conv",
            "conv_w",
            "norm",
            "act",
            "pool",
            "avg",
            "residual",
            "down",
            "parallel",
            "heads",
            "seq",
            "shuffle",
            "slice",
            "concat",
            "upsample",
            "dropout",
            "frozen",
            "drop_path",
            "crop",
            "resize",
            "mul",
            "tconv",
            "grow",
            "switch",
            "pair",
            "learned",
            "layer_norm",
            "group_norm",
            "either",
            "shared",
            "l2_normalize",
        ]
    )
    if choice == "shared":
        shared_step(spec, x)
        return
    name = spec.name()
    frm = f", from: {x.name}" if spec.values[-1] is not x else ""
    if choice in ("conv", "conv_w"):
        kernel, stride, dilation = (
            rng.choice([1, 3, 5]),
            rng.choice([1, 1, 2]),
            rng.choice([1, 1, 2]),
        )
        padding = rng.choice([0, kernel // 2 * dilation])
        if conv_size(min(h, w), kernel, stride, padding, dilation) < 1:
            kernel, padding, dilation = 1, 0, 1
        groups = rng.choice([g for g in (1, 2, 4) if c % g == 0])
        if choice == "conv_w":  # the width from the model param, a multiple of the groups
            out, text = spec.width * groups, f"w * {groups}" if groups > 1 else "w"
        else:
            out = groups * rng.choice([1, 2, 3, 4])
            text = str(out)
        bias = rng.choice(["true", "false"])
        shape = (
            out,
            conv_size(h, kernel, stride, padding, dilation),
            conv_size(w, kernel, stride, padding, dilation),
        )
        spec.add(
            f"{{op: conv2d, out: {text}, kernel: {kernel}, stride: {stride}, padding: {padding}, "
            f"dilation: {dilation}, groups: {groups}, bias: {bias}{frm}}}",
            Value(name, shape),
        )
    elif choice == "tconv" and h < 16:
        spec.add(
            f"{{op: conv_transpose2d, out: 4, kernel: 2, stride: 2{frm}}}",
            Value(name, (4, 2 * h, 2 * w)),
        )
    elif choice == "norm":
        spec.add(
            f"{{op: batch_norm, eps: {rng.choice(['1.0e-5', '0.001'])}, momentum: 0.1{frm}}}",
            Value(name, x.shape),
        )
    elif choice == "act":
        op = rng.choice(
            [
                "relu",
                "relu6",
                "gelu",
                "silu",
                "sigmoid",
                "hardswish",
                "tanh",
                "hardsigmoid",
                "leaky_relu",
            ]
        )
        spec.add(f"{{op: {op}{frm}}}", Value(name, x.shape))
    elif choice in ("pool", "avg") and min(h, w) >= 3:
        kernel, stride = rng.choice([2, 3]), rng.choice([1, 2])
        padding, ceil = rng.choice([0, 1]), rng.choice([False, True])
        op = "max_pool2d" if choice == "pool" else "avg_pool2d"
        extra = (
            f", count_include_pad: {rng.choice(['true', 'false'])}" if op == "avg_pool2d" else ""
        )
        shape = (
            c,
            pool_size(h, kernel, stride, padding, ceil),
            pool_size(w, kernel, stride, padding, ceil),
        )
        spec.add(
            f"{{op: {op}, kernel: {kernel}, stride: {stride}, padding: {padding}, "
            f"ceil_mode: {str(ceil).lower()}{extra}{frm}}}",
            Value(name, shape),
        )
    elif choice == "residual":
        residual_block(spec)
        count = rng.choice([1, 2, 3])
        names = f', names: "{name}_{{i + 1}}"' if rng.random() < 0.3 and count > 1 else ""
        spec.add(f"{{block: Residual, repeat: {count}{names}{frm}}}", Value(name, x.shape))
    elif choice == "down" and min(h, w) >= 2:
        down_block(spec)
        stride = rng.choice([1, 2])
        shape = (spec.width * 2, conv_size(h, 3, stride, 1), conv_size(w, 3, stride, 1))
        spec.add(f"{{block: Down, out: w * 2, stride: {stride}{frm}}}", Value(name, shape))
    elif choice == "parallel":
        parallel_block(spec)
        spec.add(f"{{block: Parallel, c: {rng.choice([2, 4])}{frm}}}", Value(name, (c + 12, h, w)))
    elif choice == "heads":
        heads_block(spec)
        a, b = rng.choice([2, 3]), rng.choice([1, 5])
        spec.add(f"{{block: Heads, a: {a}, b: {b}{frm}}}", Value(name, (a + 9, h, w)))
    elif choice == "seq":
        sequence_block(spec)
        norm = rng.choice(
            [
                "",
                ", norm: frozen_batch_norm",
                ", norm: {op: batch_norm, eps: 0.001, momentum: 0.01}",
                ", norm: {op: frozen_batch_norm, eps: 0.01}",
                ", norm: layer_norm",  # over the channels, in a class that holds a BatchNorm
                ", norm: {op: group_norm, groups: 3, eps: 0.001}",  # bound before the width
            ]
        )
        spec.add(f"{{block: ConvBnAct, out: 6{norm}{frm}}}", Value(name, (6, h, w)))
    elif choice == "shuffle" and c % 2 == 0:
        spec.add(f"{{op: channel_shuffle, groups: 2{frm}}}", Value(name, x.shape))
    elif choice == "slice" and c >= 2:
        spec.add(f"{{op: slice, start: {c // 2}, stop: {c}{frm}}}", Value(name, (c - c // 2, h, w)))
    elif choice == "concat":
        same = [
            v
            for v in spec.values
            if len(v.shape) == 3 and v.shape[1:] == (h, w) and not v.channels_last
        ]
        other = rng.choice(same)
        spec.add(
            f"{{op: concat, from: [{x.name}, {other.name}]}}",
            Value(name, (c + other.shape[0], h, w)),
        )
    elif choice == "mul":
        same = [v for v in spec.values if v.shape == x.shape and not v.channels_last]
        spec.add(f"{{op: mul, from: [{x.name}, {rng.choice(same).name}]}}", Value(name, x.shape))
    elif choice == "upsample" and h < 16:
        mode = rng.choice(["nearest", "bilinear"])
        spec.add(f"{{op: upsample, scale: 2, mode: {mode}{frm}}}", Value(name, (c, 2 * h, 2 * w)))
    elif choice == "dropout":
        spec.add(f"{{op: dropout, p: 0.2{frm}}}", Value(name, x.shape))
    elif choice == "frozen":
        spec.add(f"{{op: frozen_batch_norm, eps: 0.001{frm}}}", Value(name, x.shape))
    elif choice == "drop_path":
        spec.add(f"{{op: stochastic_depth, p: 0.1{frm}}}", Value(name, x.shape))
    elif choice == "crop" and min(h, w) >= 3:  # a smaller map, then the skip cropped or padded
        small = Value(spec.name(), (c, h - 2, w - 2))
        spec.add(f"{{op: max_pool2d, kernel: 3, stride: 1{frm}}}", small)
        op = rng.choice(["center_crop", "center_pad"])
        big, like = (x, small) if op == "center_crop" else (small, x)
        shape = (c, *like.shape[1:])
        spec.add(f"{{op: {op}, from: [{big.name}, {like.name}]}}", Value(spec.name(), shape))
        spec.add(f"{{op: mean, from: [{spec.values[-1].name}, {like.name}]}}", Value(name, shape))
    elif choice == "resize" and min(h, w) >= 2:
        small = Value(spec.name(), (c, (h + 1) // 2, (w + 1) // 2))
        spec.add(f"{{op: avg_pool2d, kernel: 2, stride: 2, ceil_mode: true{frm}}}", small)
        mode = rng.choice(["nearest", "bilinear"])
        corners = rng.choice(["true", "false"]) if mode == "bilinear" else "false"
        reads = f"from: [{small.name}, {x.name}]"
        spec.add(
            f"{{op: resize, mode: {mode}, align_corners: {corners}, {reads}}}", Value(name, x.shape)
        )
    elif choice == "grow":
        grow_block(spec)
        count = rng.choice([1, 2, 3])
        spec.add(
            f"{{block: Grow, growth: 3, repeat: {count}{frm}}}", Value(name, (c + 3 * count, h, w))
        )
    elif choice == "switch":  # a conditional node, on the model param `flag`
        if rng.random() < 0.5:
            spec.add(f"{{op: conv2d, out: {c}, kernel: 1, when: flag{frm}}}", Value(name, x.shape))
        else:  # its groups hold only where it is on (0 at the other value)
            groups = f"{rng.choice([1, c])} if flag else 0"
            node = f"{{op: group_norm, groups: {groups}, when: ({groups}) > 0{frm}}}"
            spec.add(node, Value(name, x.shape))
    elif choice == "pair":
        pair_block(spec)
        spec.add(f"{{block: Pair, from: [{x.name}, {x.name}], when: flag}}", Value(name, x.shape))
    elif choice == "learned":  # a per-channel (or per-pixel) scale or bias, ConvNeXt's
        op, fill = rng.choice(["scale", "bias"]), rng.choice(["", ", fill: 0.5", ", std: 0.3"])
        shape = rng.choice(
            [[c, 1, 1], [1, h, w], [c, h, w], [1, c, 1, w], f"[{c}], per_channel: true"]
        )
        spec.add(f"{{op: {op}, shape: {shape}{fill}{frm}}}", Value(name, x.shape))
    elif choice == "l2_normalize":  # over the channels, as SSD's conv4_3
        spec.add(f"{{op: l2_normalize{frm}}}", Value(name, x.shape))
    elif choice == "layer_norm":  # over the channels of the NCHW image
        spec.add(f"{{op: layer_norm, eps: 1.0e-6{frm}}}", Value(name, x.shape))
    elif choice == "either":  # a wiring chosen by a param: torchvision's LastLevelP6P7
        either_step(spec, x)
    elif choice == "group_norm" and rng.random() < 0.5:  # RetinaNet v2's head: conv, norm, relu
        tower_block(spec)
        spec.add(f"{{block: Tower, groups: {c}{frm}}}", Value(name, x.shape))
    elif choice == "group_norm":  # groups of consecutive channels
        groups = rng.choice([g for g in (1, 2, 3, 4) if c % g == 0])
        spec.add(f"{{op: group_norm, groups: {groups}{frm}}}", Value(name, x.shape))
    else:
        spec.add(f"{{op: relu{frm}}}", Value(name, x.shape))


def shared_step(spec: Spec, x: Value) -> None:
    """One module (a block, a conv, an inline op, a learned scale) called on `x` and on
    another map of its width (`shared: true`); then both outputs concatenated, or one."""
    rng = spec.rng
    c, h, w = x.shape
    images = [v for v in spec.values if len(v.shape) == 3 and not v.channels_last]
    other = rng.choice([v for v in images if v.shape[0] == c])
    kind = rng.choice(["block", "conv", "act", "learned"])
    if kind == "block":
        sequence_block(spec)
        module, out = "block: ConvBnAct, out: 6", 6
    elif kind == "conv":
        module, out = f"op: conv2d, out: {c}, kernel: 3, padding: 1", c
    elif kind == "act":
        module, out = "op: gelu", c
    else:
        module, out = f"op: scale, shape: [{c}, 1, 1]", c
    name = spec.name()
    spec.lines.append(f"  {name}: {{{module}, shared: true, from: [{x.name}, {other.name}]}}")
    if other.shape[1:] == (h, w):
        spec.add(f"{{op: concat, from: {name}}}", Value(spec.name(), (2 * out, h, w)))
    else:
        call = rng.choice([0, 1])
        shape = (out, *(x, other)[call].shape[1:])
        spec.add(f'{{op: relu, from: "{name}[{call}]"}}', Value(spec.name(), shape))


def grow_block(spec: Spec) -> None:
    """A dense layer: its loop widens the input every iteration."""
    if "  Grow:" in spec.blocks:
        return
    spec.blocks += [
        "  Grow:",
        "    params: {growth: int}",
        "    output_channels: in_channels + growth",
        "    body:",
        "      conv: {op: conv2d, out: growth, kernel: 3, padding: 1}",
        "      cat: {op: concat, from: [input, conv]}",
    ]


def either_step(spec: Spec, x: Value) -> None:
    """`either` of `x` and another map of its size: in the model on the param `flag` (maps of
    one shape), or in a block on its own param (P6 from P5 or C5: the widths may differ)."""
    rng = spec.rng
    _, h, w = x.shape
    images = [v for v in spec.values if len(v.shape) == 3 and not v.channels_last]
    if rng.random() < 0.5:
        other = rng.choice([v for v in images if v.shape == x.shape])
        condition = rng.choice(["flag", "not flag"])
        text = f"{{op: either, from: [{x.name}, {other.name}], first: {condition}}}"
        spec.add(text, Value(spec.name(), x.shape))
        return
    other = rng.choice([v for v in images if v.shape[1:] == (h, w)])
    if "  Either:" not in spec.blocks:
        spec.blocks += [
            "  Either:",
            "    inputs: [a, b]",
            "    params: {use_a: true}",
            "    body:",
            "      x: {op: either, from: [a, b], first: use_a}",
            "      conv: {op: conv2d, out: 4, kernel: 3, stride: 2, padding: 1}",
        ]
    use_a = rng.choice(["true", "false"])
    shape = (4, conv_size(h, 3, 2, 1), conv_size(w, 3, 2, 1))
    spec.add(
        f"{{block: Either, from: [{x.name}, {other.name}], use_a: {use_a}}}",
        Value(spec.name(), shape),
    )


def tower_block(spec: Spec) -> None:
    """Convs each with a group norm and a relu, repeated (RetinaNet v2's head)."""
    if "  Tower:" in spec.blocks:
        return
    spec.blocks += [
        "  Tower:",
        "    params: {groups: int}",
        "    body:",
        "      convs:",
        "        seq: [[{op: conv2d, out: in_channels, kernel: 3, padding: 1, bias: false},",
        "               {op: group_norm, groups: groups}, relu]]",
        "        repeat: 2",
    ]


def pair_block(spec: Spec) -> None:
    """A block of two inputs (used under `when:`)."""
    if "  Pair:" in spec.blocks:
        return
    spec.blocks += [
        "  Pair:",
        "    inputs: [a, b]",
        "    body:",
        "      sum: {op: add, from: [a, b]}",
        "      conv: {op: conv2d, out: a_channels, kernel: 1}",
    ]


def residual_block(spec: Spec) -> None:
    if "  Residual:" in spec.blocks:
        return
    # a float param of the block in an op's attribute, or not
    act = "{op: leaky_relu, negative_slope: slope}" if spec.rng.random() < 0.5 else "relu"
    spec.blocks += [
        "  Residual:",
        "    params: {slope: 0.2}",
        "    body:",
        "      conv1: {op: conv2d, out: in_channels, kernel: 3, padding: 1, bias: false}",
        "      bn1: batch_norm",
        f"      act: {act}",
        "      conv2: {op: conv2d, out: in_channels, kernel: 1}",
        "      add: {op: add, from: [conv2, input]}",
    ]


def down_block(spec: Spec) -> None:
    if "  Down:" in spec.blocks:
        return
    spec.blocks += [
        "  Down:",
        "    params: {out: int, stride: 1}",
        "    body:",
        "      conv: {op: conv2d, out: out, kernel: 3, stride: stride, padding: 1}",
        "      bn: batch_norm",
        "      skip:",
        "        seq: [{op: conv2d, out: out, kernel: 1, stride: stride, bias: false}, batch_norm]",
        "        from: input",
        "        when: stride != 1 or in_channels != out",
        "      add: {op: add, from: [bn, skip]}",
    ]


def parallel_block(spec: Spec) -> None:
    if "  Parallel:" in spec.blocks:
        return
    spec.blocks += [
        "  Parallel:",
        "    params: {c: int}",
        "    body:",
        "      convs:",
        "        branches:",
        "          - {op: conv2d, out: 4, kernel: 1}",
        "          - {op: conv2d, out: 4, kernel: 3, padding: 1}",
        "          - - {op: max_pool2d, kernel: 3, stride: 1, padding: 1}",
        "            - {op: conv2d, out: 4, kernel: 1}",
        "      cat: {op: concat, from: [input, convs]}",
    ]


def heads_block(spec: Spec) -> None:
    """Inception-like branches: instances of one conv block on the same input, which the
    inference export joins where only their widths differ."""
    if "  Heads:" in spec.blocks:
        return
    spec.blocks += [
        "  ConvAct:",
        "    params: {out: int, kernel: 1}",
        "    body:",
        "      conv: {op: conv2d, out: out, kernel: kernel, padding: kernel // 2, bias: false}",
        "      bn: batch_norm",
        "      act: relu6",
        "  Heads:",
        "    params: {a: int, b: int}",
        "    body:",
        "      one: {block: ConvAct, out: a}",
        "      two:",
        "        from: input",
        "        seq: [{block: ConvAct, out: b}, {block: ConvAct, out: 4, kernel: 3}]",
        "      three: {block: ConvAct, out: 2, from: input}",
        "      wide: {block: ConvAct, out: 3, kernel: 3, from: input}",
        "      cat: {op: concat, from: [one, two, three, wide]}",
    ]


def sequence_block(spec: Spec) -> None:
    if "  ConvBnAct:" in spec.blocks:
        return
    spec.blocks += [
        "  ConvBnAct:",
        "    params: {out: int, norm: {type: op, default: batch_norm}}",
        "    body:",
        "      - {op: conv2d, out: out, kernel: 3, padding: 1, bias: false}",
        "      - norm",
        "      - relu",
        "      - {op: conv2d, out: out, kernel: 1, bias: false}",
        "      - norm",
    ]


def detection_head(spec: Spec, x: Value) -> list[str]:
    """A one-level detection head on `x` (class and box rows per anchor, `anchor_rows`) and
    the `postprocess:` lines that select detections from it and give its losses: RetinaNet's
    (anchors, sigmoid scores per level, focal loss) or SSD's (default boxes, softmax scores
    per class, hard negatives), or YOLOv3's (a map of every anchor's box, objectness and
    class scores; detections only), or Faster R-CNN's (proposals from objectness rows, each
    one's features pooled through modules the stage feeds, per-class boxes; detections only)."""
    stages = [_ssd_stage, _retinanet_stage, _yolo_stage, _rcnn_stage]
    return spec.rng.choice(stages)(spec, x)


def _rcnn_stage(spec: Spec, x: Value) -> list[str]:
    rng = spec.rng
    ratios = rng.choice([[1.0], [0.5, 1.0, 2.0]])
    objectness = _anchor_rows(spec, x, len(ratios), 1)
    deltas = _anchor_rows(spec, x, len(ratios), 4)
    size, classes = rng.choice([1, 2, 3]), rng.choice([2, 3])
    lines = [
        "postprocess:",
        f"  grid: {{op: anchors, from: [input, {x.name}], size: {rng.choice([2, 4])}, "
        f"aspect_ratios: {ratios}}}",
        f"  boxes: {{op: proposals, from: [input, {objectness}, {deltas}, grid, {x.name}], "
        f"candidates: {rng.choice([5, 50])}, limit: {rng.choice([3, 8])}, "
        f"iou_thresh: {rng.choice([0.5, 0.7])}}}",
        f"  pooled: {{op: roi_align, from: [input, boxes, {x.name}], size: {size}, "
        f"sampling_ratio: {rng.choice([1, 2])}, canonical_scale: {rng.choice([4, 224])}}}",
    ]
    convs = rng.random() < 0.5  # a block the stage feeds, besides ops
    if convs:
        sequence_block(spec)
        lines.append("  roi_convs: {block: ConvBnAct, out: 4, from: pooled}")
    lines += [
        f"  flat: {{op: flatten, from: {'roi_convs' if convs else 'pooled'}}}",
        f"  cls_score: {{op: linear, out: {classes}}}",
        f"  bbox_pred: {{op: linear, out: {4 * classes}, from: flat}}",
        "  found: {op: roi_detections, from: [input, cls_score, bbox_pred, boxes], "
        f"score_thresh: 0.3, limit: {rng.choice([4, 20])}}}",
    ]
    masks = _rcnn_masks(spec, x, classes) if rng.random() < 0.5 else []  # Mask R-CNN's
    lines += masks
    if rng.random() < 0.5:  # training: samples that take every row, so flax draws alike
        lines += _rcnn_losses(lines[3].split(":", 1)[1].strip(), objectness, deltas, x, convs)
        lines += _mask_loss(masks[0].split(":", 1)[1].strip()) if masks else []
    return lines


def _rcnn_masks(spec: Spec, x: Value, classes: int) -> list[str]:
    """Each detection's features pooled through a mask head the stage feeds, its logits
    module kept inside the head's (`within:`, as torchvision's roi_heads keeps the mask
    predictor), and the masks pasted into the image."""
    if "  MaskConvs:" not in spec.blocks:
        spec.blocks += [
            "  MaskConvs:",
            "    body:",
            "      conv: {op: conv2d, out: 4, kernel: 3, padding: 1}",
            "      relu: relu",
            "  MaskLogits:",
            "    params: {classes: int}",
            "    body:",
            "      up: {op: conv_transpose2d, out: 4, kernel: 2, stride: 2}",
            "      relu: relu",
            "      logits: {op: conv2d, out: classes, kernel: 1}",
        ]
    return [
        f"  mask_pooled: {{op: roi_align, from: [input, found, {x.name}], "
        f"size: {spec.rng.choice([2, 3])}, canonical_scale: {spec.rng.choice([4, 224])}}}",
        "  mask_convs: {block: MaskConvs, from: mask_pooled}",
        f"  mask_logits: {{block: MaskLogits, classes: {classes}, within: mask_convs}}",
        "  masks: {op: paste_masks, from: [input, mask_logits, found]}",
    ]


def _rcnn_losses(pooling: str, objectness: str, deltas: str, x: Value, convs: bool) -> list[str]:
    """Faster R-CNN's four losses, the box head's modules called again (`call:`) on the
    sampled proposals' features."""
    pooling = pooling.replace("boxes,", "samples,")
    return [
        "  matched: {op: match_anchors, from: grid, fg_iou_thresh: 0.5, bg_iou_thresh: 0.3}",
        "  sampled: {op: sample_matches, from: matched, batch_size_per_image: 100000}",
        f"  loss_objectness: {{op: objectness_loss, from: [{objectness}, sampled]}}",
        f"  loss_rpn_box_reg: {{op: box_smooth_l1_loss, from: [{deltas}, grid, sampled], "
        "weights: [1, 1, 1, 1], normalizer: sampled}",
        "  samples: {op: sample_proposals, from: boxes, batch_size_per_image: 16, "
        "positive_fraction: 1.0}",
        f"  sample_pooled: {pooling}",
        *(["  sample_convs: {call: roi_convs, from: sample_pooled}"] if convs else []),
        f"  sample_flat: {{op: flatten, from: {'sample_convs' if convs else 'sample_pooled'}}}",
        "  sample_scores: {call: cls_score, from: sample_flat}",
        "  sample_deltas: {call: bbox_pred, from: sample_flat}",
        "  loss_classifier: {op: roi_classification_loss, from: [sample_scores, samples]}",
        "  loss_box_reg: {op: roi_box_loss, from: [sample_deltas, samples]}",
    ]


def _mask_loss(pooling: str) -> list[str]:
    """Mask R-CNN's mask loss: the mask modules called again on the foreground samples'
    features (all of them: the samples take every row)."""
    return [
        "  foreground: {op: foreground_samples, from: samples, limit: 16}",
        f"  foreground_pooled: {pooling.replace('found,', 'foreground,')}",
        "  foreground_convs: {call: mask_convs, from: foreground_pooled}",
        "  foreground_logits: {call: mask_logits, from: foreground_convs}",
        "  loss_mask: {op: mask_loss, from: [foreground_logits, foreground]}",
    ]


def _yolo_stage(spec: Spec, x: Value) -> list[str]:
    rng = spec.rng
    _, h, w = x.shape
    anchors, classes = rng.choice([[4, 6], [4, 6, 8, 3]]), rng.choice([1, 3])
    width = len(anchors) // 2 * (5 + classes)
    name = spec.name("d")
    head = f"{{op: conv2d, out: {width}, kernel: 3, padding: 1, from: {x.name}}}"
    spec.add(head, Value(name, (width, h, w)))
    lines = [
        "postprocess:",
        f"  found: {{op: yolo_detections, from: [input, {name}], anchors: [{anchors}], "
        f"score_thresh: 0.3, candidates: {rng.choice([5, 50])}, limit: {rng.choice([4, 20])}}}",
    ]
    if rng.random() < 0.5:  # training
        lines.append(
            f"  loss_yolo: {{op: yolo_loss, from: [input, {name}], anchors: [{anchors}], "
            f"ignore_thresh: {rng.choice([0.3, 0.7])}}}"
        )
    return lines


def _retinanet_stage(spec: Spec, x: Value) -> list[str]:
    rng = spec.rng
    scales, ratios = rng.choice([(1, [1.0]), (1, [0.5, 1.0, 2.0]), (2, [0.5, 2.0])])
    anchors = scales * len(ratios)
    logits = _anchor_rows(spec, x, anchors, rng.choice([1, 3]))
    deltas = _anchor_rows(spec, x, anchors, 4)
    return _stage_lines(
        f"{{op: anchors, from: [input, {x.name}], size: {rng.choice([2, 4])}, "
        f"scales: {scales}, aspect_ratios: {ratios}}}",
        f"{{op: detections, from: [input, {logits}, {deltas}, grid, {x.name}], "
        f"{_selection(spec)}}}",
        f"bg_iou_thresh: {rng.choice([0.3, 0.5])}, low_quality: {rng.choice(['keep', 'off'])}",
        f"{{op: focal_loss, from: [{logits}, matched], gamma: {rng.choice([0, 2])}}}",
        f"{{op: {rng.choice(['box_l1_loss', 'box_giou_loss'])}, from: [{deltas}, grid, matched]}}",
    )


def _ssd_stage(spec: Spec, x: Value) -> list[str]:
    rng = spec.rng
    ratios = rng.choice([[], [2], [2, 3]])
    anchors = 2 + 2 * len(ratios)
    logits = _anchor_rows(spec, x, anchors, rng.choice([2, 4]))  # the background and more
    deltas = _anchor_rows(spec, x, anchors, 4)
    scales = rng.choice(["", ", scales: [0.3, 0.6]", ", min_ratio: 0.2, max_ratio: 0.7"])
    steps = rng.choice(["", f", steps: [{rng.choice([2, 3])}]"])
    return _stage_lines(
        f"{{op: default_boxes, from: [input, {x.name}], aspect_ratios: [{ratios}]{scales}"
        f"{steps}, clip: {rng.choice(['true', 'false'])}}}",
        f"{{op: softmax_detections, from: [input, {logits}, {deltas}, grid], {_selection(spec)}}}",
        f"fg_iou_thresh: 0.5, bg_iou_thresh: 0.5, low_quality: {rng.choice(['force', 'off'])}",
        f"{{op: hard_negative_loss, from: [{logits}, matched], "
        f"negatives_per_positive: {rng.choice([1, 3])}}}",
        f"{{op: box_smooth_l1_loss, from: [{deltas}, grid, matched], "
        f"beta: {rng.choice([1.0, 0.11])}}}",
    )


def _selection(spec: Spec) -> str:
    rng = spec.rng
    return f"score_thresh: 0.3, candidates: {rng.choice([5, 50])}, limit: {rng.choice([4, 20])}"


def _stage_lines(boxes: str, found: str, matching: str, cls_loss: str, box_loss: str) -> list[str]:
    """The `postprocess:` section: boxes, detections, matches and the two losses."""
    return [
        "postprocess:",
        f"  grid: {boxes}",
        f"  found: {found}",
        f"  matched: {{op: match_anchors, from: grid, {matching}}}",
        f"  cls_loss: {cls_loss}",
        f"  box_loss: {box_loss}",
    ]


def _anchor_rows(spec: Spec, x: Value, anchors: int, size: int) -> str:
    """A 3x3 conv on `x` to `size` values per anchor, as rows: the name of the rows. (3x3,
    as the zoo's heads: a 1x1 conv after a nearest upsample scores copies of a cell alike,
    ties that float32 noise breaks one way in torch and another in jax.)"""
    _, h, w = x.shape
    spec.add(
        f"{{op: conv2d, out: {anchors * size}, kernel: 3, padding: 1, from: {x.name}}}",
        Value(spec.name("d"), (anchors * size, h, w)),
    )
    rows = Value(spec.name("d"), (h * w * anchors, size))
    spec.add(f"{{op: anchor_rows, size: {size}}}", rows)
    return rows.name


def head(spec: Spec, x: Value) -> None:
    """Finish with a classifier over a vector, tokens through attention, or NHWC tokens."""
    rng = spec.rng
    c, h, w = x.shape
    choice = rng.choice(["classifier", "tokens", "nhwc"])
    frm = f", from: {x.name}" if spec.values[-1] is not x else ""
    if choice == "classifier":
        size = rng.choice([1, 2])
        spec.add(
            f"{{op: adaptive_avg_pool2d, size: {size}{frm}}}", Value(spec.name(), (c, size, size))
        )
        spec.add("flatten", Value(spec.name(), (c * size * size,)))
        spec.add("{op: linear, out: classes}", Value(spec.name(), (10,)))
    elif choice == "tokens":
        spec.add(f"{{op: conv2d, out: 8, kernel: 1{frm}}}", Value(spec.name(), (8, h, w)))
        spec.add("to_tokens", Value(spec.name(), (h * w, 8)))
        spec.add("{op: class_token}", Value(spec.name(), (h * w + 1, 8)))
        if rng.random() < 0.5:
            embedding = f"{{op: position_embedding, length: {h * w + 1}}}"
        else:  # the same, as a learned tensor
            embedding = f"{{op: bias, shape: [1, {h * w + 1}, 8], std: 0.02}}"
        spec.add(embedding, Value(spec.name(), (h * w + 1, 8)))
        spec.add("{op: scale, shape: [8], fill: 0.1}", Value(spec.name(), (h * w + 1, 8)))
        spec.add("{op: layer_norm, eps: 1.0e-6}", Value(spec.name(), (h * w + 1, 8)))
        spec.add("{op: linear, out: 24}", Value(spec.name(), (h * w + 1, 24)))
        spec.add("{op: attention, heads: 2}", Value(spec.name(), (h * w + 1, 8)))
        spec.add("{op: select, axis: 1, index: 0}", Value(spec.name(), (8,)))
        spec.add("{op: linear, out: classes}", Value(spec.name(), (10,)))
    else:
        nhwc = Value(spec.name(), (h, w, c), True)
        spec.add(f"{{op: permute, layout: NHWC{frm}}}", nhwc)
        spec.add("{op: layer_norm}", Value(spec.name(), (h, w, c), True))
        if h % 2 == 0 and w % 2 == 0 and h >= 4:  # Swin: windows (padded where they do not
            window = rng.choice([2, 3, 4, 5])  # tile the map), then patches merged
            shift = rng.choice([0, window // 2])
            heads = rng.choice([k for k in (1, 3) if c % k == 0])
            spec.add(
                f"{{op: window_attention, heads: {heads}, window: {window}, shift: {shift}}}",
                Value(spec.name(), (h, w, c), True),
            )
            spec.add("patch_merge", Value(spec.name(), (h // 2, w // 2, 2 * c), True))
            h, w, c = h // 2, w // 2, 2 * c
            nhwc = spec.values[-1]
        linear = Value(spec.name(), (h, w, 6), True)
        spec.add("{op: linear, out: 6}", linear)
        joined = Value(spec.name(), (h, w, 6 + c), True)
        spec.add(f"{{op: concat, axis: 3, from: [{linear.name}, {nhwc.name}]}}", joined)
        spec.add("{op: sigmoid}", Value(spec.name(), (h, w, 6 + c), True))
        spec.add(
            f"{{op: mul, from: [{joined.name}, {spec.values[-1].name}]}}",
            Value(spec.name(), (h, w, 6 + c), True),
        )
        spec.add("{op: slice, axis: 3, start: 1, stop: 5}", Value(spec.name(), (h, w, 4), True))
        if rng.random() < 0.5:
            spec.add("{op: flatten}", Value(spec.name(), (h * w * 4,)))
            spec.add("{op: linear, out: classes}", Value(spec.name(), (10,)))
        else:
            spec.add("{op: permute, layout: NCHW}", Value(spec.name(), (4, h, w)))


def random_spec(seed: int) -> str:
    """A random valid model spec."""
    rng = random.Random(seed)
    spec = Spec(rng)
    channels, size = rng.choice([1, 3, 4]), rng.choice([8, 9, 12, 16])
    spec.values.append(Value("input", (channels, size, size)))
    for _ in range(rng.randint(2, 8)):
        image = [v for v in spec.values if len(v.shape) == 3 and not v.channels_last]
        x = image[-1] if rng.random() < 0.8 else rng.choice(image)
        image_step(spec, x)
    image = [v for v in spec.values if len(v.shape) == 3 and not v.channels_last]
    stage = detection_head(spec, image[-1]) if rng.random() < 0.3 else []
    head(spec, image[-1])
    text = [
        "archc: 1",
        f"name: fuzz{seed}",
        f"params: {{w: {spec.width}, classes: 10, flag: {str(rng.random() < 0.5).lower()}}}",
        f"input: [{channels}, {size}, {size}]",
        "body:",
        *spec.lines,
    ]
    text += stage
    if spec.blocks:
        text += ["blocks:", *spec.blocks]
    text[4:4] = init_rules(rng, "\n".join(text))
    return "\n".join(text) + "\n"


WEIGHTS = [
    "{kaiming_normal: fan_out}",
    "{kaiming_uniform: fan_in}",
    "{trunc_normal: 0.02}",
    "{uniform: 1 / sqrt(fan_in + fan_out)}",
    "xavier_uniform",
]


def init_rules(rng: random.Random, text: str) -> list[str]:
    """Now and then an `init:` for the ops and block nodes the spec has."""
    if rng.random() < 0.5:
        return []
    rules = []
    convs = re.findall(r"\{op: conv2d[^}]*\}", text)
    if convs:
        # a conv switched off by `when:` may be the only one with a bias
        bias = any("bias: false" not in conv and "when:" not in conv for conv in convs)
        rules.append(f"  conv2d: {{weight: {rng.choice(WEIGHTS)}{', bias: zeros' * bias}}}")
    if re.search(r"\{op: linear, out: \w+\}", text):
        rules.append("  linear: {weight: {normal: 0.01}, bias: {constant: 0.1}}")
    conditions = ["", "", ", when: flag", ", when: not flag"]  # the model's bool param
    if "  Residual:" in text:
        rules.append(f"  Residual.bn1: {{weight: zeros{rng.choice(conditions)}}}")
    if "  Pair:" in text and rng.random() < 0.5:
        rules.append(
            f"  Pair.conv: {{weight: {rng.choice(WEIGHTS)}, bias: {{normal: 1 / fan_out}}"
            f"{rng.choice(conditions)}}}"
        )
    if "  Parallel:" in text and rng.random() < 0.5:  # every conv of its branches
        rules.append(
            f"  Parallel.convs: {{weight: {rng.choice(WEIGHTS)}, bias: {{constant: 0.1}}"
            f"{rng.choice(conditions)}}}"
        )
    if "  Residual:" in text and rng.random() < 0.5:  # a block's convs; its bn1 rule wins
        rules.append(f"  Residual: {{weight: {rng.choice(WEIGHTS)}, op: conv2d}}")
    if "  Pair:" in text and rng.random() < 0.5:  # every layer of a block (its conv)
        rules.append("  Pair: {bias: {constant: -0.1}}")
    if "  Tower:" in text and rng.random() < 0.5:  # its convs, not its norms
        rules.append(f"  Tower.convs: {{weight: {rng.choice(WEIGHTS)}, op: conv2d}}")
    return ["init:", *rules] if rules else []
