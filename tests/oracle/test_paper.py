"""Specs without a library reference: the generated code is the oracle for counts, and the
paper for the headline figure."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from tests.helpers import GENERATED, archc_stats, count_macs, load_generated  # noqa: E402

PAPER = ["shufflenet_v1"]


def test_shufflenet_v1_counts_and_the_papers_140_million_multiply_adds() -> None:
    stats = archc_stats("specs/shufflenet_v1.yaml")
    model = load_generated(GENERATED / "torch" / "shufflenet_v1.py").create_model().eval()
    macs, output = count_macs(model, torch.randn(stats["input"]))
    assert output.shape == (1, 1000)
    assert stats["macs"] == macs
    assert stats["params"] == sum(p.numel() for p in model.parameters())
    assert stats["buffers"] == sum(b.numel() for b in model.buffers())
    # Zhang et al. 2017, Table 2: ShuffleNet 1x (g = 3) costs 140 MFLOPs (multiply-adds).
    assert abs(stats["macs"] - 140e6) / 140e6 <= 0.03
