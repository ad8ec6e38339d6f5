"""Meta LLaMA checkpoints: layout, params, name map, conversion to Hugging Face format."""
