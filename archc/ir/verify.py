"""The IR verifier: structural invariants every stage may rely on (like torch.fx's lint).

Run between stages in tests; a broken pass is then caught where it breaks.
"""

from __future__ import annotations

from archc.errors import InternalError
from archc.ir.graph import Graph
from archc.ir.symbolic import concrete


def verify(graph: Graph, stage: str) -> None:
    """Raise InternalError naming `stage` if the graph breaks an invariant."""
    defined = set(graph.inputs)
    for name, node in graph.nodes.items():
        if name != node.name or name in graph.inputs:
            raise InternalError(stage, f"node {name!r} is registered under another name")
        for value in node.inputs:
            if value not in defined:
                raise InternalError(stage, f"{name} reads {value!r} before it is defined")
        inputs = [graph.type_of(value) for value in node.inputs]
        if node.op.check(node.attrs, inputs):
            raise InternalError(stage, f"{name} violates its op's constraints")
        if concrete(node.op.infer(node.attrs, inputs).shape) != concrete(node.type.shape):
            raise InternalError(stage, f"{name} has type {node.type}, its op's rule disagrees")
        owner = graph.nodes.get(node.shares or name)
        if owner is None or graph.state_shapes(owner.name) != graph.state_shapes(name):
            raise InternalError(stage, f"{name} shares the state of {node.shares!r}, which differs")
        defined.add(name)
    for value in graph.outputs.values():
        if value not in defined:
            raise InternalError(stage, f"the output {value!r} is not a value of the graph")
