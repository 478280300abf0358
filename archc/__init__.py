"""archc: a compiler for neural-network architectures written as YAML specs."""

__version__ = "0.1.0"
