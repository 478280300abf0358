"""The fuzz soak: `python -m tests.fuzz.soak --minutes N` (or `make fuzz MINUTES=N`).

For each seed, a mutant of the zoo (accepted, or refused with a located error) and a random
valid spec (held to torch and flax), until the time is up; prints how many specs ran and
their outcomes by kind. Each failure is kept under --keep with its seed and spec, to become a
regression spec in tests/specs/regressions/.
"""

from __future__ import annotations

import argparse
import collections
import random
import sys
import tempfile
import time
import traceback
from pathlib import Path

from archc.errors import ArchcError
from tests.fuzz.check import MismatchError, check_spec
from tests.fuzz.generate import random_spec
from tests.fuzz.mutate import mutate, zoo
from tests.fuzz.run import outcome

REPO = Path(__file__).resolve().parents[2]
FAILURES = ("crash", "unlocated", "hang", "internal", "mismatch")


def mutant_case(seed: int, folder: Path) -> Path:
    """Write the mutant of `seed` (a copy of the zoo, one file changed) and return the model
    spec to compile."""
    rng = random.Random(seed)
    sources = zoo(REPO)
    target = rng.choice(sources)
    specs = [path for path in sources if path.parent.name == "specs"]
    for path in sources:  # the zoo's layout: specs/ and archc/blocks/ side by side
        copy = folder / path.relative_to(REPO)
        copy.parent.mkdir(parents=True, exist_ok=True)
        text = path.read_text()
        copy.write_text(mutate(text, rng) if path == target else text)
    model = target if target in specs else rng.choice(specs)
    return folder / model.relative_to(REPO)


def generated_case(seed: int, folder: Path) -> tuple[str, str]:
    """The outcome of the random valid spec of `seed`: 'ok', or a failure by kind."""
    spec = folder / f"fuzz{seed}.yaml"
    spec.write_text(random_spec(seed))
    try:
        check_spec(spec, folder / "out")
    except MismatchError as error:
        return f"mismatch: {error.kind}", str(error)
    except ArchcError as error:  # the generator wrote something archc refuses
        return "refused", error.render()
    except Exception:
        return "crash", traceback.format_exc(limit=-4)
    return "ok", ""


def run_seed(seed: int, source: str) -> tuple[str, str, str]:
    """(kind, detail, spec text or path) of one case."""
    with tempfile.TemporaryDirectory() as folder:
        if source == "mutant":
            spec = mutant_case(seed, Path(folder))
            kind, detail = outcome(spec, Path(folder) / "out")
            return kind, detail, spec.read_text()
        kind, detail = generated_case(seed, Path(folder))
        return kind, detail, random_spec(seed)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=0, help="first seed")
    parser.add_argument("--keep", type=Path, default=Path("fuzz-failures"))
    args = parser.parse_args()
    counts: collections.Counter[str] = collections.Counter()
    end = time.monotonic() + 60 * args.minutes
    seed = args.seed
    while time.monotonic() < end:
        for source in ("mutant", "generated"):
            kind, detail, spec = run_seed(seed, source)
            counts[f"{source} {kind}"] += 1
            if kind.split(":")[0] in FAILURES:
                args.keep.mkdir(exist_ok=True)
                (args.keep / f"{source}-{seed}.txt").write_text(f"{spec}\n{detail}\n")
                print(f"{source} seed {seed}: {kind}: {detail.strip()[-300:]}", flush=True)
        seed += 1
    total = sum(counts.values())
    summary = ", ".join(f"{kind} {count}" for kind, count in sorted(counts.items()))
    print(f"{total} specs in {args.minutes:g} min (seeds {args.seed}-{seed - 1}): {summary}")
    failed = [key for key in counts if key.split(" ", 1)[1].split(":")[0] in FAILURES]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
