"""archc: a compiler for neural-network architectures written as YAML specs.

From Python: `archc.load(spec)`, `archc.compare(specs)` and `archc.import_spec(model)` (see
archc.api); errors raise `archc.ArchcError`, located in the spec.
"""

from pathlib import Path
from typing import Any

from archc.errors import ArchcError

__version__ = "0.1.0"

TEMPLATES = Path(__file__).resolve().parent / "templates"
"""The emitters' jinja2 templates and the helpers generated files copy in (shipped in the
package, so an installed archc finds them)."""
BLOCKS = Path(__file__).resolve().parent / "blocks"
"""The shipped block libraries, which any spec imports by name (`imports: [archc:resnet]`)."""


def __getattr__(name: str) -> Any:
    """The API, imported on first use: the command line starts without it."""
    if name in ("load", "compare", "import_spec", "Model", "Comparison"):
        from archc import api

        return getattr(api, name)
    raise AttributeError(f"module 'archc' has no attribute {name!r}")


__all__ = ["ArchcError", "Comparison", "Model", "compare", "import_spec", "load"]
