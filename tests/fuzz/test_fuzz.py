"""Fuzzing, bounded for CI (`make fuzz MINUTES=N` soaks): random valid specs held to the
frameworks, mutants of the zoo accepted or refused at a location, and the regression specs
that earlier fuzzing and reports found."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.fuzz.check import check_spec
from tests.fuzz.generate import random_spec
from tests.fuzz.run import outcome
from tests.fuzz.soak import FAILURES, mutant_case

pytest.importorskip("torch")
pytest.importorskip("flax")

REGRESSIONS = sorted((Path(__file__).parents[1] / "specs" / "regressions").glob("*.yaml"))
RANDOM_SPECS = 30
MUTANTS = 150


@pytest.mark.parametrize("spec", REGRESSIONS, ids=[path.stem for path in REGRESSIONS])
def test_regression_spec(spec: Path, tmp_path: Path) -> None:
    check_spec(spec, tmp_path)


@pytest.mark.parametrize("seed", range(RANDOM_SPECS))
def test_random_valid_spec(seed: int, tmp_path: Path) -> None:
    spec = tmp_path / f"fuzz{seed}.yaml"
    spec.write_text(random_spec(seed))
    check_spec(spec, tmp_path / "out")


def test_zoo_mutants_are_accepted_or_refused_at_a_location(tmp_path: Path) -> None:
    failures = []
    for seed in range(MUTANTS):
        folder = tmp_path / str(seed)
        kind, detail = outcome(mutant_case(seed, folder), folder / "out")
        if kind in FAILURES:
            failures.append(f"seed {seed}: {kind}: {detail}")
    assert not failures, "\n".join(failures)
