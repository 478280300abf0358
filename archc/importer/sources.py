"""Where an imported model comes from: `torchvision:NAME`, `timm:NAME` or `module:callable`."""

from __future__ import annotations

import importlib
import os
import re
import sys
from typing import Any

from archc.errors import ArchcError

DEFAULT_INPUT = (3, 224, 224)
"""An imported model's input size (channels, height, width) when nothing says otherwise."""
SOURCE = re.compile(r"(?P<kind>[A-Za-z_][\w.]*):(?P<name>[A-Za-z_]\w*)")


def load_source(source: str) -> tuple[str, Any, tuple[int, int, int]]:
    """The model's name, the model (built without pretrained weights) and its input size
    (channels, height, width: timm's default config, else 3×224×224)."""
    match = SOURCE.fullmatch(source)
    if match is None:
        raise ArchcError(
            f"expected a model like torchvision:resnet18, timm:resnet18 or module:callable, "
            f"got {source!r}"
        )
    kind, name = match["kind"], match["name"]
    if kind == "torchvision":
        models = _import("torchvision.models")
        if name not in models.list_models():
            raise ArchcError(f"torchvision has no model named {name!r}")
        model = models.get_model(name, weights=None)
    elif kind == "timm":
        timm = _import("timm")
        if not timm.is_model(name):
            raise ArchcError(f"timm has no model named {name!r}")
        model = timm.create_model(name, pretrained=False)
    else:
        if "" not in sys.path and os.getcwd() not in sys.path:  # as `python -m` finds it
            sys.path.insert(0, os.getcwd())
        factory = getattr(_import(kind), name, None)
        if not callable(factory):
            raise ArchcError(f"module {kind} has no callable named {name!r}")
        model = factory()
    config = getattr(model, "pretrained_cfg", None) or getattr(model, "default_cfg", None) or {}
    size = tuple(config.get("input_size", DEFAULT_INPUT))
    return name, model, size


def _import(module: str) -> Any:
    try:
        return importlib.import_module(module)
    except Exception as error:  # an import can fail in any way (a missing compiled op)
        raise ArchcError(f"cannot import {module}: {type(error).__name__}: {error}") from None
