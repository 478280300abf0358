"""Malformed specs: one located error line, exit status 2, no traceback."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.helpers import REPO, assert_quotes_the_spec, run_archc

HEAD = "archc: 1\nname: tiny\ninput: [3, 16, 16]\nbody:\n"  # the body starts on line 5

# An RPN's objectness and deltas and the proposals of its stage: lines 5 to 14.
PROPOSALS = (
    HEAD + "  c: {op: conv2d, out: 5, kernel: 1}\n"
    "  c1: {op: conv2d, out: 1, kernel: 1, from: c}\n"
    "  o: {op: anchor_rows, size: 1, from: c1}\n"
    "  c4: {op: conv2d, out: 4, kernel: 1, from: c}\n"
    "  d: {op: anchor_rows, size: 4, from: c4}\n"
    "outputs: {o: o}\npostprocess:\n"
    "  g: {op: anchors, from: [input, c], size: 4, aspect_ratios: [1.0]}\n"
    "  b: {op: proposals, from: [input, o, d, g, c], limit: 4}\n"
)

CASES = {
    "bad yaml": (HEAD + "  conv1: {op: conv2d, out: 8\n", "6:1", "invalid YAML"),
    "duplicate key": (
        HEAD + "  conv1: relu\n  conv1: relu\n",
        "6:3",
        "duplicate key",
    ),
    "unknown top-level key": (
        "archc: 1\nname: tiny\ninput: [3, 16, 16]\nbodyy:\n  relu: relu\n",
        "4:1",
        "unknown key 'bodyy' in spec (did you mean 'body'?)",
    ),
    "missing version": (
        "name: tiny\ninput: [3, 16, 16]\nbody:\n  relu: relu\n",
        "1:1",
        "missing required key 'archc'",
    ),
    "unknown op": (
        HEAD + "  conv1: {op: conv2dd, out: 8, kernel: 3}\n",
        "5:10",
        "unknown op 'conv2dd' (did you mean 'conv2d'?)",
    ),
    "unknown attribute": (
        HEAD + "  conv1: {op: conv2d, out: 8, kernal: 3}\n",
        "5:31",
        "unknown attribute 'kernal' for conv1 (conv2d) (did you mean 'kernel'?)",
    ),
    "missing attribute": (
        HEAD + "  conv1: {op: conv2d, out: 8}\n",
        "5:10",
        "missing required attribute 'kernel' for conv1 (conv2d)",
    ),
    "wrong type": (
        HEAD + "  conv1: {op: conv2d, out: 8.5, kernel: 3}\n",
        "5:28",
        "conv1 (conv2d).out: expected a valid integer, got 8.5",
    ),
    "undefined reference": (
        HEAD + "  conv1: {op: conv2d, out: 8, kernel: 3}\n  add: {op: add, from: [conv1, conv3]}\n",
        "6:32",
        "unknown reference 'conv3' (did you mean 'conv1'?)",
    ),
    "bad expression": (
        "archc: 1\nname: tiny\nparams: {width: 8}\ninput: [3, 16, 16]\nbody:\n"
        "  conv1: {op: conv2d, out: width *, kernel: 3}\n",
        "6:28",
        "bad expression 'width *'",
    ),
    "unknown name in expression": (
        "archc: 1\nname: tiny\nparams: {width: 8}\ninput: [3, 16, 16]\nbody:\n"
        "  conv1: {op: conv2d, out: widht * 2, kernel: 3}\n",
        "6:28",
        "unknown name 'widht' (did you mean 'width'?)",
    ),
    "channel mismatch at add": (
        HEAD + "  a: {op: conv2d, out: 8, kernel: 1}\n"
        "  b: {op: conv2d, out: 16, kernel: 1, from: input}\n"
        "  sum: {op: add, from: [a, b]}\n",
        "7:8",
        "sum (add): inputs must have the same shape, got f32[N,8,16,16] and f32[N,16,16,16]",
    ),
    "spatial mismatch at concat": (
        HEAD + "  a: {op: conv2d, out: 8, kernel: 1}\n"
        "  b: {op: conv2d, out: 8, kernel: 1, stride: 2, from: input}\n"
        "  cat: {op: concat, from: [a, b]}\n",
        "7:8",
        "cat (concat): inputs must match on every axis but 1: expected f32[N,*,16,16], "
        "got f32[N,8,8,8]; crop the larger (center_crop) or pad the smaller",
    ),
    "groups do not divide": (
        HEAD + "  conv1: {op: conv2d, out: 8, kernel: 3, groups: 2}\n",
        "5:50",
        "groups=2 must divide both the input channels and out, got 3 input channels",
    ),
    "norm groups do not divide": (
        HEAD + "  conv1: {op: conv2d, out: 6, kernel: 1}\n  norm: {op: group_norm, groups: 4}\n",
        "6:34",
        "norm (group_norm): groups=4 must divide the 6 channels",
    ),
    "either of two ranks": (
        HEAD + "  flat: flatten\n  pick: {op: either, from: [input, flat], first: true}\n",
        "6:9",
        "pick (either): the inputs must be of one rank, layout and dtype, got f32[N,3,16,16] "
        "and f32[N,768]",
    ),
    "kernel larger than the input": (
        HEAD + "  conv1: {op: conv2d, out: 8, kernel: 17}\n",
        "5:10",
        "the kernel does not fit the input: f32[N,3,16,16] gives f32[N,8,0,0]",
    ),
    "rank mismatch": (
        HEAD + "  flat: flatten\n  conv1: {op: conv2d, out: 8, kernel: 1}\n",
        "6:10",
        "conv1 (conv2d): expected a 4-d NCHW input, got f32[N,768]",
    ),
    "unknown block param": (
        "archc: 1\nname: tiny\nimports: [archc:resnet]\n"
        "input: [3, 16, 16]\nbody:\n  b: {block: BasicBlock, plane: 8}\n",
        "6:26",
        "unknown param 'plane' for block BasicBlock (did you mean 'planes'?)",
    ),
    "missing block param": (
        "archc: 1\nname: tiny\nimports: [archc:resnet]\n"
        "input: [3, 16, 16]\nbody:\n  b: {block: BasicBlock}\n",
        "6:6",
        "b: block BasicBlock needs param 'planes'",
    ),
    "missing import": (
        "archc: 1\nname: tiny\nimports: [nowhere.yaml]\ninput: [3, 16, 16]\nbody:\n  r: relu\n",
        "3:11",
        "imported file not found: nowhere.yaml",
    ),
    "repeat is not an int": (
        HEAD + "  conv: {op: conv2d, out: 3, kernel: 1, repeat: 1.5}\n",
        "5:49",
        "repeat: expected a int, got 1.5",
    ),
    "broken output_channels promise": (
        HEAD + "  b: {block: Twice}\nblocks:\n  Twice:\n    output_channels: 2 * in_channels\n"
        "    body:\n      conv: {op: conv2d, out: in_channels, kernel: 1}\n",
        "8:22",
        "b: block Twice promises output_channels 6, but its body gives 3",
    ),
    "sequence block with two inputs": (
        HEAD + "  r: relu\nblocks:\n  Pair:\n    inputs: [a, b]\n    body: [relu]\n",
        "9:11",
        "block 'Pair': a sequence body takes one input",
    ),
    "slice out of range": (
        HEAD + "  part: {op: slice, start: 2, stop: 5}\n",
        "5:9",
        "part (slice): expected 0 <= start < stop <= 3, got 2:5",
    ),
    "names without repeat": (
        HEAD + '  r: {op: relu, names: "act{i}"}\n',
        "5:17",
        "node 'r': names: applies to a repeated op or block",
    ),
    "names that are not identifiers": (
        HEAD + '  r: {op: relu, repeat: 2, names: "act.{i}"}\n',
        "5:36",
        "node name must be a module name, got 'act.0'",
    ),
    "branches read by an op that takes one input": (
        HEAD + "  convs: {branches: [relu, relu]}\n  r: {op: relu, from: convs}\n",
        "6:6",
        "node 'r': 'convs' is a list of values, which only branches, a block or an op that takes",
    ),
    "a body that ends with branches": (
        HEAD + "  convs: {branches: [relu, relu]}\n",
        "5:10",
        "'convs' is a list of values, which a body returns only with outputs:",
    ),
    "a sequence item reading a node by name": (
        HEAD + "  c: {op: conv2d, out: 8, kernel: 1}\n"
        "  s: [relu, {op: add, from: [previous, c]}]\n",
        "6:40",
        "an item of a sequence cannot read 'c'",
    ),
    "an item of branches with its own from": (
        HEAD + "  b: {branches: [relu, {op: relu, from: input}]}\n",
        "5:41",
        "an item of branches cannot read 'input'",
    ),
    "an output naming no node": (
        HEAD + "  conv1: {op: conv2d, out: 8, kernel: 3}\noutputs: {out: conv2}\n",
        "6:16",
        "output 'out': unknown reference 'conv2' (did you mean 'conv1'?)",
    ),
    "empty outputs": (
        HEAD + "  r: relu\noutputs: {}\n",
        "6:10",
        "outputs must be a mapping of output names to node names",
    ),
    "a block with outputs that promises one width": (
        "archc: 1\nname: tiny\ninput: [3, 16, 16]\nblocks:\n  Two:\n"
        "    output_channels: 3\n    body: {a: relu, b: relu}\n    outputs: [a, b]\n"
        "body:\n  t: Two\n",
        "6:5",
        "block 'Two': output_channels promises one output, but it has outputs:",
    ),
    "a token placed past the sequence": (
        HEAD + "  t: to_tokens\n  c: {op: class_token, at: 300}\n",
        "6:28",
        "c (class_token): at must be from 0 to the sequence length 256, got 300",
    ),
    "an index into one value": (
        HEAD + "  c: {op: conv2d, out: 8, kernel: 1}\n  r: {op: relu, from: 'c[0]'}\n",
        "6:24",
        "node 'r': 'c' is one value, not a list to index",
    ),
    "an index past the branches": (
        HEAD + "  b: {branches: [relu, relu]}\n  r: {op: relu, from: 'b[2]'}\n",
        "6:24",
        "node 'r': 'b[2]' is out of range: b has 2 values",
    ),
    "branches over inputs that do not pair up": (
        HEAD + "  a: relu\n  b: {branches: [relu, relu, relu], from: [input, a]}\n",
        "6:6",
        "node 'b': 2 inputs need one branch each (or one to copy for each, without repeat:), got 3",
    ),
    "an op param that names no op": (
        "archc: 1\nname: tiny\nparams: {act: {type: op, default: rellu}}\ninput: [3, 16, 16]\n"
        "body:\n  a: act\n",
        "6:6",
        "node 'a': 'act' is 'rellu', not an op (did you mean 'relu'?)",
    ),
    "an op param given attributes": (
        "archc: 1\nname: tiny\nparams: {norm: {type: op, default: batch_norm}}\n"
        "input: [3, 16, 16]\nbody:\n  bn: {op: norm, eps: 0.001}\n",
        "6:7",
        "an op picked by the param 'norm' takes its attributes from the param, not the node",
    ),
    # What a backend cannot write is refused by check too, as build would (one decision).
    "an item of a sequence that torch has no module for": (
        HEAD + "  s: [{op: conv2d, out: 8, kernel: 3}, to_tokens]\n",
        "5:40",
        "op to_tokens has no torch module form, so it cannot be an item of a sequence",
    ),
    "a learned tensor as an item of a sequence": (
        HEAD + "  s: [relu, {op: scale, shape: [3, 1, 1]}]\n",
        "5:13",
        "op scale has no torch module form",
    ),
    "a conditional node that changes rank": (
        "archc: 1\nname: tiny\nparams: {flat: true}\ninput: [3, 16, 16]\nbody:\n"
        "  f: {op: flatten, when: flat}\n",
        "6:26",
        "a conditional node must keep its input's rank",
    ),
    "a block constructor argument that depends on the spatial size": (
        "archc: 1\nname: tiny\ninput: [3, 16, 16]\nblocks:\n  Head:\n    body:\n"
        "      flatten: flatten\n      fc: {op: linear, out: 10}\nbody:\n  head: Head\n",
        "8:11",
        "a constructor argument depends on the input's spatial size",
    ),
    "an op param's unknown attribute": (
        "archc: 1\nname: tiny\nparams: {norm: {op: batch_norm, epss: 0.001}}\n"
        "input: [3, 16, 16]\nbody:\n  bn: norm\n",
        "3:33",
        "unknown attribute 'epss' for param 'norm' (batch_norm) (did you mean 'eps'?)",
    ),
    "an op param's attribute out of range": (
        "archc: 1\nname: tiny\nparams: {norm: {op: batch_norm, momentum: 2}}\n"
        "input: [3, 16, 16]\nbody:\n  bn: norm\n",
        "3:43",
        "param 'norm' (batch_norm).momentum: expected at least 0, at most 1, got 2",
    ),
    "an op param's unknown op": (
        "archc: 1\nname: tiny\nparams: {norm: {op: batch_nrom, eps: 0.001}}\n"
        "input: [3, 16, 16]\nbody:\n  bn: norm\n",
        "3:21",
        "param 'norm': unknown op 'batch_nrom' (did you mean 'batch_norm'?)",
    ),
    "an op param with attributes that picks an op no width builds": (
        "archc: 1\nname: tiny\nparams: {drop: {op: dropout, p: 0.1}}\n"
        "input: [3, 16, 16]\nbody:\n  d: drop\n",
        "6:6",
        "the param 'drop' picks dropout, which is not a module built from its input width alone",
    ),
    "an op param that picks an op without the attributes it needs": (
        "archc: 1\nname: tiny\nparams: {norm: {type: op, default: group_norm}}\n"
        "input: [4, 16, 16]\nbody:\n  n: norm\n",
        "6:6",
        "the param 'norm' picks group_norm without the attributes it needs",
    ),
    "a str param named like an op, used as one": (
        "archc: 1\nname: tiny\nparams: {norm: batch_norm}\ninput: [4, 16, 16]\nbody:\n  n: norm\n",
        "6:6",
        "'norm' is 'batch_norm', not an op (to pick an op, declare the param as one: "
        "norm: {type: op, default: batch_norm})",
    ),
    # Before, check passed and build failed inside archc (the loop's width was not a name
    # the caller had).
    "a block whose output width comes out of its loop": (
        "archc: 1\nname: tiny\nparams: {widths: [4, 8]}\ninput: [3, 16, 16]\nblocks:\n"
        "  Stage:\n    params: {out: int}\n    body:\n"
        "      units: {op: conv2d, repeat: 2, out: out, kernel: 1, stride: 2 if i == 0 else 1}\n"
        "  Trunk:\n    params: {widths: list}\n    output_channels: widths[-1]\n    body:\n"
        "      stages: {block: Stage, repeat: len(widths), out: 'widths[i]'}\n"
        "body:\n  trunk: {block: Trunk, widths: widths}\n",
        "7:5",
        "trunk.stages.0: the output width of block Stage comes out of a loop",
    ),
    "expect drift": (
        HEAD + "  conv1: {op: conv2d, out: 8, kernel: 3}\nexpect: {params: 1}\n",
        "6:18",
        "expect.params: expected 1, got 224",
    ),
    "per-channel tensor of another width": (
        HEAD + "  a: {op: scale, shape: [4], per_channel: true}\n",
        "5:43",
        "a (scale): per_channel: expected [C] for an NCHW image's channels, got [4]",
    ),
    "node named as a method of the stage": (
        HEAD + "  loss: relu\n",
        "5:3",
        "node name 'loss' is reserved: a generated model with a detection stage has a method",
    ),
    "stage op in the body": (
        HEAD + "  a: {op: anchors, from: [input, input], size: 32}\n",
        "5:6",
        "node 'a': anchors is a stage op, which runs after the network",
    ),
    "network op in postprocess": (
        HEAD + "  relu: relu\noutputs: {out: relu}\npostprocess:\n  b: {op: relu}\n",
        "8:6",
        "postprocess: node 'b' must be a stage op",
    ),
    "a list as the output before postprocess": (
        HEAD + "  two: {branches: [relu, sigmoid]}\npostprocess:\n"
        "  a: {op: anchors, from: [input, two], size: 32}\n",
        "5:8",
        "the model's output (its last node): 'two' is a list of values",
    ),
    "postprocess module that no stage op feeds": (
        HEAD + "  relu: relu\noutputs: {out: relu}\npostprocess:\n"
        "  g: {op: anchors, from: [input, relu], size: 4}\n  f: {op: flatten, from: relu}\n",
        "9:6",
        "postprocess: node 'f' must be a stage op, or a module that reads one's value",
    ),
    "call of a node that is not there": (
        HEAD + "  c: {op: conv2d, out: 4, kernel: 1}\n  d: {call: e, from: c}\n",
        "6:6",
        "node 'd': call: names an earlier op or block node made once (no repeat:, when: or "
        "shared:), got 'e'",
    ),
    "call with arguments": (
        HEAD + "  c: {op: conv2d, out: 3, kernel: 1}\n  d: {call: c, out: 4}\n",
        "6:16",
        "node 'd': call: runs a module as its node made it, so it takes only from:, got 'out'",
    ),
    "call of a module on an input it does not fit": (
        HEAD + "  c: {op: conv2d, out: 4, kernel: 1}\n  d: {call: c}\n",
        "6:6",
        "d: a shared module's calls need parameters of one shape",
    ),
    "within on an op": (
        HEAD + "  c: {op: conv2d, out: 4, kernel: 1, within: x}\n",
        "5:38",
        "node 'c': within: keeps one block's module inside another's, so it applies to a block",
    ),
    "within of a node that is not there": (
        "archc: 1\nname: tiny\ninput: [3, 16, 16]\nblocks:\n  B:\n    body:\n"
        "      c: {op: conv2d, out: 4, kernel: 1}\n"
        "body:\n  b: {block: B}\n  d: {block: B, within: e}\n",
        "10:25",
        "node 'd': within: names an earlier block node made once (no repeat:, when:, shared: "
        "or within:) whose block is not a sequence, got 'e'",
    ),
    "within a sequence": (
        "archc: 1\nname: tiny\ninput: [3, 16, 16]\nblocks:\n  S:\n    body:\n"
        "      - {op: conv2d, out: 4, kernel: 1}\n"
        "body:\n  s: {block: S}\n  d: {block: S, within: s}\n",
        "10:25",
        "whose block is not a sequence, got 's'",
    ),
    "within a block of a node of that name": (
        "archc: 1\nname: tiny\ninput: [3, 16, 16]\nblocks:\n  B:\n    body:\n"
        "      c: {op: conv2d, out: 4, kernel: 1}\n"
        "body:\n  b: {block: B}\n  c: {block: B, within: b}\n",
        "10:25",
        "node 'c': block B of 'b' has a node of that name already",
    ),
    "linear stating other features": (
        HEAD + "  f: flatten\n  l: {op: linear, out: 4, in_features: 10}\n",
        "6:40",
        "l (linear): in_features=10, but the input has 768: f32[N,768]",
    ),
    "RoI box deltas not 4 per class": (
        PROPOSALS + "  p: {op: roi_align, from: [input, b, c], size: 2}\n"
        "  f: {op: flatten, from: p}\n  s: {op: linear, out: 3}\n"
        "  x: {op: linear, out: 8, from: f}\n"
        "  r: {op: roi_detections, from: [input, s, x, b]}\n",
        "18:6",
        "r (roi_detections): deltas need 4 values per class of the logits f32[N * 4,3], got",
    ),
    "foreground samples past the samples": (
        PROPOSALS + "  s: {op: sample_proposals, from: b, batch_size_per_image: 8}\n"
        "  f: {op: foreground_samples, from: s, limit: 9}\n",
        "15:47",
        "f (foreground_samples): limit=9 is more than the 8 samples",
    ),
    "postprocess node named as the body's": (
        HEAD + "  relu: relu\noutputs: {out: relu}\npostprocess:\n"
        "  relu: {op: anchors, from: [input, relu], size: 32}\n",
        "8:9",
        "postprocess: node 'relu' is already a node of the body",
    ),
    "default boxes: ratios for other levels": (
        HEAD + "  relu: relu\noutputs: {out: relu}\npostprocess:\n"
        "  b: {op: default_boxes, from: [input, relu], aspect_ratios: [[2], [3]]}\n",
        "8:62",
        "b (default_boxes): aspect_ratios needs 1 values for 1 levels, got 2",
    ),
    "default boxes: a ratio not a list": (
        HEAD + "  relu: relu\noutputs: {out: relu}\npostprocess:\n"
        "  b: {op: default_boxes, from: [input, relu], aspect_ratios: [2]}\n",
        "8:62",
        "aspect_ratios: expected 1 to 8 lists of up to 8 numbers, got [2]",
    ),
    "box weights not four": (
        HEAD + "  relu: relu\noutputs: {out: relu}\npostprocess:\n"
        "  b: {op: default_boxes, from: [input, relu], aspect_ratios: [[]]}\n"
        "  m: {op: match_anchors, from: b}\n"
        "  l: {op: box_smooth_l1_loss, from: [b, b, m], weights: [1, 2]}\n",
        "10:57",
        "weights needs 4 values (dx, dy, dw, dh), got 2",
    ),
    "unknown low-quality matching": (
        HEAD + "  relu: relu\noutputs: {out: relu}\npostprocess:\n"
        "  b: {op: default_boxes, from: [input, relu], aspect_ratios: [[]]}\n"
        "  m: {op: match_anchors, from: b, low_quality: best}\n",
        "9:48",
        "low_quality: expected 'keep', 'off' or 'force', got 'best'",
    ),
    "yolo anchors for other maps": (
        HEAD + "  relu: relu\noutputs: {out: relu}\npostprocess:\n"
        "  d: {op: yolo_detections, from: [input, relu], anchors: [[10, 13], [16, 30]]}\n",
        "8:58",
        "d (yolo_detections): anchors needs one list per map (1), got 2",
    ),
    "yolo anchors not pairs": (
        HEAD + "  relu: relu\noutputs: {out: relu}\npostprocess:\n"
        "  d: {op: yolo_detections, from: [input, relu], anchors: [[10, 13, 16]]}\n",
        "8:58",
        "anchors: each map's list must be w, h pairs",
    ),
    "yolo map too narrow": (
        HEAD + "  relu: relu\noutputs: {out: relu}\npostprocess:\n"
        "  d: {op: yolo_detections, from: [input, relu], anchors: [[10, 13]]}\n",
        "8:6",
        "each map needs its anchors x (4 box values, objectness and the same classes) channels",
    ),
    "shared not a bool": (
        HEAD + "  a: {op: relu, shared: yes}\n",
        "5:25",
        "node 'a': shared: expected true or false, got 'yes'",
    ),
    "shared and repeated": (
        HEAD + "  a: {op: relu, repeat: 2, shared: true}\n",
        "5:28",
        "a shared node is one module, made once: it cannot have repeat:",
    ),
    "shared item": (
        HEAD + "  s: [{op: relu, shared: true}]\n",
        "5:7",
        "items of a sequence cannot be shared",
    ),
    "shared across widths": (
        HEAD + "  a: {op: conv2d, out: 8, kernel: 1}\n"
        "  b: {op: conv2d, out: 4, kernel: 1, from: input}\n"
        "  c: {op: conv2d, out: 2, kernel: 1, from: [a, b], shared: true}\n",
        "7:6",
        "c: a shared module's calls need parameters of one shape, but c reads f32[N,8,16,16] in "
        "the first call and f32[N,4,16,16] in call 2",
    ),
    "shared block with outputs": (
        HEAD + "  a: {block: Two, from: [input, input], shared: true}\nblocks:\n  Two:\n    body:\n"
        "      x: relu\n      y: sigmoid\n    outputs: [x, y]\n",
        "5:6",
        "a shared block must return one value per call, but Two returns a list",
    ),
}


INIT_HEAD = "archc: 1\nname: tiny\ninput: [3, 16, 16]\ninit:\n"  # the rules start on line 5
INIT_BODY = (
    "blocks:\n  Unit:\n    body:\n      conv: {op: conv2d, out: 8, kernel: 3, bias: false}\n"
    "      bn: batch_norm\nbody:\n  unit: {block: Unit}\n  flat: flatten\n"
    "  fc: {op: linear, out: 4}\n"
)
CASES |= {
    "init: unknown op": (
        INIT_HEAD + "  conv2: {weight: zeros}\n" + INIT_BODY,
        "5:3",
        "init: unknown op or block 'conv2' (a rule names an op, a block, or Block.node) (did "
        "you mean 'conv2d'?)",
    ),
    "init: unknown initialiser": (
        INIT_HEAD + "  conv2d: {weight: {kaiming_normall: fan_out}}\n" + INIT_BODY,
        "5:20",
        "init.conv2d.weight: unknown initialiser 'kaiming_normall'"
        " (did you mean 'kaiming_normal'?)",
    ),
    "init: a fan that is not one": (
        INIT_HEAD + "  conv2d: {weight: {kaiming_normal: fan_avg}}\n" + INIT_BODY,
        "5:20",
        "init.conv2d.weight: kaiming_normal takes fan_in or fan_out, got 'fan_avg'",
    ),
    "init: a param no layer has": (
        INIT_HEAD + "  conv2d: {bias: zeros}\n" + INIT_BODY,
        "5:3",
        "init.conv2d: no conv2d layer of the model has bias",
    ),
    "init: an op the model never builds": (
        INIT_HEAD + "  conv_transpose2d: {weight: zeros}\n" + INIT_BODY,
        "5:3",
        "init.conv_transpose2d: the model has no conv_transpose2d layer with parameters of its own",
    ),
    "init: an expression of an unknown name": (
        INIT_HEAD + "  linear: {weight: {normal: 1 / fan}}\n" + INIT_BODY,
        "5:33",
        "in expression '1 / fan': unknown name 'fan' (did you mean 'fan_in'?)",
    ),
    "init: an unknown node": (
        INIT_HEAD + "  Unit.bn2: {weight: zeros}\n" + INIT_BODY,
        "5:3",
        "init: Unit has no node 'bn2' (did you mean 'bn'?)",
    ),
    "init: a block node": (
        INIT_HEAD + "  tiny.unit: {weight: zeros}\n" + INIT_BODY,
        "5:3",
        "init: tiny.unit must be one op layer, or a sequence or branches of op layers, built "
        "wherever tiny is",
    ),
    "init: a sequence of layers of two ops": (
        INIT_HEAD + "  tiny.seq: {weight: ones}\n"
        "body:\n  seq: {seq: [{op: conv2d, out: 8, kernel: 3}, batch_norm]}\n",
        "5:3",
        "init.tiny.seq: its layers are of several ops (batch_norm, conv2d), which one rule "
        "cannot start alike",
    ),
    "init: op of one layer": (
        INIT_HEAD + "  Unit.conv: {weight: ones, op: conv2d}\n" + INIT_BODY,
        "5:29",
        "init.Unit.conv: op: picks the layers of a block, or of a seq: or branches: node, "
        "and Unit.conv is one layer",
    ),
    "init: op unknown": (
        INIT_HEAD + "  tiny.seq: {weight: ones, op: conv}\n"
        "body:\n  seq: {seq: [{op: conv2d, out: 8, kernel: 3}, batch_norm]}\n",
        "5:32",
        "init.tiny.seq.op: unknown op 'conv'",
    ),
    "init: op the sequence lacks": (
        INIT_HEAD + "  tiny.seq: {weight: ones, op: linear}\n"
        "body:\n  seq: {seq: [{op: conv2d, out: 8, kernel: 3}, batch_norm]}\n",
        "5:3",
        "init.tiny.seq: builds no linear layer with parameters to start",
    ),
    "init: op of an op rule": (
        INIT_HEAD + "  conv2d: {weight: ones, op: conv2d}\n" + INIT_BODY,
        "5:26",
        "init.conv2d: op: picks the layers of a block's or a Block.node rule, not an op's",
    ),
    "init: a block's rule with when": (
        INIT_HEAD + "  Unit: {weight: ones, op: conv2d, when: true}\n" + INIT_BODY,
        "5:36",
        "init.Unit: when: conditions a Block.node rule, not a block's",
    ),
    "init: a block of several ops": (
        INIT_HEAD + "  Unit: {weight: ones}\n" + INIT_BODY,
        "5:3",
        "init.Unit: its layers are of several ops (batch_norm, conv2d), which one rule cannot "
        "start alike",
    ),
    "init: a sequence with a block": (
        INIT_HEAD
        + "  tiny.seq: {weight: ones}\n"
        + INIT_BODY.replace("  unit: {block: Unit}\n", "  seq: {seq: [{block: Unit}, relu]}\n"),
        "5:3",
        "init: tiny.seq must be one op layer, or a sequence or branches of op layers",
    ),
    "init: a param the node lacks": (
        INIT_HEAD + "  Unit.conv: {bias: zeros}\n" + INIT_BODY,
        "5:3",
        "init.Unit.conv: conv2d layer unit.conv has no param 'bias' (it has weight)",
    ),
    "init: a scale that is not positive": (
        INIT_HEAD + "  conv2d: {weight: {normal: 1 - fan_in}}\n" + INIT_BODY,
        "5:29",
        "init.conv2d.weight: normal needs a positive scale, got -26 at unit.conv",
    ),
    "init: a layer kept inline": (
        "archc: 1\nname: tiny\ninput: [4, 8]\ninit:\n  Proj.qkv: {weight: zeros}\n"
        "blocks:\n  Proj:\n    body:\n      qkv: {op: linear, out: 12, flat: true}\n"
        "body:\n  proj: {block: Proj}\n",
        "5:3",
        "init.Proj.qkv: proj.qkv keeps its parameters on its block (inline)",
    ),
    "init: fans of a one-axis param": (
        INIT_HEAD + "  batch_norm: {weight: {kaiming_normal: fan_in}}\n" + INIT_BODY,
        "5:3",
        "init.batch_norm.weight: kaiming_normal needs a weight's fans",
    ),
}
# A flag the rules may read (line 5), the rules from line 6.
FLAGGED_HEAD = INIT_HEAD.replace("init:\n", "params: {zeroed: false}\ninit:\n")
CASES |= {
    "init: a condition on an op's rule": (
        FLAGGED_HEAD + "  batch_norm: {weight: zeros, when: zeroed}\n" + INIT_BODY,
        "6:31",
        "init.batch_norm: when: conditions a block's or a Block.node rule, not an op's",
    ),
    "init: a condition of an unknown name": (
        FLAGGED_HEAD + "  Unit.bn: {weight: zeros, when: zerod}\n" + INIT_BODY,
        "6:34",
        "unknown name 'zerod'",
    ),
    "init: a condition that is not a bool": (
        FLAGGED_HEAD + "  Unit.bn: {weight: zeros, when: 2}\n" + INIT_BODY,
        "6:34",
        "init.Unit.bn.when: expected a bool",
    ),
    "init: a condition alone": (
        FLAGGED_HEAD + "  Unit.bn: {when: zeroed}\n" + INIT_BODY,
        "6:12",
        "init.Unit.bn: a condition without initialisers",
    ),
}


TRAIN_HEAD = "archc: 1\nname: tiny\ninput: [3, 16, 16]\nbody:\n  relu: relu\ntrain:\n"
TRAIN = "  loss: cross_entropy\n  optimizer: {sgd: {lr: 0.1}}\n  epochs: 2\n  batch_size: 8\n"
CASES |= {
    "train: unknown key": (
        TRAIN_HEAD + TRAIN + "  epoch: 3\n",
        "11:3",
        "unknown key 'epoch' in train (did you mean 'epochs'?)",
    ),
    "train: missing key": (
        TRAIN_HEAD + "  loss: cross_entropy\n  epochs: 2\n  batch_size: 8\n",
        "7:3",
        "train: missing required key 'optimizer'",
    ),
    "train: unknown loss": (
        TRAIN_HEAD + TRAIN.replace("cross_entropy", "cross_entropi"),
        "7:9",
        "train.loss: unknown loss 'cross_entropi' (did you mean 'cross_entropy'?)",
    ),
    "train: unknown setting": (
        TRAIN_HEAD + TRAIN.replace("{lr: 0.1}", "{lr: 0.1, momentun: 0.9}"),
        "8:30",
        "train.optimizer.sgd: unknown setting 'momentun' (did you mean 'momentum'?)",
    ),
    "train: a required setting": (
        TRAIN_HEAD + TRAIN.replace("{sgd: {lr: 0.1}}", "{sgd: {momentum: 0.9}}"),
        "8:15",
        "train.optimizer.sgd: missing required setting 'lr'",
    ),
    "train: a setting of the wrong type": (
        TRAIN_HEAD + TRAIN.replace("{lr: 0.1}", "{lr: 0.1, nesterov: 1}"),
        "8:40",
        "train.optimizer.sgd.nesterov: expected a bool, got 1",
    ),
    "train: a warm-up as long as the run": (
        TRAIN_HEAD + TRAIN + "  warmup_epochs: 2\n",
        "11:18",
        "train.warmup_epochs: 2 leaves none of the 2 epochs",
    ),
    "train: loss weights of a one-output model": (
        TRAIN_HEAD + TRAIN + "  loss_weights: {out: 1.0}\n",
        "11:17",
        "train.loss_weights: the model returns one output",
    ),
    "train: several outputs without loss weights": (
        TRAIN_HEAD + TRAIN + "outputs: {out: relu, aux: relu}\n",
        "7:3",
        "train: the model returns out, aux: loss_weights must weigh each",
    ),
    "train: a loss weight of an unknown output": (
        TRAIN_HEAD + TRAIN + "  loss_weights: {out: 1.0, axu: 0.3}\n"
        "outputs: {out: relu, aux: relu}\n",
        "11:28",
        "unknown key 'axu' in train.loss_weights (the model's outputs) (did you mean 'aux'?)",
    ),
    "train: a teacher that is not there": (
        TRAIN_HEAD + TRAIN + "  distillation: {teacher: big.yaml, kind: soft}\n",
        "11:27",
        "train.distillation.teacher: no spec at",
    ),
    "train: an unknown distillation": (
        TRAIN_HEAD + TRAIN + "  distillation: {teacher: bad.yaml, kind: warm}\n",
        "11:43",
        "train.distillation.kind: expected soft or hard, got 'warm'",
    ),
    "train: a box loss on score maps": (
        TRAIN_HEAD + TRAIN.replace("cross_entropy", "giou"),
        "7:9",
        "train.loss: giou compares a box per image, predicted as its corners x1, y1, x2, y2 "
        "(N, 4); the model predicts (N, 3, 16, 16) (losses for it: cross_entropy, nll, dice)",
    ),
    "train: a one-hot loss on score maps": (
        TRAIN_HEAD + TRAIN.replace("cross_entropy", "{mse: {}}"),
        "7:10",
        "train.loss: mse compares a class index per image",
    ),
    "train: distillation of score maps": (
        TRAIN_HEAD + TRAIN + "  distillation: {teacher: bad.yaml, kind: soft}\n",
        "11:17",
        "train.distillation: distils class scores, and the model predicts (N, 3, 16, 16)",
    ),
    "train: weighted outputs of different shapes": (
        TRAIN_HEAD.replace("relu: relu\n", "relu: relu\n  pool: {op: max_pool2d, kernel: 2}\n")
        + TRAIN
        + "  loss_weights: {out: 1.0, aux: 0.3}\noutputs: {out: relu, aux: pool}\n",
        "8:3",
        "train: every output takes the cross_entropy loss, so 'aux' must have the shape of 'out'",
    ),
    "train: an unknown precision": (
        TRAIN_HEAD + TRAIN + "  precision: bf15\n",
        "11:14",
        "train.precision: expected fp32 or bf16, got 'bf15' (did you mean 'bf16'?)",
    ),
}


@pytest.mark.parametrize("case", CASES)
def test_malformed_spec_gives_one_located_error(case: str, tmp_path: Path) -> None:
    text, position, message = CASES[case]
    spec = tmp_path / "bad.yaml"
    spec.write_text(text)
    result = run_archc("check", str(spec), cwd=tmp_path)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    error, *quoted = result.stderr.strip("\n").splitlines()
    assert error.startswith(f"bad.yaml:{position}: error: "), error
    assert message in error
    assert_quotes_the_spec(quoted, text, position)


PICKING_BLOCK = """archc: 1
name: picks
input: [3, 16, 16]
blocks:
  ConvNorm:
    params: {norm: {type: op, default: batch_norm}}
    body:
      conv: {op: conv2d, out: 8, kernel: 3, padding: 1}
      bn: norm
