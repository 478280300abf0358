"""Write the zoo table into README.md (between its zoo markers) from `archc compare`.

Run by `make generated`; tests/emit/test_generated_files.py fails when the table is stale.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BEGIN, END = "<!-- zoo:begin (make generated) -->", "<!-- zoo:end -->"


def zoo_table() -> str:
    specs = sorted(path.relative_to(REPO).as_posix() for path in (REPO / "specs").glob("*.yaml"))
    command = [sys.executable, "-m", "archc.cli", "compare", *specs, "--format", "md"]
    return subprocess.run(command, cwd=REPO, check=True, capture_output=True, text=True).stdout


def with_table(readme: str, table: str) -> str:
    head, _, rest = readme.partition(BEGIN)
    _, _, tail = rest.partition(END)
    return f"{head}{BEGIN}\n{table}{END}{tail}"


if __name__ == "__main__":
    path = REPO / "README.md"
    path.write_text(with_table(path.read_text(encoding="utf-8"), zoo_table()), encoding="utf-8")
