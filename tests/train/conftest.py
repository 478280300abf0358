from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

INK = 0.25
"""The brightness above which a pixel is a digit's ink, not paper."""


@pytest.fixture(scope="session")
def digits(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The 1,797 8x8 digits that ship with scikit-learn: 80% to train, 20% to test."""
    images, labels = _shuffled_digits()
    return _saved(tmp_path_factory, "digits", images[:, None], labels)


@pytest.fixture(scope="session")
def digits_ink(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The digits, each pixel labelled ink (1) or paper (0)."""
    images, _ = _shuffled_digits()
    return _saved(tmp_path_factory, "ink", images[:, None], (images > INK).astype(np.int64))


@pytest.fixture(scope="session")
def digits_boxes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Each digit at a random place on a 16x16 canvas, labelled with the box around its ink
    (corners x1, y1, x2, y2 as fractions of the canvas)."""
    images, _ = _shuffled_digits()
    canvases = np.zeros((len(images), 16, 16), np.float32)
    offsets = np.random.default_rng(1).integers(0, 9, (len(images), 2))
    for canvas, image, (top, left) in zip(canvases, images, offsets):
        canvas[top : top + 8, left : left + 8] = image
    ink = canvases > INK
    (top, bottom), (left, right) = _span(ink.any(2)), _span(ink.any(1))
    boxes = np.stack([left, top, right, bottom], 1).astype(np.float32) / 16
    return _saved(tmp_path_factory, "boxes", canvases[:, None], boxes)


def _shuffled_digits() -> tuple[np.ndarray, np.ndarray]:
    datasets = pytest.importorskip("sklearn.datasets")
    found = datasets.load_digits()
    order = np.random.default_rng(0).permutation(len(found.images))
    return (found.images / 16.0).astype(np.float32)[order], found.target[order].astype(np.int64)


def _span(filled: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Where each row of booleans is first true, and one past where it is last."""
    return filled.argmax(1), filled.shape[1] - filled[:, ::-1].argmax(1)


def _saved(
    factory: pytest.TempPathFactory, name: str, images: np.ndarray, labels: np.ndarray
) -> Path:
    split = int(0.8 * len(images))
    path = factory.mktemp(name) / f"{name}.npz"
    np.savez(
        path,
        x_train=images[:split],
        y_train=labels[:split],
        x_test=images[split:],
        y_test=labels[split:],
    )
    return path
