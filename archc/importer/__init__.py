"""`archc import`: an existing PyTorch model written back as a spec.

The model's own module tree is kept: every submodule becomes a node named as its attribute
(so the spec's parameter paths are the model's state_dict keys). A library layer (conv,
norm, activation, pooling, linear) becomes an op; an `nn.Sequential` a sequence; any other
module's `forward` is traced with torch.fx, its submodules left whole, into the body of a
block. Instances of one class with one structure share a block definition, the values
that differ between them becoming its params. In order: `sources.py` (where the model comes
from), `modules.py` with `layers.py` (the module tree as the `items.py` tree), `blocks.py`
(definitions and params), `writer.py` (the YAML); `model.py` runs them. torch is imported
only here: the compiler never needs it.
"""
