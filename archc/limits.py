"""Bounds on what a spec may ask for, so that no spec can hang archc or exhaust memory.

Each is reported as a located error that names the limit. They sit far above any real
network: a 100,000-op spec compiles well within them.
"""

MAX_SPEC_BYTES = 16 * 2**20
"""Size of one spec or block library file."""
MAX_TEXT_LENGTH = 10_000
"""Characters in one string of a spec (a doc, an expression, a name template)."""
MAX_NAME_LENGTH = 100
"""Characters in a name that becomes a Python identifier."""
MAX_REPEAT = 10_000
"""Copies one `repeat:` may make."""
MAX_NODES = 1_000_000
"""Primitive ops in one elaborated model."""
MAX_DEPTH = 100
"""Blocks nested inside one another (a block that uses a block that uses …)."""
MAX_INT_BITS = 64
"""Bits of an integer an expression may compute (widths, sizes and counts fit in far fewer)."""
MAX_SEQUENCE_LENGTH = 100_000
"""Items of a list or range an expression may build."""
