"""`archc diagram`: the SVG's clusters, badges and edge labels against the IR."""

from __future__ import annotations

import itertools
import os
import re
import shutil
import xml.etree.ElementTree as ElementTree
from dataclasses import dataclass
from pathlib import Path

import pytest

from archc.pipeline import compile_spec
from tests.helpers import REPO, archc_stats, run_archc

needs_dot = pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz's dot is missing")
SVG = "{http://www.w3.org/2000/svg}"
RESNET50_LAYERS = [3, 4, 6, 3]  # He et al. 2016, Table 1
BADGE = re.compile(r"(?<!\S)×(\d+)")  # "×2" after a space; shapes read 3×224×224


@dataclass
class Drawn:
    nodes: dict[str, str]
    """Node id → its text."""
    clusters: dict[str, str]
    edges: dict[tuple[str, str], ElementTree.Element]
    centres: dict[str, tuple[float, float]]
    """Node id → the centre of its shape."""


def draw(spec: str, tmp_path: Path, *options: str) -> Drawn:
    out = tmp_path / "drawing.svg"
    result = run_archc("diagram", spec, "-o", str(out), *options)
    assert result.returncode == 0, result.stderr
    drawn = Drawn({}, {}, {}, {})
    for group in ElementTree.parse(out).iter(f"{SVG}g"):
        kind, element_id = group.get("class", "").split(" ")[0], group.get("id", "")
        text = " ".join(t.text or "" for t in group.iter(f"{SVG}text"))
        if kind == "node" and element_id.startswith("caption:"):  # a cluster's caption
            drawn.clusters[element_id.removeprefix("caption:")] = text
        elif kind == "node":
            drawn.nodes[element_id] = text
            outline = [*group.iter(f"{SVG}path"), *group.iter(f"{SVG}polygon")]
            if outline:  # a box (the legend has none, the ends are ellipses)
                text = outline[0].get("d") or outline[0].get("points")
                numbers = [float(n) for n in re.findall(r"-?\d+(?:\.\d+)?", text)]
                xs, ys = numbers[0::2], numbers[1::2]
                drawn.centres[element_id] = ((min(xs) + max(xs)) / 2, (min(ys) + max(ys)) / 2)
        elif kind == "cluster":
            drawn.clusters.setdefault(element_id.removeprefix("cluster:"), text)
        elif kind == "edge":
            source, target = element_id.removeprefix("edge:").split("->")
            drawn.edges[source, target] = group
    return drawn


def macs_under(spec: str, paths: list[str]) -> int:
    """The MACs of the ops under these modules, from `stats --format json`."""
    nodes = archc_stats(spec)["nodes"]
    return sum(n["macs"] for n in nodes if any(n["name"].startswith(p + ".") for p in paths))


def label(edge: ElementTree.Element) -> str:
    return " ".join(t.text or "" for t in edge.iter(f"{SVG}text"))


def is_dashed(edge: ElementTree.Element) -> bool:
    return any(path.get("stroke-dasharray") for path in edge.iter(f"{SVG}path"))


def assert_conv_inputs_are_labelled_as_in_the_ir(spec: str, drawn: Drawn) -> int:
    """Every edge into a drawn conv carries the IR's type of the conv's input, C×H×W."""
    graph = compile_spec(REPO / spec).program.graph
    checked = 0
    for (source, target), edge in drawn.edges.items():
        node = graph.nodes.get(target)
        if node is None or node.op.name not in ("conv2d", "conv_transpose2d"):
            continue
        shape = graph.type_of(node.inputs[0]).shape[1:]
        assert label(edge) == "×".join(map(str, shape)), (source, target)
        checked += 1
    return checked


