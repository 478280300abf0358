import random

import numpy as np
import pytest
import torch

from tests.helpers import REPO


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
