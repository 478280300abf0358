"""archc: a compiler for neural-network architectures written as YAML specs."""

from pathlib import Path

__version__ = "0.1.0"

TEMPLATES = Path(__file__).resolve().parent / "templates"
"""The emitters' jinja2 templates and the helpers generated files copy in (shipped in the
package, so an installed archc finds them)."""
BLOCKS = Path(__file__).resolve().parent / "blocks"
"""The shipped block libraries, which any spec imports by name (`imports: [archc:resnet]`)."""