@needs_dot
def test_resnet50_fits_a_page_with_stage_clusters_and_repeat_badges(tmp_path: Path) -> None:
    drawn = draw("specs/resnet50.yaml", tmp_path)
    assert len(drawn.nodes) < 60
    stages = [f"layer{k}" for k in range(1, 5)]
    assert set(stages) <= drawn.clusters.keys()
    for stage, blocks in zip(stages, RESNET50_LAYERS):
        # The first block changes the shape; the rest are identical and drawn once, ×N.
        first = drawn.clusters.get(f"{stage}.0") or drawn.nodes[f"{stage}.0"]
        assert not BADGE.search(first)
        badge = BADGE.search(drawn.nodes[f"{stage}.1"])
        assert badge and int(badge.group(1)) == blocks - 1, drawn.nodes[f"{stage}.1"]
        assert f"{stage}.1–{blocks - 1}" in drawn.nodes[f"{stage}.1"]
    # One Bottleneck, the first, is drawn open; the others are boxes.
    assert "Bottleneck" in drawn.clusters["layer1.0"]
    assert not {"layer2.0", "layer3.0", "layer4.0"} & drawn.clusters.keys()
    legend = drawn.nodes["legend"]
    assert "input 3×224×224" in legend and "FLOPs = 2 × MACs" in legend
    assert "25,557,032 params" in legend


@needs_dot
def test_conv_norm_activation_is_one_box_of_ops_that_read_each_other(tmp_path: Path) -> None:
    drawn = draw("specs/resnet50.yaml", tmp_path)
    graph = compile_spec(REPO / "specs/resnet50.yaml").program.graph
    fused = 0
    for node_id, text in drawn.nodes.items():
        if "·" not in text or node_id not in graph.nodes:
            continue
        title = text.split(" conv2d")[0].split(" linear")[0]
        prefix = node_id.rpartition(".")[0]
        later = [name.strip() for name in title.split("·")[1:]]
        path = [node_id, *(f"{prefix}.{name}".lstrip(".") for name in later)]
        ops = [graph.nodes[name].op.name for name in path]
        assert ops[0] in ("conv2d", "linear") and set(ops[1:]) <= {"batch_norm", "relu"}, title
        for before, after in itertools.pairwise(path):  # each reads the one before it, alone
            assert graph.nodes[after].inputs == [before], (before, after)
        fused += 1
    assert fused >= 4  # the stem, and the first Bottleneck's three convs
    assert "conv1 · bn1 · relu" in drawn.nodes["conv1"]


@needs_dot
def test_the_legend_names_the_families_drawn_and_scales_the_heat(tmp_path: Path) -> None:
    drawn = draw("specs/resnet50.yaml", tmp_path)
    legend = drawn.nodes["legend"]
    assert "conv" in legend and "norm" in legend and "attention" not in legend
    run = [f"layer3.{index}" for index in range(1, 6)]  # the costliest block box drawn
    assert f"{macs_under('specs/resnet50.yaml', run) / 1e9:.3g}G" in legend


@needs_dot
@pytest.mark.parametrize(("spec", "depth", "convs"), [("resnet50", 4, 29), ("googlenet", 4, 57)])
def test_edges_into_convs_carry_the_ir_shapes(
    spec: str, depth: int, convs: int, tmp_path: Path
) -> None:
    """Deep enough that every conv is drawn: GoogLeNet's 57; ResNet-50's stem, and per stage
    the first block's 3 with its projection and the 3 of the run drawn once."""
    path = f"specs/{spec}.yaml"
    drawn = draw(path, tmp_path, "--depth", str(depth))
    assert assert_conv_inputs_are_labelled_as_in_the_ir(path, drawn) == convs


@needs_dot
def test_resnet_skips_are_dashed_at_block_level(tmp_path: Path) -> None:
    drawn = draw("specs/resnet50.yaml", tmp_path, "--depth", "3")
    # Block layer1.1's input is layer1.0's output; the add reads it straight: a skip.
    edge = drawn.edges["layer1.0.relu3", "layer1.1.add"]
    assert is_dashed(edge)
    assert not is_dashed(drawn.edges["layer1.0.relu3", "layer1.1.conv1"])


@needs_dot
def test_googlenet_draws_each_inception_as_a_cluster(tmp_path: Path) -> None:
    drawn = draw("specs/googlenet.yaml", tmp_path, "--depth", "2")
    inceptions = ["3a", "3b", "4a", "4b", "4c", "4d", "4e", "5a", "5b"]
    assert {f"inception{name}" for name in inceptions} <= drawn.clusters.keys()
    for name in inceptions:
        branches = {f"inception{name}.branch{k}" for k in range(1, 5)}
        assert branches <= drawn.nodes.keys()
    assert not any(BADGE.search(text) for text in drawn.nodes.values())  # none alike in a row


