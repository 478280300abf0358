"""An nn.Module → the text of a spec that builds it again."""

from __future__ import annotations

from typing import Any

from archc.importer.blocks import block_definitions
from archc.importer.modules import Instance, Node, Seq, module_item
from archc.importer.writer import spec_text


def imported_spec(model: Any, name: str, origin: str, size: tuple[int, ...]) -> str:
    """The spec of `model` (as built by `origin`, taking inputs of `size` without the batch)."""
    model.eval()  # the forward traced is the inference one (no auxiliary heads)
    root = module_item(model, "")
    if not isinstance(root, Instance):  # a bare Sequential or layer: numbered top-level nodes
        items = root.items if isinstance(root, Seq) else [root]
        names = [str(index) for index in range(len(items))]
        body = [Node(n, item, [p]) for n, item, p in zip(names, items, ["input", *names])]
        root = Instance(type(model).__name__, body)
    definitions, body = block_definitions(root)
    return spec_text(name, origin, size, definitions, body)
