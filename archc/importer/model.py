"""An nn.Module → the text of a spec that builds it again."""

from __future__ import annotations

from typing import Any

from archc.importer.blocks import block_definitions
from archc.importer.items import Instance, Node, Seq
from archc.importer.modules import module_item
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
    definitions, body = block_definitions(root, channel_widths(model, size))
    return spec_text(name, origin, size, definitions, body)


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
