"""Inference pass, after the folds: an `op` param that picks only norms the folds removed
(`norm` in MobileNetV3's ConvBNAct) is read by nothing, so it leaves the class's signature,
and the argument leaves every call, up to the model's create_model. A careful hand-written
inference model has no parameter that does nothing.

A param counts as read where any expression of its class names it (an op a node picks, an
attribute, a condition, a loop count, a let, an argument), except an argument passed on as it
is to a block param that is itself unread.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

from archc.ir.modules import BlockClass, ModuleNode
from archc.ir.symbolic import is_symbolic, source


def drop_unused_params(classes: list[BlockClass]) -> list[BlockClass]:
    """The classes (leaves first, as block_classes gives them) without their unread op params."""
    unread: dict[str, set[str]] = {}  # by block definition: read in none of its classes
    for block_class in classes:
        name = block_class.definition.name
        found = _unread(block_class, unread)
        unread[name] = found if name not in unread else unread[name] & found
    return [_without(block_class, unread) for block_class in classes]


def _unread(block_class: BlockClass, unread: dict[str, set[str]]) -> set[str]:
    params = block_class.definition.params
    candidates = {name for name, param in params.items() if param.type == "op"}
    texts = [source(value) for _, value in block_class.lets if is_symbolic(value)]
    for child in _tree([*block_class.children, *block_class.stage]):
        texts += _expressions(child, unread)
    return {name for name in candidates if not any(_names(text, name) for text in texts)}


def _tree(children: list[ModuleNode]) -> Iterator[ModuleNode]:
    for child in children:
        yield child
        yield from _tree(child.children)


def _expressions(child: ModuleNode, unread: dict[str, set[str]]) -> list[str]:
    """The texts of a child's expressions that may read a param: an argument passed as it is
    to a block param nothing reads does not."""
    passed_on = unread.get(child.block.name, set()) if child.block is not None else set()
    arguments = [
        value for key, value in child.args.items() if key not in passed_on or not is_symbolic(value)
    ]
    values: list[Any] = [*arguments, child.condition, child.count, child.frozen]
    values += [value for _, value in child.attrs or ()]
    texts = [source(value) for value in values if is_symbolic(value)]
    return [*texts, child.chosen_by or "", child.names or ""]


def _names(text: str, name: str) -> bool:
    return re.search(rf"\b{re.escape(name)}\b", text) is not None


def _without(block_class: BlockClass, unread: dict[str, set[str]]) -> BlockClass:
    gone = unread[block_class.definition.name]
    params = {key: value for key, value in block_class.definition.params.items() if key not in gone}
    return replace(
        block_class,
        definition=replace(block_class.definition, params=params),
        params={key: value for key, value in block_class.params.items() if key not in gone},
        children=_calls_without(block_class.children, unread),
    )


def _calls_without(children: list[ModuleNode], unread: dict[str, set[str]]) -> list[ModuleNode]:
    """The children, each block call without the arguments its block no longer takes."""
    return [
        replace(
            child,
            args={
                key: value
                for key, value in child.args.items()
                if child.block is None or key not in unread.get(child.block.name, set())
            },
            children=_calls_without(child.children, unread),
        )
        for child in children
    ]
