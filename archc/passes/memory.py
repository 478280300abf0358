"""Memory pass: what training a model holds at its peak, estimated from the IR.

The peak of a training step is the end of its forward: the parameters and buffers, a gradient
per trainable parameter (not a `frozen:` one) and the optimizer's state (both from the step
before), and every activation autograd keeps for backward. Each op declares what it keeps
(`Op.saved`: inputs, its output, tensors of its own), unless no gradient flows through it (ops
before the first trained parameter); a value kept by several ops counts once, and a view (a
slice, a permutation: `Op.returns_view`) keeps the whole of the memory it views. The
declarations follow PyTorch's CPU kernels. Parameters are fp32 (as under autocast), buffers
fp32 or int64 (`Op.wide_buffers`); activations are in the dtype asked for.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from archc.ir.graph import Graph
from archc.ir.symbolic import concrete
from archc.passes.cost import CostReport

DTYPE_BYTES = {"fp32": 4, "bf16": 2, "fp16": 2}
OPTIMIZER_STATES = {"none": 0, "sgd": 1, "adam": 2}
"""Tensors of state per parameter: SGD's momentum; Adam's two moments."""
PARAM_BYTES = 4


@dataclass(frozen=True)
class Memory:
    """Bytes at the peak of a training step."""

    batch: int
    dtype: str
    optimizer: str
    params: int
    buffers: int
    gradients: int
    optimizer_state: int
    activations: int
    """Kept for backward at the end of the forward."""

    @property
    def total(self) -> int:
        return self.params + self.buffers + self.gradients + self.optimizer_state + self.activations


def training_memory(
    graph: Graph, costs: CostReport, batch: int = 1, dtype: str = "fp32", optimizer: str = "sgd"
) -> Memory:
    """The estimate for a batch of `batch` in `dtype`, trained with `optimizer`."""
    params = costs.total.params * PARAM_BYTES
    trainable = costs.total.trainable * PARAM_BYTES  # frozen ones have no gradient or state
    return Memory(
        batch=batch,
        dtype=dtype,
        optimizer=optimizer,
        params=params,
        buffers=_buffer_bytes(graph),
        gradients=trainable,
        optimizer_state=OPTIMIZER_STATES[optimizer] * trainable,
        activations=_kept_bytes(graph, DTYPE_BYTES[dtype]) * batch,
    )


def _buffer_bytes(graph: Graph) -> int:
    total = 0
    for node in graph.own_state():
        for name, shape in graph.state_shapes(node.name)[1].items():
            wide = name in node.op.wide_buffers
            total += math.prod(concrete(shape)) * (8 if wide else PARAM_BYTES)
    return total


def _kept_bytes(graph: Graph, width: int) -> int:
    """Bytes per sample autograd keeps, activations `width` bytes an element."""
    kept: set[str] = set()
    base = {name: name for name in graph.inputs}  # the value whose memory a value is
    graded = dict.fromkeys(graph.inputs, False)  # whether a value's gradient is computed
    own = 0
    after_network = graph.after_network()
    for node in graph.nodes.values():
        if node.name in after_network:  # the stage and its modules: counted per row apart
            continue
        inputs = [graph.type_of(name) for name in node.inputs]
        first = node.inputs[node.op.viewed_input(node.attrs)]
        in_order = base[first] == first  # not a view of other memory: a reshape views it
        viewed = node.op.returns_view or (node.op.reshapes and in_order)
        base[node.name] = base[first] if viewed else node.name
        trained = bool(node.op.parameters(node.attrs, inputs)) and node.name not in graph.frozen
        graded[node.name] = trained or any(graded[name] for name in node.inputs)
        if not graded[node.name]:  # autograd records nothing before the first trained one
            continue
        saved = node.op.saved(node.attrs, inputs, node.type)
        kept.update(base[node.inputs[index]] for index in saved.inputs)
        if saved.output:
            kept.add(base[node.name])
        own += sum(elements * (width if size is None else size) for elements, size in saved.own)
    return sum(graph.type_of(value).numel_per_sample() for value in kept) * width + own
