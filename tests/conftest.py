import random
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.helpers import REPO, run_archc


@pytest.fixture(autouse=True)
def _run_in_repo(monkeypatch: pytest.MonkeyPatch) -> None:
    """Spec paths in messages and generated files are relative to the repository."""
    monkeypatch.chdir(REPO)


@pytest.fixture(autouse=True)
def _seeded() -> None:
    """Every test draws the same random weights and inputs on every run, whatever ran before
    it, so that a tolerance failure reproduces."""
    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)


@pytest.fixture(scope="session")
def giou_retinanet(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with retinanet_resnet50_fpn built (torch and flax) with its box loss of
    torchvision's giou type, `box_giou_loss`, instead of L1 (retinanet_resnet50_fpn_v2's)."""
    folder = tmp_path_factory.mktemp("giou")
    text = (REPO / "specs" / "retinanet_resnet50_fpn.yaml").read_text()
    assert text.count("op: box_l1_loss") == 1
    spec = folder / "retinanet_resnet50_fpn.yaml"
    spec.write_text(text.replace("op: box_l1_loss", "op: box_giou_loss"))
    for backend in ("torch", "flax"):
        built = run_archc("build", str(spec), "--backend", backend, "-o", str(folder))
        assert built.returncode == 0, built.stderr
    return folder
