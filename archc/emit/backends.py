"""Every backend, and the check that each can write a program.

What code can say is decided where the code is made: a sequence item needs a module form, a
constructor argument cannot depend on a spatial size a class does not know, an op param must
pick a class that exists. `check` makes each class's constructor in every backend and discards
it, so a spec that one backend would refuse at `build` is refused by `check` too, at the same
location, with the same message.
"""

from __future__ import annotations

from archc.emit.classes import constructor_lines
from archc.emit.flax.emitter import FLAX
from archc.emit.torch.emitter import TORCH
from archc.resolve.classes import block_classes
from archc.resolve.elaborate import Program

BACKENDS = (TORCH, FLAX)


def check_emittable(program: Program) -> None:
    """Raise the located error a build in any backend would; write nothing."""
    classes = block_classes(program)
    for backend in BACKENDS:
        for block_class in classes:
            constructor_lines(block_class, backend)
