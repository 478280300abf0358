"""Time `archc check specs/resnet50.yaml` against counting torchvision's resnet50 with
FlopCounterMode, each as a whole process (start-up and imports included), in the same run.

    python bench/check_vs_flopcounter.py [--repeat N]

Prints the median wall time of each and the ratio, twice: with archc's bytecode cached, as
after installing a wheel (torch's always is), and with none, under PYTHONDONTWRITEBYTECODE=1,
as an editable install in such an environment runs. Not a test: nothing here asserts a speed.
"""

from __future__ import annotations

import argparse
import compileall
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

REFERENCE = """
import torch, torch.library
original = torch.library.register_fake
def tolerant(op, *args, **kwargs):  # torchvision's CUDA-built ops do not load on CPU torch
    if isinstance(op, str) and op.startswith("torchvision::"):
        return lambda function=None, *_, **__: function
    return original(op, *args, **kwargs)
torch.library.register_fake = tolerant
import torchvision
torch.library.register_fake = original
from torch.utils.flop_counter import FlopCounterMode
model = torchvision.models.resnet50().eval()
params = sum(p.numel() for p in model.parameters())
with torch.no_grad(), FlopCounterMode(display=False) as counter:
    model(torch.randn(1, 3, 224, 224))
print(params, counter.get_total_flops() // 2)
"""

COMMANDS = {
    "archc check": [sys.executable, "-m", "archc.cli", "check", "specs/resnet50.yaml"],
    "torchvision + FlopCounterMode": [sys.executable, "-c", REFERENCE],
}


def time_command(command: list[str], env: dict[str, str] | None = None) -> float:
    start = time.perf_counter()
    subprocess.run(command, cwd=REPO, check=True, capture_output=True, env=env)
    return time.perf_counter() - start


def median_time(command: list[str], repeat: int, env: dict[str, str] | None = None) -> float:
    return statistics.median(time_command(command, env) for _ in range(repeat))


def without_bytecode() -> dict[str, str]:
    """archc's cached bytecode removed, and an environment that writes none."""
    for cache in (REPO / "archc").rglob("__pycache__"):
        shutil.rmtree(cache)
    return {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5, help="runs of each (default 5)")
    repeat = parser.parse_args().repeat
    reference = COMMANDS["torchvision + FlopCounterMode"]
    time_command(reference)  # warm the file cache once
    seconds = median_time(reference, repeat)
    print(f"torchvision + FlopCounterMode  median {seconds:.3f} s over {repeat} runs")
    uncached = median_time(COMMANDS["archc check"], repeat, without_bytecode())
    compileall.compile_dir(REPO / "archc", quiet=1)
    cached = median_time(COMMANDS["archc check"], repeat)
    for mode, archc in (("bytecode cached", cached), ("no bytecode", uncached)):
        print(f"archc check, {mode:15s}  median {archc:.3f} s: {seconds / archc:.1f}x faster")
    print("goal: >= 25x in both")


if __name__ == "__main__":
    main()
