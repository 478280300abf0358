"""`archc diff`: the changed blocks and their deltas, against `archc stats` of each side."""

from __future__ import annotations

import json
import shutil
import xml.etree.ElementTree as ElementTree
from pathlib import Path

import pytest

from tests.helpers import run_archc

SVG = "{http://www.w3.org/2000/svg}"


def stats(spec: str, *overrides: str) -> dict:
    sets = [f"--set={item}" for item in overrides]
    return json.loads(run_archc("stats", spec, "--format", "json", *sets).stdout)


def rows(output: str) -> dict[str, list[str]]:
    """Table rows by block name (the lines after the rule)."""
    lines = output.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("---")) + 1
    return {line.split()[0]: line.split()[1:] for line in lines[start:]}


def number(cell: str) -> int:
    return int(cell.replace(",", ""))


def test_a_new_head_changes_only_the_classifier() -> None:
    result = run_archc(
        "diff", "specs/resnet50.yaml", "specs/resnet50.yaml", "--set", "num_classes=10"
    )
    assert result.returncode == 0, result.stderr
    table = rows(result.stdout)
    assert list(table) == ["fc", "total"]
    before, after = stats("specs/resnet50.yaml"), stats("specs/resnet50.yaml", "num_classes=10")
    kind, params, delta, macs, delta_macs, *output = table["fc"]
    assert number(macs) == after["blocks"]["fc"]["macs"]
    assert kind == "changed" and " ".join(output) == "1000 -> 10"
    assert number(params) == after["blocks"]["fc"]["params"]
    assert number(delta) == after["params"] - before["params"]
    assert number(delta_macs) == after["macs"] - before["macs"]
    assert number(table["total"][0]) == after["params"]


def test_deeper_stages_show_as_added_blocks() -> None:
    result = run_archc("diff", "specs/resnet18.yaml", "specs/resnet34.yaml")
    assert result.returncode == 0, result.stderr
    table = rows(result.stdout)
    # ResNet-34 has 3, 4, 6, 3 BasicBlocks where ResNet-18 has two in each stage.
    added = sorted(name for name, cells in table.items() if cells[0] == "added")
    assert added == ["layer1.2", "layer2.2", "layer2.3", "layer3.2", "layer3.3", "layer3.4",
                     "layer3.5", "layer4.2"]  # fmt: skip
    before, after = stats("specs/resnet18.yaml"), stats("specs/resnet34.yaml")
    for stage in ("layer1", "layer2", "layer3", "layer4"):
        delta = after["blocks"][stage]["params"] - before["blocks"][stage]["params"]
        assert number(table[stage][2]) == delta
    assert "conv1" not in table and "fc" not in table  # the same on both sides


@pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz's dot is missing")
def test_diff_diagram_outlines_the_changed_blocks(tmp_path: Path) -> None:
    out = tmp_path / "diff.svg"
    result = run_archc("diff", "specs/resnet18.yaml", "specs/resnet34.yaml", "-o", str(out))
    assert result.returncode == 0, result.stderr
    changed = {
        group.get("id", "").removeprefix("cluster:")
        for group in ElementTree.parse(out).iter(f"{SVG}g")
        if "changed" in group.get("class", "").split()
    }
    assert {"layer1", "layer2", "layer3", "layer4"} <= changed
    assert not changed & {"conv1", "bn1", "fc", "layer2.0"}  # layer2.0 is the same in both
