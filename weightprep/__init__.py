"""weightprep: prepare and verify large-model weights for vision-language research."""

__version__ = "0.1.0"
