"""Time `archc check specs/resnet50.yaml` against counting torchvision's resnet50 with
FlopCounterMode, each as a whole process (start-up and imports included), in the same run.

    python bench/check_vs_flopcounter.py [--repeat N]

Prints the median wall time of each and the ratio. Not a test: nothing here asserts a speed.
"""

from __future__ import annotations

import argparse
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


def time_command(command: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(command, cwd=REPO, check=True, capture_output=True)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5, help="runs of each (default 5)")
    repeat = parser.parse_args().repeat
    for command in COMMANDS.values():  # warm the file cache once
        time_command(command)
    medians = {}
    for name, command in COMMANDS.items():
        runs = [time_command(command) for _ in range(repeat)]
        medians[name] = statistics.median(runs)
        print(f"{name:32s} median {medians[name]:.3f} s over {repeat} runs")
    archc, reference = medians.values()
    print(f"ratio: archc check is {reference / archc:.1f}x faster (goal: >= 15x)")


if __name__ == "__main__":
    main()
