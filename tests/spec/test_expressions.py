"""Safe expressions: values, symbolic sources, and what is refused."""

from __future__ import annotations

import pytest

from archc.errors import Location, SpecError
from archc.ir.functions import FUNCTIONS, make_divisible
from archc.ir.symbolic import Sym, source
from archc.spec.expressions import evaluate

AT = Location("spec.yaml", 3, 10)
ENV = {"planes": 64, "base_width": 64, "groups": 1, "i": 0, "layers": [3, 4, 6, 3], "w": 0.5}


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("planes * base_width // 64 * groups", 64),
        ("2 if i == 0 else 1", 2),
        ("i == 0 and planes > 32", True),
        ("not i", True),
        ("layers[2]", 6),
        ("-planes + 1", -63),
        ("make_divisible(32 * w, 8)", 16),
        ("max(1, planes // 128)", 1),
        ("[planes, 2 * planes]", [64, 128]),
        ("planes ** 2 % 7", 64**2 % 7),
        ("true and not false", True),
        ("{1: [2, 3], 4: [5]}[groups]", [2, 3]),
        ("[ceil(n * w) for n in layers]", [2, 2, 3, 2]),
        ("sum(layers[:2]) + sum(layers[2:])", 16),
        ("[sum(layers[:k]) for k in range(3)]", [0, 3, 7]),
        # Width rules as papers write them (RegNet's quantisation to powers of a multiplier).
        ("round(log(planes * 3 / 48) / log(2))", 2),
        ("floor(log2(planes * 3))", 7),
        ("floor(-w)", -1),
        ("log(1000, 10)", pytest.approx(3)),
        ("int(48 * exp(log(2.5) * 2))", 300),
        ("min(abs(-planes), round(2.5))", 2),
    ],
)
def test_concrete_values(text: str, value: object) -> None:
    assert evaluate(text, ENV, AT) == value


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("planes * 4", "planes * 4"),
        ("(planes + 1) * 4", "(planes + 1) * 4"),
        ("planes * (base_width // 64) * groups", "planes * (base_width // 64) * groups"),
        ("planes - (groups - 1)", "planes - (groups - 1)"),
        ("2 if i == 0 else 1", "2 if i == 0 else 1"),
        ("stride != 1 or planes != 4", "stride != 1 or planes != 4"),
        ("not (stride == 1)", "not stride == 1"),
        ("planes * 1 + 0", "planes"),
        ("make_divisible(planes * w, 8)", "make_divisible(planes * w, 8)"),
        ("layers[i]", "layers[i]"),
        ("{64: [1, 2], 128: [3]}[planes][i]", "{64: (1, 2), 128: (3,)}[planes][i]"),
        ("sum(layers[:2]) * w", "sum(layers[:2]) * w"),
        ("[ceil(n * w) for n in [1, 2]][i]", "(ceil(w), ceil(2 * w))[i]"),
        ("floor(log2(planes) + exp(w))", "floor(log2(planes) + exp(w))"),
        # Over a list a param decides, a comprehension stays one for generated code to run.
        ("[ceil(n * w) for n in layers]", "[ceil(n * w) for n in layers]"),
        (
            "[k * planes for k in range(groups + 1)][-1]",
            "[k * planes for k in range(groups + 1)][-1]",
        ),
        (
            "[sum([1 if c == s else 0 for c in layers]) for s in range(groups + 2)]",
            "[sum([1 if c == s else 0 for c in layers]) for s in range(groups + 2)]",
        ),
        ("w ** groups + (-w) ** 2 - -w ** 2", "w**groups + (-w) ** 2 - -(w**2)"),
    ],
)
def test_symbolic_sources_keep_meaning(text: str, expected: str) -> None:
    names = ("planes", "base_width", "groups", "i", "stride", "layers", "w")
    env = {name: Sym(name, value) for name, value in {**ENV, "stride": 2}.items() if name in names}
    result = evaluate(text, env, AT)
    assert source(result) == expected
    concrete_env = {**ENV, "stride": 2}
    assert result.value == evaluate(text, concrete_env, AT)
    # The source is what generated code runs: evaluated by Python, it gives the same value.
    # (one namespace: a comprehension reads the constructor's locals as a closure would)
    emitted = eval(source(result), {**FUNCTIONS, **concrete_env})
    assert emitted == result.value


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("__import__('os')", "unknown function '__import__'"),
        ("planes.bit_length()", "unknown function 'planes.bit_length'"),
        ("planes.real", "is not allowed"),
        ("lambda: 1", "is not allowed"),
        ("{x: 1 for x in layers}", "is not allowed"),
        ("open('x')", "unknown function 'open'"),
        ("plane * 2", "unknown name 'plane'"),
        ("1 < planes < 9", "chained comparisons"),
        ("planes // 0", "by zero"),
        ("layers[9]", "cannot index"),
        ("planes +", "bad expression"),
        ("{planes: 1}[64]", "keys must be literals"),
        ("{1: 2}[planes]", "cannot index"),
        ("[n for n in layers if n]", "one plain `for"),
        ("layers[::2]", "without a step"),
        ("log(planes - 64)", "log(): math domain error"),
        ("exp(planes * 100)", "exp(): math range error"),
        ("log(planes, 1)", "log(): float division by zero"),
    ],
)
def test_refused_expressions_are_located_errors(text: str, message: str) -> None:
    with pytest.raises(SpecError) as caught:
        evaluate(text, ENV, AT)
    assert message in caught.value.render()
    assert caught.value.location.file == "spec.yaml"
    assert caught.value.location.line == 3


def test_make_divisible_matches_torchvision_rule() -> None:
    # torchvision's _make_divisible: round to nearest multiple, never below 90% of the value.
    assert make_divisible(32 * 0.75, 8) == 24
    assert make_divisible(3, 8) == 8
    assert make_divisible(67.2, 8) == 64 + 8 * (64 < 0.9 * 67.2)


def test_symbolic_products_of_constants_fold() -> None:
    """`2 * (2 * d)` is written `4 * d`; a floor division inside is left alone."""
    from archc.ir.symbolic import Sym, concrete, source

    width = Sym("d", 96)
    assert source(2 * (2 * width)) == "4 * d" and concrete(2 * (2 * width)) == 384
    assert source(2 * ((2 * width) // 3)) == "2 * (2 * d // 3)"
