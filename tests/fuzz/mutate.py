"""A mutation fuzzer over the zoo: specs with one value, key or line changed.

Every mutant must either compile and build in both backends (the torch file passing
translation validation), or be refused with a located error: never a traceback or a hang.
"""

from __future__ import annotations

import random
import re
from pathlib import Path

VALUES = [
    "0",
    "-1",
    "1",
    "2",
    "3",
    "7",
    "64",
    "1000000",
    "99999999999999999999999",
    "1.5",
    "-0.5",
    "1e-5",
    ".inf",
    "true",
    "false",
    "null",
    "~",
    "x",
    "'x'",
    '"a\\nb"',
    "[]",
    "{}",
    "[1, 2]",
    "[1, 2, 3]",
    "[0, 0]",
    "in_channels",
    "i",
    "i + 1",
    "2**70",
    "1 // 0",
    "planes * 4",
    "input",
    "previous",
    "relu",
    "conv2d",
    "Bottleneck",
    "'a\"b'",
    "!!binary aGk=",
    "&a 1",
    "*a",
    "[[1]]",
    "'1 +'",
    "'(' * 10",
    "-16",
    "0.0",
]
KEYS = [
    "op",
    "block",
    "seq",
    "branches",
    "from",
    "when",
    "repeat",
    "names",
    "shared",
    "out",
    "kernel",
    "stride",
    "padding",
    "dilation",
    "groups",
    "bias",
    "eps",
    "momentum",
    "axis",
    "start",
    "stop",
    "index",
    "size",
    "scale",
    "mode",
    "heads",
    "window",
    "shift",
    "p",
    "layout",
    "at",
    "length",
    "flat",
    "params",
    "let",
    "doc",
    "inputs",
    "outputs",
    "output_channels",
    "xyz",
]
FLOW_VALUE = re.compile(r"(?<=[{,] )(\w+): ([^,{}\[\]]+|\[[^\]]*\])")


def mutate(text: str, rng: random.Random) -> str:
    """One random change: a value or key inside a flow mapping, a line's value, a line
    dropped or repeated, or a character inserted."""
    lines = text.splitlines()
    kind = rng.choice(["value", "value", "value", "key", "line value", "drop", "repeat", "char"])
    index = rng.randrange(len(lines))
    line = lines[index]
    matches = list(FLOW_VALUE.finditer(line))
    if kind in ("value", "key") and matches:
        match = rng.choice(matches)
        if kind == "value":
            line = line[: match.start(2)] + rng.choice(VALUES) + line[match.end(2) :]
        else:
            line = line[: match.start(1)] + rng.choice(KEYS) + line[match.end(1) :]
    elif kind in ("value", "key", "line value") and ": " in line:
        head, _, _ = line.partition(": ")
        line = f"{head}: {rng.choice(VALUES)}"
    elif kind == "drop" and len(lines) > 1:
        line = None
    elif kind == "repeat":
        lines.insert(index, line)
    else:
        at = rng.randrange(len(line) + 1)
        line = line[:at] + rng.choice(" :,{}[]-#'\"&*!%@`|>\t0aZ_.") + line[at:]
    if line is None:
        del lines[index]
    else:
        lines[index] = line
    return "\n".join(lines) + "\n"


def zoo(root: Path) -> list[Path]:
    """The specs and block libraries mutants are made from."""
    return sorted([*root.glob("specs/*.yaml"), *root.glob("archc/blocks/*.yaml")])
