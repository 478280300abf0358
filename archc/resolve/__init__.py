"""Resolve stage: params, overrides, expressions, blocks, repeats, conditions → IR."""
