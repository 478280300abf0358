"""The inference export drops the op params that picked only the norms it folded, from every
signature and call, and keeps every param something still reads."""

from __future__ import annotations

import ast
import re

import pytest

import archc
from tests.helpers import SPECS


def signatures(source: str) -> dict[str, list[str]]:
    """Each class's `__init__` keyword-only parameter names, by class name, and
    create_model's."""
    module = ast.parse(source)
    owners = [module, *(node for node in module.body if isinstance(node, ast.ClassDef))]
    return {
        owner.name if isinstance(owner, ast.ClassDef) else function.name: [
            argument.arg for argument in function.args.kwonlyargs
        ]
        for owner in owners
        for function in owner.body
        if isinstance(function, ast.FunctionDef)
        and function.name == ("__init__" if isinstance(owner, ast.ClassDef) else "create_model")
    }


@pytest.mark.parametrize("backend", ["torch", "flax"])
def test_mobilenet_v3_export_takes_no_norm(backend: str) -> None:
    """Its norm param (BatchNorm with eps 0.001) picks only norms that fold into convs."""
    model = archc.load(SPECS / "mobilenet_v3_small.yaml")
    training = signatures(model.source(backend))
    export = signatures(model.source(backend, "inference"))
    takes_norm = {owner for owner, names in training.items() if "norm" in names}
    assert {"ConvBNAct", "Bneck", "MobilenetV3Small", "create_model"} <= takes_norm
    assert not any("norm" in names for names in export.values())
    for owner, names in export.items():  # nothing else changed
        assert names == [name for name in training[owner] if name != "norm"]
    assert not re.search(r"\bnorm=", model.source(backend, "inference"))


PICKED = """\
archc: 1
name: picked
input: [3, 8, 8]
params: {pre: {type: op, default: batch_norm}}
blocks:
  Unit:
    params: {norm: {type: op, default: batch_norm}, pre: {type: op, default: batch_norm}}
    body:
      first: pre
      conv: {op: conv2d, out: 4, kernel: 3, padding: 1, bias: false}
      bn: norm
body:
  unit: {block: Unit, pre: pre}
"""


def test_a_param_still_read_is_kept() -> None:
    """`norm` folds into the conv; `pre` (a norm on the block's input, which no conv makes)
    still picks a module, in the block and, through the argument, in the model."""
    export = signatures(archc.load(PICKED).source("torch", "inference"))
    assert export["Unit"] == ["pre"]
    assert export["Picked"] == ["pre"] and "pre" in export["create_model"]
