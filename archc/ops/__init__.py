"""The op registry: every primitive op, each declared in one module of this package."""

from __future__ import annotations

from archc.ops.base import Op

REGISTRY: dict[str, Op] = {}


def register(cls: type[Op]) -> type[Op]:
    """Class decorator: make an op available to specs under `cls.name`."""
    if cls.name in REGISTRY:
        raise ValueError(f"op {cls.name!r} registered twice")
    REGISTRY[cls.name] = cls()
    return cls


# Importing the families registers their ops.
from archc.ops import (  # noqa: E402, F401
    activation,
    attention,
    conv,
    detection,
    learned,
    linear,
    norm,
    pool,
    regularization,
    resize,
    tensor,
    tokens,
)
