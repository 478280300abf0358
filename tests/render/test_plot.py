"""`archc compare --plot`: every point labelled without overlap, human units, input sizes
marked, accuracy against MACs from a CSV, and PNG and PDF beside SVG."""

from __future__ import annotations

import itertools
import json
import re
import struct
import xml.etree.ElementTree as ElementTree
from pathlib import Path

import pytest

from tests.helpers import REPO, SPECS, run_archc

SVG = "{http://www.w3.org/2000/svg}"
CHARACTER, LINE = 6.2, 12  # 11 px Helvetica: a character's width, a line's height


def plot(tmp_path: Path, *args: str, name: str = "plot.svg") -> tuple[Path, list[dict]]:
    out = tmp_path / name
    result = run_archc("compare", *args, "--format", "json", "--plot", str(out))
    assert result.returncode == 0, result.stderr
    return out, json.loads(result.stdout)


def points(path: Path) -> list[ElementTree.Element]:
    tree = ElementTree.parse(path)
    return [g for g in tree.iter(f"{SVG}g") if "point" in g.get("class", "").split()]


def label_box(text: ElementTree.Element) -> tuple[float, float, float, float]:
    """The box a label's text covers, from its position, anchor and length."""
    x, y, width = float(text.get("x")), float(text.get("y")), CHARACTER * len(text.text)
    left = {"start": x, "end": x - width, "middle": x - width / 2}[text.get("text-anchor")]
    return left, y + 2 - LINE, left + width, y + 2


def overlaps(a: tuple[float, ...], b: tuple[float, ...]) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def test_every_point_of_the_zoo_is_labelled_and_no_labels_overlap(tmp_path: Path) -> None:
    specs = sorted(path.relative_to(REPO).as_posix() for path in SPECS.glob("*.yaml"))
    out, rows = plot(tmp_path, *specs)
    drawn = points(out)
    assert len(drawn) == len(rows)
    boxes, circles = [], []
    for point in drawn:
        (label,) = [t for t in point.iter(f"{SVG}text") if t.get("class") == "label"]
        model = point.get("data-model")
        row = next(row for row in rows if row["model"] == model)
        size = row["input"].split("x")[-1]
        assert label.text == model if size == "224" else label.text == f"{model} @{size}"
        boxes.append(label_box(label))
        circle = point.find(f"{SVG}circle")
        cx, cy = float(circle.get("cx")), float(circle.get("cy"))
        circles.append((cx - 4, cy - 4, cx + 4, cy + 4))
    for a, b in itertools.combinations(boxes, 2):
        assert not overlaps(a, b), (a, b)
    for box in boxes:
        assert not any(overlaps(box, circle) for circle in circles), box


def test_axes_are_in_human_units_at_whole_decades(tmp_path: Path) -> None:
    out, rows = plot(tmp_path, "specs/resnet18.yaml", "specs/mobilenet_v2.yaml")
    texts = [t.text for t in ElementTree.parse(out).iter(f"{SVG}text")]
    # resnet18: 11.7M params, 1.8G MACs; mobilenet_v2: 3.5M params, 0.3G MACs.
    assert {"1M", "10M", "100M"} <= set(texts) and {"100M", "1G", "10G"} <= set(texts)
    assert not any(re.fullmatch(r"1e\d+", text or "") for text in texts)
    assert {row["model"] for row in rows} == {"resnet18", "mobilenet_v2"}


def test_accuracy_against_macs_from_a_csv(tmp_path: Path) -> None:
    # torchvision's published ImageNet top-1 for these weights (IMAGENET1K_V1).
    accuracy = {"resnet18": 69.758, "resnet50": 76.13, "mobilenet_v2": 71.878, "vgg16": 71.592}
    csv = tmp_path / "accuracy.csv"
    csv.write_text("model,accuracy\n" + "".join(f"{m},{a}\n" for m, a in accuracy.items()))
    specs = [f"specs/{name}.yaml" for name in [*accuracy, "alexnet"]]
    out = tmp_path / "accuracy.svg"
    result = run_archc("compare", *specs, "--plot", str(out), "--accuracy", str(csv))
    assert result.returncode == 0, result.stderr
    drawn = {p.get("data-model"): p for p in points(out)}
    assert set(drawn) == set(accuracy)  # alexnet has no accuracy: left out
    heights = {model: float(p.find(f"{SVG}circle").get("cy")) for model, p in drawn.items()}
    by_height = sorted(heights, key=heights.get)  # SVG's y grows downwards
    assert by_height == sorted(accuracy, key=accuracy.get, reverse=True)
    macs = {model: int(p.get("data-macs")) for model, p in drawn.items()}

    def beaten(model: str) -> bool:
        return any(
            macs[o] <= macs[model] and accuracy[o] >= accuracy[model] and o != model
            for o in accuracy
        )

    frontier = {m for m, p in drawn.items() if "frontier" in p.get("class").split()}
    assert frontier == {model for model in accuracy if not beaten(model)}
    assert frontier == {"mobilenet_v2", "resnet50"}  # mobilenet_v2 beats resnet18 and vgg16


def test_a_bad_accuracy_file_is_a_located_error_and_nothing_is_drawn(tmp_path: Path) -> None:
    csv = tmp_path / "accuracy.csv"
    csv.write_text("model,accuracy\nresnet18,69.8\nresnet50,seventy-six\n")
    out = tmp_path / "accuracy.svg"
    result = run_archc("compare", "specs/resnet18.yaml", "--plot", str(out), "--accuracy", str(csv))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.startswith(f"{csv}:3:10: error: expected an accuracy in % from 0 to")
    assert "'seventy-six'" in result.stderr and not out.exists()
    lone = run_archc("compare", "specs/resnet18.yaml", "--accuracy", str(csv))
    assert lone.returncode == 2 and "give --plot FILE too" in lone.stderr and not lone.stdout


@pytest.mark.parametrize(("suffix", "magic"), [(".png", b"\x89PNG\r\n\x1a\n"), (".pdf", b"%PDF")])
def test_the_plot_is_also_drawn_as_png_and_pdf(suffix: str, magic: bytes, tmp_path: Path) -> None:
    pytest.importorskip("cairosvg")
    out, _ = plot(tmp_path, "specs/resnet18.yaml", "specs/alexnet.yaml", name=f"zoo{suffix}")
    data = out.read_bytes()
    assert data.startswith(magic)
    if suffix == ".png":
        width, height = struct.unpack(">II", data[16:24])
        assert (width, height) == (1800, 1200)  # the SVG's 900×600 at twice the scale
