"""Shared test helpers: paths, running archc, and importing the reference libraries."""

from __future__ import annotations

import functools
import importlib.util
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

REPO = Path(__file__).resolve().parents[1]
SPECS = REPO / "specs"
GENERATED = REPO / "generated"


def run_archc(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    """`archc ARGS` as a separate process, as a user runs it."""
    command = [sys.executable, "-m", "archc.cli", *args]
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=120)


@functools.cache
def torchvision() -> ModuleType:
    """Import torchvision on a CPU-only torch.

    The torchvision 0.28 wheel registers fake kernels for its compiled `torchvision::` ops at
    import; those ops are built against CUDA and do not load here. The model builders never use
    them, so registration is skipped for that namespace alone, during the import only.
    """
    import torch.library

    original = torch.library.register_fake

    def tolerant(op: Any, *args: Any, **kwargs: Any) -> Any:
        if isinstance(op, str) and op.startswith("torchvision::"):
            return lambda function=None, *_, **__: function
        return original(op, *args, **kwargs)

    torch.library.register_fake = tolerant
    try:
        import torchvision as module
    finally:
        torch.library.register_fake = original
    return module


def load_generated(path: Path) -> ModuleType:
    """Import a generated model file as a module."""
    spec = importlib.util.spec_from_file_location(f"generated_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def count_macs(model: Any, example: Any) -> tuple[int, Any]:
    """FlopCounterMode's FLOPs ÷ 2 for one eval forward, and the output."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        output = model(example)
    return counter.get_total_flops() // 2, output