body:
  a: ConvNorm
  b: {block: ConvNorm, norm: NORM}
"""


@pytest.mark.parametrize(
    ("norm", "message"),
    [
        ("{op: group_norm, groups: 3}", "b.bn (group_norm): groups=3 must divide the 8 channels"),
        ("group_norm", "the param 'norm' picks group_norm without the attributes it needs"),
        ("{op: dropout, p: 0.1}", "the param 'norm' picks dropout, which is not a module"),
    ],
)
def test_an_error_at_a_picked_op_notes_where_the_op_is_picked(
    norm: str, message: str, tmp_path: Path
) -> None:
    (tmp_path / "picks.yaml").write_text(PICKING_BLOCK.replace("NORM", norm))
    result = run_archc("check", "picks.yaml", cwd=tmp_path)
    assert result.returncode == 2
    error, *_, note = result.stderr.strip("\n").splitlines()
    assert error.startswith("picks.yaml:9:11: error: ") and message in error, error
    column = PICKING_BLOCK.splitlines()[11].index("NORM") + 1
    assert note == f"picks.yaml:12:{column}: note: the op is picked here: {norm}"


def test_errors_in_an_imported_library_name_that_file(tmp_path: Path) -> None:
    (tmp_path / "lib.yaml").write_text(
        "archc: 1\nblocks:\n  Stem:\n    body:\n      conv: {op: conv2d, out: 8, kernl: 3}\n"
    )
    (tmp_path / "model.yaml").write_text(
        "archc: 1\nname: m\nimports: [lib.yaml]\ninput: [3, 8, 8]\nbody:\n  stem: Stem\n"
    )
    result = run_archc("check", "model.yaml", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.startswith("lib.yaml:5:34: error: unknown attribute 'kernl'")


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("num_clases=10", "'num_clases' is not a param of resnet50 (did you mean 'num_classes'?)"),
        ("num_classes=ten", "--set num_classes=ten: expected a int, got 'ten'"),
        ("num_classes", "--set expects NAME=VALUE"),
    ],
)
def test_bad_set_override(override: str, message: str) -> None:
    result = run_archc("check", "specs/resnet50.yaml", "--set", override)
    assert result.returncode == 2
    assert re.fullmatch(r"error: .*\n", result.stderr), result.stderr
    assert message in result.stderr


def test_missing_spec_file() -> None:
    result = run_archc("check", "specs/nope.yaml")
    assert result.returncode == 2
    assert result.stderr.startswith("specs/nope.yaml:1:1: error: cannot read spec")


def test_a_unet_skip_without_its_crop_is_caught_at_the_concat(tmp_path: Path) -> None:
    text = (REPO / "specs" / "unet.yaml").read_text()
    concat = "cat: {op: concat, from: [crop, up]}"
    spec = tmp_path / "unet.yaml"
    spec.write_text(text.replace(concat, concat.replace("crop,", "skip,")))
    line = text[: text.index(concat)].count("\n") + 1
    result = run_archc("check", str(spec), cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.startswith(f"unet.yaml:{line}:"), result.stderr
    # The valid convs leave the skip (64x64) larger than the up-convolved map (56x56).
    assert "up1.cat (concat): inputs must match on every axis but 1" in result.stderr
    assert "expected f32[N,*,64,64], got f32[N,512,56,56]" in result.stderr
    assert "center_crop" in result.stderr


@pytest.mark.parametrize(
    ("spec", "override", "library", "node", "message"),
    [
        (
            "vit_b_16",
            "num_heads=7",
            "vit",
            "attention: {op: attention",
            "the embedding dim must be divisible by heads=7, got 768",
        ),
        # Swin's last stage is 768 wide; 25 heads do not split it.
        (
            "swin_t",
            "heads=[3, 6, 12, 25]",
            "swin",
            "attn: {op: window_attention",
            "the embedding dim must be divisible by heads=25, got 768",
        ),
    ],
    ids=["heads", "window heads"],
)
def test_attention_that_does_not_fit_is_caught_in_the_block_library(
    spec: str, override: str, library: str, node: str, message: str
) -> None:
    result = run_archc("check", f"specs/{spec}.yaml", "--set", override)
    assert result.returncode == 2
    text = (REPO / "archc" / "blocks" / f"{library}.yaml").read_text()
    line = text[: text.index(node)].count("\n") + 1
    assert result.stderr.startswith(f"archc/blocks/{library}.yaml:{line}:"), result.stderr
    assert message in result.stderr
