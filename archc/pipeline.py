"""The compiler pipeline, top to bottom. Each stage reads what the one before produced.

load      spec YAML → typed documents with line:col (archc.spec)
resolve   params, --set, expressions, blocks, repeats, conditions → IR graph; each node's
          shape is inferred by its op's rule as it is created; an init rule is refused only
          if no value of the params builds a layer it starts (archc.resolve)
cost      params, buffers, MACs, activations per node (archc.passes.cost)
emittable for `check`: every backend's constructors, made and dropped, so that what one
          cannot write is refused as `build` would refuse it (archc.emit.backends)
expect    the spec's golden values, when neither --set nor --input changed the model
emit      torch or flax code from the block classes (archc.emit), only for `build`; with
          `--optimize inference`, after the inference passes (archc.passes.inference);
          validated against the IR, and against the IR of each bool param the other way
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from archc.emit.backends import check_emittable
from archc.emit.validate import ParamPoint
from archc.errors import ArchcError, ExpectError
from archc.passes.cost import CostReport, count_costs
from archc.resolve.classes import block_classes
from archc.resolve.elaborate import Program, elaborate
from archc.resolve.init import check_op_rules_reach
from archc.spec.document import load_model


@dataclass(frozen=True)
class Compiled:
    program: Program
    costs: CostReport


def compile_spec(
    path: Path,
    overrides: dict[str, str] | None = None,
    image_size: tuple[int, int] | None = None,
    text: str | None = None,
    emittable: bool = False,
) -> Compiled:
    """Compile the spec at `path` (or the spec `text`, named `path`), its params overridden
    by `overrides` (`--set` texts) and its input by `image_size`; with `emittable`, refuse
    what a backend could not write."""
    spec = load_model(path, text)  # load: YAML → typed spec
    try:
        program = elaborate(spec, overrides or {}, image_size)  # resolve: → IR with shapes
        if program.unreached_rules:  # init rules no layer here takes: do other params make one?
            check_op_rules_reach(program.init, program.unreached_rules, block_classes(program))
        costs = count_costs(program.graph)  # cost: per node
        if emittable:
            check_emittable(program)  # emittable: in every backend
        if not program.overrides and image_size is None:
            check_expectations(program, costs)  # expect: golden values
    except ArchcError as error:
        spec.import_notes(error)  # an error in a block library: also where it was imported
        raise
    return Compiled(program, costs)


@dataclass(frozen=True)
class FlippedValues:
    """The model with each of its bool params the other way: the IR of each value archc
    accepts, and the located reason for each it refuses."""

    points: list[ParamPoint]
    refused: list[tuple[str, bool, ArchcError]]
    """(param, value, why): create_model(param=value) builds what the spec refuses."""


def flipped_points(
    compiled: Compiled,
    path: Path,
    overrides: dict[str, str] | None = None,
    image_size: tuple[int, int] | None = None,
    text: str | None = None,
) -> FlippedValues:
    """The model with each of its bool params the other way, compiled as `--set` would:
    translation validation builds the generated file's model with each too, since one
    value's IR says nothing of what another builds."""
    points, refused = [], []
    for name, value in compiled.program.args.items():
        if isinstance(value, bool):
            flipped = {**(overrides or {}), name: str(not value).lower()}
            try:
                other = compile_spec(path, flipped, image_size, text)
            except ArchcError as error:
                refused.append((name, not value, error))
                continue
            points.append(ParamPoint({name: not value}, other.program.graph))
    return FlippedValues(points, refused)


def check_expectations(program: Program, costs: CostReport) -> None:
    total = costs.total
    actual = {"params": total.params, "buffers": total.buffers, "macs": total.macs}
    for key, value in program.spec.expect.items():
        if actual[key] != value.raw:
            raise ExpectError(
                f"expect.{key}: expected {value.raw:,}, got {actual[key]:,}",
                value.location,
                hint="update the golden value if the change is intended",
            )
