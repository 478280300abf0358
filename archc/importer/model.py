"""An nn.Module → the text of a spec that builds it again."""

from __future__ import annotations

from collections.abc import Collection
from pathlib import Path
from typing import Any

from archc.errors import ArchcError
from archc.importer.blocks import block_definitions
from archc.importer.items import Instance, Node, Seq
from archc.importer.library import library_blocks
from archc.importer.modules import module_item
from archc.importer.writer import spec_text
from archc.ir.graph import Graph
from archc.pipeline import compile_spec


def imported_spec(model: Any, name: str, origin: str, size: tuple[int, ...]) -> str:
    """The spec of `model` (as built by `origin`, taking inputs of `size` without the batch)."""
    model.eval()  # the forward traced is the inference one (no auxiliary heads)
    root = module_item(model, "")
    if not isinstance(root, Instance):  # a bare Sequential or layer: numbered top-level nodes
        items = root.items if isinstance(root, Seq) else [root]
        names = [str(index) for index in range(len(items))]
        body = [Node(n, item, [p]) for n, item, p in zip(names, items, ["input", *names])]
        root = Instance(type(model).__name__, body)
    widths = channel_widths(model, size)

    def written(allowed: Collection[str]) -> str:
        blocks = block_definitions(root, widths, allowed)
        return spec_text(name, origin, size, blocks.definitions, blocks.body, blocks.imports)

    everything = block_definitions(root, widths, library_blocks())
    blocks = everything.definitions, everything.body, everything.imports
    text, plain = spec_text(name, origin, size, *blocks), written(())
    if not everything.called:
        return text
    reference = _graph(plain)
    if reference is None:  # archc.import_spec reports what does not compile
        return plain
    if _same_network(text, reference):
        return text
    # Some library block builds other than the class of its name does: keep the others.
    called = sorted(everything.called)
    kept = [block for block in called if _same_network(written({block}), reference)]
    text = written(kept)
    return text if _same_network(text, reference) else plain


def _graph(text: str) -> Graph | None:
    try:
        return compile_spec(Path("imported.yaml"), text=text).program.graph
    except ArchcError:
        return None


def _same_network(text: str, theirs: Graph) -> bool:
    """Whether the spec calling library blocks makes `theirs`, the graph of the one defining
    its own blocks: node by node, the same ops, attributes, types and wiring (a sum's terms in
    any order), and the same names wherever a node holds state (a parameterless node may be
    named otherwise)."""
    ours = _graph(text)
    if ours is None or len(ours.nodes) != len(theirs.nodes) or ours.inputs != theirs.inputs:
        return False
    renamed = {name: name for name in ours.inputs}
    for node, other in zip(ours.nodes.values(), theirs.nodes.values()):
        alike = (node.op.name, node.attrs, node.type) == (other.op.name, other.attrs, other.type)
        reads = [renamed.get(value) for value in node.inputs]
        wired = reads == other.inputs or (
            node.op.commutative and sorted(map(str, reads)) == sorted(other.inputs)
        )
        named = node.name == other.name or not ours.holds_state(node.name)
        if not (alike and wired and named):
            return False
        renamed[node.name] = other.name
    return {key: renamed[value] for key, value in ours.outputs.items()} == theirs.outputs


def channel_widths(model: Any, size: tuple[int, ...]) -> dict[str, tuple[int, int]]:
    """Each module's input and output channels, by path, from one forward on zeros
    (a module given a list, or returning other than a tensor, is left out)."""
    import torch

    widths: dict[str, tuple[int, int]] = {}

    def record(path: str) -> Any:
        def hook(module: Any, inputs: tuple, output: Any) -> None:
            tensor = inputs[0] if inputs else None
            tensors = isinstance(tensor, torch.Tensor) and isinstance(output, torch.Tensor)
            if tensors and tensor.dim() > 1 and output.dim() > 1:
                widths[path] = (_channels(tensor), _channels(output))

        return hook

    handles = [module.register_forward_hook(record(path)) for path, module in model.named_modules()]
    try:
        with torch.no_grad():
            model(torch.zeros(1, *size))
    finally:
        for handle in handles:
            handle.remove()
    return widths


def _channels(tensor: Any) -> int:
    """The channels as archc counts them: an image's axis 1, a token sequence's last axis."""
    return tensor.shape[-1] if tensor.dim() == 3 else tensor.shape[1]
