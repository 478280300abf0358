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

    called = block_definitions(root, widths, library_blocks()).called
    plain, text = written(()), written(called)
    if not called or _same_network(text, plain):
        return text
    # Some library block builds other than the class of its name does: keep the others.
    kept = [block for block in sorted(called) if _same_network(written({block}), plain)]
    text = written(kept)
    return text if _same_network(text, plain) else plain


def _same_network(text: str, plain: str) -> bool:
    """Whether the spec calling library blocks makes the graph the one defining its own
    blocks makes: node by node, the same ops, attributes, types and wiring (a sum's terms in
    any order), and the same names wherever a node holds state (a parameterless node may be
    named otherwise)."""
    try:
        ours, theirs = (
            compile_spec(Path("imported.yaml"), text=spec).program.graph for spec in (text, plain)
        )
    except ArchcError:
        return False
    if len(ours.nodes) != len(theirs.nodes) or ours.inputs != theirs.inputs:
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
