"""How archc's commands grow with the size of a spec: each command timed, as a whole process,
on written-out specs (every op its own line, no repeats) of growing size, with the exponent
fitted to the time each takes beyond its start-up (a ten-op spec's time) against size
(time ∝ size^k; the goal is k ≤ 1.1).

    python bench/scaling.py [--sizes 1000,3000,10000,30000,100000] [--commands check,build]

Not a test: nothing here asserts a speed.
"""

from __future__ import annotations

import argparse
import math
import subprocess
import sys
import tempfile
import time
from pathlib import Path

COMMANDS = {
    "check": ["check"],
    "stats": ["stats"],
    "ir": ["ir"],
    "build torch": ["build", "--backend", "torch", "-o", "out"],
    "build flax": ["build", "--backend", "flax", "-o", "out"],
    "build --optimize inference": ["build", "--optimize", "inference", "-o", "out"],
    "diagram": ["diagram", "-o", "out.svg"],
}
UNIT = [  # a residual unit of ten ops; its names take the unit's number
    ("conv{k}a", "{{op: conv2d, out: 8, kernel: 1}}"),
    ("bn{k}a", "batch_norm"),
    ("relu{k}a", "relu"),
    ("conv{k}b", "{{op: conv2d, out: 8, kernel: 3, padding: 1}}"),
    ("bn{k}b", "batch_norm"),
    ("add{k}", "{{op: add, from: [bn{k}b, relu{k}a]}}"),
    ("relu{k}b", "relu"),
    ("conv{k}c", "{{op: conv2d, out: 8, kernel: 1}}"),
    ("bn{k}c", "batch_norm"),
    ("relu{k}c", "relu"),
]


def written_out(ops: int) -> str:
    """A spec of `ops` ops (a multiple of ten), each on its own line."""
    lines = [
        f"  {name.format(k=k)}: {body.format(k=k)}"
        for k in range(ops // len(UNIT))
        for name, body in UNIT
    ]
    return "archc: 1\nname: big\ninput: [8, 8, 8]\nbody:\n" + "\n".join(lines) + "\n"


def time_command(arguments: list[str], folder: Path, limit: float) -> float | None:
    """Seconds the command took, or None when it ran past `limit`."""
    start = time.perf_counter()
    try:
        subprocess.run(
            [sys.executable, "-m", "archc.cli", *arguments],
            cwd=folder,
            check=True,
            capture_output=True,
            timeout=limit,
        )
    except subprocess.TimeoutExpired:
        return None
    return time.perf_counter() - start


def exponent(points: list[tuple[int, float]]) -> float:
    """The least-squares slope of log time against log size."""
    xs, ys = [math.log(size) for size, _ in points], [math.log(t) for _, t in points]
    mean_x, mean_y = sum(xs) / len(xs), sum(ys) / len(ys)
    spread = sum((x - mean_x) ** 2 for x in xs)
    return sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys)) / spread


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,3000,10000,30000,100000", help="ops per spec")
    parser.add_argument("--commands", default=",".join(COMMANDS), help="which commands")
    parser.add_argument("--limit", type=float, default=300, help="seconds before giving up")
    options = parser.parse_args()
    sizes = [int(size) for size in options.sizes.split(",")]
    names = options.commands.split(",")
    width = {name: max(13, len(name) + 2) for name in names}  # one column per command
    print(f"{'ops':>8s}" + "".join(f"{name:>{width[name]}s}" for name in names))
    times: dict[str, list[tuple[int, float]]] = {name: [] for name in names}
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        startup = {name: _run(name, written_out(10), folder, options.limit) for name in names}
        print("start-up" + "".join(_cell(startup[name], width[name]) for name in names))
        for size in sizes:
            row = f"{size:8d}"
            for name in names:
                seconds = _run(name, written_out(size), folder, options.limit)
                row += _cell(seconds, width[name])
                if seconds is not None:
                    times[name].append((size, max(seconds - startup[name], 1e-3)))
            print(row, flush=True)
    fitted = [_fitted(times[name], width[name]) for name in names]
    print("exponent" + "".join(fitted) + "   (goal <= 1.1)")


def _cell(seconds: float | None, width: int) -> str:
    return f"{seconds:{width - 1}.2f}s" if seconds is not None else f"{'> limit':>{width}s}"


def _run(name: str, spec: str, folder: Path, limit: float) -> float | None:
    (folder / "spec.yaml").write_text(spec)
    command, *options = COMMANDS[name]
    return time_command([command, "spec.yaml", *options], folder, limit)


def _fitted(points: list[tuple[int, float]], width: int) -> str:
    return f"{exponent(points):{width}.2f}" if len(points) > 1 else f"{'-':>{width}s}"


if __name__ == "__main__":
    main()
