"""The tree an imported model is read into: ops, sequences, block instances, their nodes."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class Op:
    name: str
    attrs: dict[str, Any] = field(default_factory=dict)


@dataclass
class Seq:
    items: list[Item]


@dataclass
class Node:
    name: str
    item: Item
    inputs: list[str]
    """Values it reads: `input` or earlier nodes of the same body."""
    when: str | None = None
    """The param that switches it on (a block definition's optional node)."""


@dataclass
class Instance:
    """A module written as a block: its class, and a body (a list body: a sequence block)."""

    kind: str
    body: list[Node]
    listed: bool = False
    """A numbered sequence (an `nn.Sequential` subclass): its body is a YAML list."""
    path: str = ""
    """Where the module is in the model."""


Item = Op | Seq | Instance
