"""Every spec of the zoo is held to an independent oracle."""

from __future__ import annotations

import pytest

pytest.importorskip("torch")

from tests.helpers import SPECS
from tests.oracle import test_paper, test_timm, test_torchvision


def test_every_spec_has_a_reference_or_a_paper_check() -> None:
    references = [
        test_torchvision.TORCHVISION,
        test_torchvision.DETECTORS,
        test_torchvision.STAGES,  # and Faster R-CNN, held to the detector apart
        test_torchvision.FED_HEADS,  # and Mask R-CNN
        test_timm.TIMM,
    ]
    covered = {name for names in [*references, test_paper.PAPER] for name in names}
    assert {path.stem for path in SPECS.glob("*.yaml")} == covered
