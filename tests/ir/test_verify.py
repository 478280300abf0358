"""Every spec elaborates into a graph that passes the IR verifier; the verifier catches breaks."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from archc.errors import InternalError
from archc.ir.graph import TensorType
from archc.ir.verify import verify
from archc.resolve.elaborate import elaborate
from archc.spec.document import load_model
from tests.helpers import REPO, SPECS

ALL_SPECS = [*sorted(SPECS.glob("*.yaml")), REPO / "tests" / "specs" / "features.yaml"]


@pytest.mark.parametrize("spec", ALL_SPECS, ids=lambda path: path.stem)
def test_elaborated_graphs_verify(spec: Path) -> None:
    verify(elaborate(load_model(spec), {}).graph, stage="resolve")


def test_verifier_catches_a_wrong_type() -> None:
    graph = elaborate(load_model(SPECS / "resnet18.yaml"), {}).graph
    node = graph.nodes["layer1.0.conv1"]
    graph.nodes[node.name] = replace(node, type=TensorType((*node.type.shape[:3], 999)))
    with pytest.raises(InternalError, match=r"layer1\.0\.conv1 has type"):
        verify(graph, stage="test")


def test_verifier_catches_a_use_before_definition() -> None:
    graph = elaborate(load_model(SPECS / "resnet18.yaml"), {}).graph
    node = graph.nodes["conv1"]
    graph.nodes["conv1"] = replace(node, inputs=["fc"])
    with pytest.raises(InternalError, match="reads 'fc' before it is defined"):
        verify(graph, stage="test")
