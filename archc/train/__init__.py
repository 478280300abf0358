"""Training: the spec's `train:` section (loss, optimizer, schedule, …), checked, for the
generated training scripts (archc.emit.training)."""
