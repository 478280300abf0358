"""The IR as text: one line per node, only non-default attributes."""

from __future__ import annotations

from archc.ir.graph import Graph, Node
from archc.ir.symbolic import source


def format_node(node: Node) -> str:
    attrs = ", ".join(f"{key}={source(value)}" for key, value in node.attrs.changed().items())
    call = f"{node.op.name}[{attrs}]" if attrs else node.op.name
    arguments = ", ".join(f"%{name}" for name in node.inputs)
    return f"%{node.name} : {node.type} = {call}({arguments})"


def format_graph(graph: Graph) -> str:
    header = ", ".join(f"%{name} : {kind}" for name, kind in graph.inputs.items())
    lines = [f"graph {graph.name}({header}):"]
    lines += [f"  {format_node(node)}{_notes(graph, node)}" for node in graph.nodes.values()]
    returned = ", ".join(
        f"{name}: %{value}" if name else f"%{value}" for name, value in graph.outputs.items()
    )
    lines.append(f"  return {returned}")
    for method, returned in graph.methods.items():
        values = ", ".join(
            f"{name}: %{value}" if name else f"%{value}" for name, value in returned.items()
        )
        lines.append(f"  {method}: {values}")
    return "\n".join(lines) + "\n"


def _notes(graph: Graph, node: Node) -> str:
    """`  # frozen`, `  # init weight=kaiming_normal(fan_out)`, `  # shares %head.conv`: what
    the spec says of its parameters beyond the op."""
    notes = ["frozen"] if node.name in graph.frozen else []
    if node.shares is not None:
        notes.append(f"shares %{node.shares}")
    starts = graph.init.get(node.name, {})
    if starts:
        notes.append("init " + ", ".join(f"{param}={start}" for param, start in starts.items()))
    return f"  # {'; '.join(notes)}" if notes else ""
