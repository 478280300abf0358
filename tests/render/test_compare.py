"""`archc compare --input` and `--plot`, and the depth column, against independent figures."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ElementTree
from pathlib import Path

import pytest

from tests.helpers import GENERATED, count_macs, load_generated, run_archc, torchvision

SVG = "{http://www.w3.org/2000/svg}"

# Depths the names or the papers state: weighted layers on the longest path.
PUBLISHED_DEPTHS = {
    "resnet18": 18,
    "resnet34": 34,
    "resnet50": 50,
    "resnet101": 101,
    "resnet152": 152,
    "vgg16": 16,
    "densenet121": 121,
    "darknet53": 53,
    "alexnet": 8,  # Krizhevsky et al. 2012: "eight learned layers"
    "googlenet": 22,  # Szegedy et al. 2015: "22 layers deep" counting layers with parameters
    "unet": 23,  # Ronneberger et al. 2015: "In total the network has 23 convolutional layers"
}


def compare_json(*args: str) -> list[dict]:
    result = run_archc("compare", *args, "--format", "json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_depth_is_the_published_one() -> None:
    rows = compare_json(*(f"specs/{name}.yaml" for name in PUBLISHED_DEPTHS))
    assert {row["model"]: row["depth"] for row in rows} == PUBLISHED_DEPTHS


def test_attention_counts_its_projections_however_it_is_written() -> None:
    """ViT writes attention out (in_proj, the attention core, out_proj) and Swin as one
    window-attention op: both count their two projections. The oracle: torchvision's
    chain-shaped transformers, whose depth is their convs and linears plus the input
    projection nn.MultiheadAttention holds as a bare parameter."""
    torch = pytest.importorskip("torch")
    models = torchvision().models
    rows = {
        row["model"]: row["depth"]
        for row in compare_json("specs/vit_b_16.yaml", "specs/swin_t.yaml")
    }
    for name, builder in (("vit_b_16", models.vit_b_16), ("swin_t", models.swin_t)):
        modules = list(builder().modules())
        weighted = (torch.nn.Conv2d, torch.nn.Linear, torch.nn.MultiheadAttention)
        assert rows[name] == sum(isinstance(module, weighted) for module in modules), name
    assert rows == {"vit_b_16": 50, "swin_t": 53}


def test_one_row_per_model_and_input_size() -> None:
    rows = compare_json("specs/resnet18.yaml", "specs/unet.yaml", "--input", "188,252x380")
    assert [(row["model"], row["input"]) for row in rows] == [
        ("resnet18", "1x3x188x188"),
        ("resnet18", "1x3x252x380"),
        ("unet", "1x1x188x188"),
        ("unet", "1x1x252x380"),
    ]
    for row in rows:
        size = row["input"].split("x", 2)[2]
        stats = run_archc("stats", row["spec"], "--input", size, "--format", "json")
        stats = json.loads(stats.stdout)
        assert row["macs"] == stats["macs"] and row["params"] == stats["params"]


def test_another_input_size_costs_what_the_generated_model_does() -> None:
    torch = pytest.importorskip("torch")
    model = load_generated(GENERATED / "torch" / "resnet18.py").create_model().eval()
    (row,) = compare_json("specs/resnet18.yaml", "--input", "320x256")
    macs, output = count_macs(model, torch.randn(1, 3, 320, 256))
    assert row["macs"] == macs and output.shape == (1, 1000)


def test_a_size_the_model_cannot_take_is_a_located_error() -> None:
    result = run_archc("compare", "specs/unet.yaml", "--input", "100")
    assert result.returncode == 2
    assert result.stderr.startswith("specs/unet.yaml:")
    assert "the kernel does not fit the input" in result.stderr
    bad = run_archc("compare", "specs/unet.yaml", "--input", "big")
    assert bad.returncode == 2 and "expected a size like 320 or 320x256" in bad.stderr


def test_a_refused_size_is_one_row_and_the_others_are_printed(tmp_path: Path) -> None:
    plot = tmp_path / "plot.svg"
    specs = ("specs/unet.yaml", "specs/resnet18.yaml")
    result = run_archc("compare", *specs, "--input", "100,188", "--format", "json", "--plot", plot)
    assert result.returncode == 2
    assert result.stderr.startswith("specs/unet.yaml:") and "Traceback" not in result.stderr
    rows = {(row["model"], row["input"]): row for row in json.loads(result.stdout)}
    assert "the kernel does not fit the input" in rows["unet", "100x100"]["error"]
    for key in [("unet", "1x1x188x188"), ("resnet18", "1x3x100x100"), ("resnet18", "1x3x188x188")]:
        assert rows[key]["error"] == "" and rows[key]["macs"] > 0
    table = run_archc("compare", *specs, "--input", "100,188").stdout.splitlines()
    assert sum("refused" in line for line in table) == 1 and len(table) == 2 + 4
    assert len(ElementTree.parse(plot).findall(f".//{SVG}g[@data-model]")) == 3


def test_plot_marks_the_pareto_frontier(tmp_path: Path) -> None:
    specs = [
        "specs/resnet18.yaml",
        "specs/resnet50.yaml",
        "specs/mobilenet_v2.yaml",
        "specs/squeezenet1_1.yaml",
        "specs/vgg16.yaml",
        "specs/alexnet.yaml",
    ]
    plot = tmp_path / "zoo.svg"
    rows = compare_json(*specs, "--plot", str(plot))
    points = [
        group
        for group in ElementTree.parse(plot).iter(f"{SVG}g")
        if "point" in group.get("class", "").split()
    ]
    assert sorted(point.get("data-model") for point in points) == sorted(r["model"] for r in rows)
    for point in points:
        (row,) = [row for row in rows if row["model"] == point.get("data-model")]
        assert int(point.get("data-params")) == row["params"]
        assert int(point.get("data-macs")) == row["macs"]

    def dominated(row: dict) -> bool:
        return any(
            o["params"] <= row["params"] and o["macs"] <= row["macs"] and o != row for o in rows
        )

    frontier = {p.get("data-model") for p in points if "frontier" in p.get("class", "").split()}
    assert frontier == {row["model"] for row in rows if not dominated(row)}
    assert frontier  # squeezenet1_1 and mobilenet_v2 at least