@needs_dot
def test_unet_is_drawn_as_a_u(tmp_path: Path) -> None:
    """Each encoder stage's skip into the decoder stage of the same level runs level: the
    decoder climbs back beside the encoder."""
    drawn = draw("specs/unet.yaml", tmp_path)
    encoder = ["inc", "down1", "down2", "down3"]
    decoder = ["up4", "up3", "up2", "up1"]
    heights = []
    for down, up in zip(encoder, decoder):
        (skip,) = [
            (source, target)
            for source, target in drawn.edges
            if _top(source) == down and _top(target) == up
        ]
        (source_x, source_y), (target_x, target_y) = map(drawn.centres.get, skip)
        assert abs(source_y - target_y) < 1 and target_x > source_x, skip
        heights.append(source_y)
    assert heights == sorted(heights)  # inc at the top, down3 lowest: the U's two arms
    # The crop reads the upsampled map only for its size: no data edge from it.
    assert {source for source, target in drawn.edges if target == "up1.crop"} == {"down3"}
    assert ("up1.up", "up1.cat") in drawn.edges
    assert assert_conv_inputs_are_labelled_as_in_the_ir("specs/unet.yaml", drawn) >= 2
    assert label(drawn.edges["outc", "output"]) == "2×388×388"


def _top(path: str) -> str:
    return path.split(".")[0]


def test_dot_output_needs_no_graphviz(tmp_path: Path) -> None:
    out = tmp_path / "resnet18.dot"
    without_dot = {**os.environ, "PATH": str(tmp_path)}
    result = run_archc("diagram", "specs/resnet18.yaml", "-o", str(out), env=without_dot)
    assert result.returncode == 0, result.stderr
    text = out.read_text()
    assert text.startswith('digraph "resnet18" {') and text.rstrip().endswith("}")


def test_unknown_format_is_refused_and_nothing_is_written(tmp_path: Path) -> None:
    out = tmp_path / "resnet18.jpeg"
    result = run_archc("diagram", "specs/resnet18.yaml", "-o", str(out))
    assert result.returncode == 2
    assert "expected a .svg, .png, .pdf or .dot file, got '.jpeg'" in result.stderr
    assert not out.exists()


@needs_dot
def test_swin_stages_collapse_to_their_depths(tmp_path: Path) -> None:
    """Swin's blocks differ only in their shift and drop rate: each stage is one run."""
    drawn = draw("specs/swin_t.yaml", tmp_path, "--depth", "3")
    depths = [2, 2, 6, 2]  # Liu et al. 2021, Swin-T
    for stage, depth in zip(("features.1", "features.3", "features.5", "features.7"), depths):
        assert stage in drawn.clusters
        run = drawn.clusters.get(f"{stage}.0") or drawn.nodes[f"{stage}.0"]  # the first: open
        badge = BADGE.search(run)
        assert badge and int(badge.group(1)) == depth, run
        assert "shift 0, 3" in run  # what differs between the run's blocks, on the badge
    # torchvision's drop rates: 0.2 * k / 11 for block k of 12; stage 3 holds blocks 4 to 9.
    assert f"p {0.2 * 4 / 11:.3g}–{0.2 * 9 / 11:.3g}" in drawn.nodes["features.5.0"]
    assert len(drawn.nodes) < 60


@needs_dot
def test_a_long_sequence_draws_its_ends_and_one_box_for_the_middle(tmp_path: Path) -> None:
    """300 written-out convs: the first and last 50 drawn, the 200 between as one box."""
    body = "".join(f"  c{k}: {{op: conv2d, out: 4, kernel: 1}}\n" for k in range(300))
    spec = tmp_path / "long.yaml"
    spec.write_text(f"archc: 1\nname: long\ninput: [4, 4, 4]\nbody:\n{body}")
    drawn = draw(str(spec), tmp_path)
    convs = {name for name in drawn.nodes if name.startswith("c")}
    assert convs == {f"c{k}" for k in [*range(51), *range(250, 300)]}
    assert "200 modules not drawn" in drawn.nodes["c50"]  # the box is named by its first
    assert {("c49", "c50"), ("c50", "c250")} <= drawn.edges.keys()
