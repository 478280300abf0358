"""Renderers: reports drawn from the IR and its cost report (tables; diagrams later)."""

SORT_KEYS = ("model", "params", "macs", "flops", "activations", "depth")
"""The columns a comparison table can be ordered by (here so the command line need not import
the renderer to offer them)."""
