"""Passes over the IR graph (graph in, facts or graph out)."""
