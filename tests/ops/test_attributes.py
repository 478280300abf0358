"""The op attribute schema: strict types, ranges, defaults, frozen records."""

from __future__ import annotations

from typing import Annotated, Literal

import pytest

from archc.ops.attributes import NUMBER_LISTS, AttrsError, Range
from archc.ops.base import Attrs, Count, Epsilon, Probability, Window


class Sample(Attrs):
    out: Count
    kernel: Window = 1
    stride: Window | None = None
    eps: Epsilon = 1e-5
    p: Probability = 0.5
    bias: bool = True
    mode: Literal["nearest", "bilinear"] = "nearest"
    ratios: Annotated[NUMBER_LISTS, Range(0, above=True)] = ((2.0,),)


@pytest.mark.parametrize(
    ("values", "key", "fragment"),
    [
        ({"out": True}, "out", "expected a valid integer, got True"),
        ({"out": 8.0}, "out", "expected a valid integer, got 8.0"),
        ({"out": "8"}, "out", "expected a valid integer, got '8'"),
        ({"out": 0}, "out", "expected at least 1, got 0"),
        ({"out": 8, "kernel": (3, 0)}, "kernel", "expected at least 1, got [3, 0]"),
        ({"out": 8, "kernel": (1, 2, 3)}, "kernel", "a valid integer or a pair of integers"),
        ({"out": 8, "kernel": (1, True)}, "kernel", "a pair of integers"),
        ({"out": 8, "stride": 0}, "stride", "expected at least 1, got 0"),
        ({"out": 8, "stride": "x"}, "stride", "integer or a pair of integers or null"),
        ({"out": 8, "eps": 0.0}, "eps", "expected more than 0, got 0.0"),
        ({"out": 8, "eps": False}, "eps", "expected a valid number, got False"),
        ({"out": 8, "p": 1.5}, "p", "expected at least 0, at most 1, got 1.5"),
        ({"out": 8, "bias": 1}, "bias", "expected a valid boolean, got 1"),
        ({"out": 8, "mode": "cubic"}, "mode", "expected 'nearest' or 'bilinear', got 'cubic'"),
        ({"out": 8, "ratios": [2]}, "ratios", "lists of up to 8 numbers, got [2]"),
        ({"out": 8, "ratios": []}, "ratios", "expected 1 to 8 lists"),
        ({"out": 8, "ratios": [[1]] * 9}, "ratios", "expected 1 to 8 lists"),
        ({"out": 8, "ratios": [[1] * 9]}, "ratios", "expected 1 to 8 lists"),
        ({"out": 8, "ratios": [["a"]]}, "ratios", "expected 1 to 8 lists"),
        ({"out": 8, "ratios": [[2], [0]]}, "ratios", "expected more than 0, got [[2], [0]]"),
        ({}, "out", "missing required attribute 'out'"),
        ({"out": 8, "outs": 8}, "", "unknown attribute 'outs'"),
    ],
)
def test_refuses_with_the_attribute_and_the_reason(values: dict, key: str, fragment: str) -> None:
    with pytest.raises(AttrsError) as caught:
        Sample(**values)
    assert caught.value.key == key
    assert fragment in str(caught.value)


def test_accepts_and_normalises() -> None:
    attrs = Sample(out=8, kernel=[3, 5], stride=None, eps=1, p=0, mode="bilinear")
    assert (attrs.kernel, attrs.stride, attrs.eps, attrs.p) == ((3, 5), None, 1.0, 0.0)
    assert Sample(out=8, ratios=[[], [2, 3]]).ratios == ((), (2.0, 3.0))
    assert isinstance(attrs.eps, float) and isinstance(attrs.p, float)
    assert attrs.changed() == {"out": 8, "kernel": (3, 5), "eps": 1.0, "p": 0.0, "mode": "bilinear"}
    assert list(dict(attrs)) == ["out", "kernel", "stride", "eps", "p", "bias", "mode", "ratios"]


def test_records_are_frozen_values() -> None:
    attrs = Sample(out=8)
    with pytest.raises(TypeError):
        attrs.out = 9
    assert attrs == Sample(out=8) and hash(attrs) == hash(Sample(out=8))
    assert attrs != Sample(out=9)
    wider = attrs.replace(out="c * 2")  # unchecked: a symbolic value's concrete one was checked
    assert wider.out == "c * 2" and attrs.out == 8


def test_describes_type_and_range() -> None:
    fields = Sample.fields()
    assert fields["stride"].describe() == "int | tuple[int, int] | None, at least 1"
    assert fields["p"].describe() == "float, at least 0, at most 1"
    assert fields["mode"].describe() == "'nearest' | 'bilinear'"
    assert fields["ratios"].describe() == "list[list[float]], more than 0"
    assert fields["out"].required and not fields["kernel"].required
    assert fields["mode"].takes_text and not fields["out"].takes_text
