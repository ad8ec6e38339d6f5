"""Tensor IO: safe readers for untrusted checkpoints and a streaming safetensors writer."""
