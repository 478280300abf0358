"""The flax.nnx emitter."""
