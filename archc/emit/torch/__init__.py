"""The PyTorch emitter."""
