"""flax.nnx emission: the torch file's classes and names, NHWC, plus a weight converter."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from archc.emit.classes import Backend
from archc.emit.source_file import emit_file
from archc.emit.validate import ParamPoint, validate_flax
from archc.ir.graph import TensorType
from archc.ir.modules import ModuleNode
from archc.ir.symbolic import concrete, source
from archc.ops.base import NHWC_AXIS
from archc.ops.lowering import InlineCall, ModuleCall
from archc.passes.cost import CostReport
from archc.resolve.elaborate import Program

if TYPE_CHECKING:  # only annotated: the passes load where an export is made
    from archc.passes.inference import InferenceExport


def _lower(child: ModuleNode) -> ModuleCall | InlineCall:
    return child.op.lower_flax(child.attrs, child.input_types)


def _shape_comment(kind: TensorType) -> str:
    dims = [str(concrete(dim)) for dim in kind.shape]
    if kind.rank == 4 and not kind.channels_last:
        dims = [dims[logical] for logical in sorted(NHWC_AXIS, key=NHWC_AXIS.get)]
    return "(" + ", ".join([source(kind.shape[0]), *dims[1:]]) + ")"  # N, or N * 1000 boxes


FLAX = Backend(
    name="flax",
    lower=_lower,
    module="nnx.Module",
    sequential="nnx.Sequential",
    module_list="nnx.List",
    tensor="jax.Array",
    targets="dict[str, jax.Array]",
    call_method="__call__",
    init_prelude=(),
    module_kwargs=("rngs=rngs",),
    init_kwargs=("rngs: nnx.Rngs",),
    shape_comment=_shape_comment,
    imports=(
        (r"\bfunctools\.", "import functools"),
        (r"\bmath\.", "import math"),
        (r"\bCallable\b", "from collections.abc import Callable"),
        (r"\bAny\b", "from typing import Any"),
        ("", ""),
        (r"\bjax\.", "import jax"),
        (r"\bjnp\.", "import jax.numpy as jnp"),
        (r"\bnp\.", "import numpy as np"),
        (r"\bnnx\.", "from flax import nnx"),
    ),
    required_helpers=("load_torch_state_dict", "set_dtypes", "jit_forward"),
    validate=validate_flax,
    checkpoint_arrays={"tensors": "numpy arrays", "concatenate": "np.concatenate"},
)


def flax_source(
    program: Program,
    costs: CostReport,
    command: str,
    export: InferenceExport | None = None,
    folder: Path | None = None,
    others: Sequence[ParamPoint] = (),
) -> str:
    """The generated flax.nnx file for a compiled model."""
    return emit_file(program, costs, command, FLAX, export, folder, others)
