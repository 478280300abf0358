"""PyTorch emission: nn.Module classes, NCHW, every hyper-parameter written out."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from archc.emit.classes import Backend
from archc.emit.source_file import emit_file
from archc.emit.validate import ParamPoint, validate_torch
from archc.ir.graph import TensorType
from archc.ir.modules import ModuleNode
from archc.ir.symbolic import concrete, source
from archc.ops.lowering import InlineCall, ModuleCall
from archc.passes.cost import CostReport
from archc.passes.in_place import mark_in_place
from archc.resolve.elaborate import Program

if TYPE_CHECKING:  # only annotated: the passes load where an export is made
    from archc.passes.inference import InferenceExport


def _lower(child: ModuleNode) -> ModuleCall | InlineCall:
    return child.op.lower_torch(child.attrs, child.input_types)


def _shape_comment(kind: TensorType) -> str:
    rows = source(kind.shape[0])  # N, or N * 1000 boxes in a detection stage
    return "(" + ", ".join([rows, *(str(concrete(dim)) for dim in kind.shape[1:])]) + ")"


TORCH = Backend(
    name="torch",
    lower=_lower,
    module="nn.Module",
    sequential="nn.Sequential",
    module_list="nn.ModuleList",
    tensor="torch.Tensor",
    targets="list[dict[str, torch.Tensor]]",
    call_method="forward",
    init_prelude=("super().__init__()",),
    module_kwargs=(),
    init_kwargs=(),
    shape_comment=_shape_comment,
    validate=validate_torch,
    passes=(mark_in_place,),
    required_helpers=("with_autocast",),
    checkpoint_arrays={"tensors": "tensors", "concatenate": "torch.cat"},
    imports=(
        (r"\bfunctools\.", "import functools"),
        (r"\bmath\.", "import math"),
        (r"\bCallable\b", "from collections.abc import Callable"),
        (r"\bAny\b", "from typing import Any"),
        ("", ""),
        (r"\btorch\.", "import torch"),
        (r"\bF\.", "import torch.nn.functional as F"),
        (r"\bnn\.", "from torch import nn"),
    ),
)


def torch_source(
    program: Program,
    costs: CostReport,
    command: str,
    export: InferenceExport | None = None,
    folder: Path | None = None,
    others: Sequence[ParamPoint] = (),
) -> str:
    """The generated PyTorch file for a compiled model (its spec paths relative to
    `folder`, where it is written)."""
    return emit_file(program, costs, command, TORCH, export, folder, others)
