from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest


@pytest.fixture(scope="session")
def digits(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The 1,797 8x8 digits that ship with scikit-learn: 80% to train, 20% to test."""
    datasets = pytest.importorskip("sklearn.datasets")
    found = datasets.load_digits()
    images = (found.images / 16.0).astype(np.float32)[:, None]
    order = np.random.default_rng(0).permutation(len(images))
    images, labels = images[order], found.target[order].astype(np.int64)
    split = int(0.8 * len(images))
    path = tmp_path_factory.mktemp("digits") / "digits.npz"
    np.savez(
        path,
        x_train=images[:split],
        y_train=labels[:split],
        x_test=images[split:],
        y_test=labels[split:],
    )
    return path
