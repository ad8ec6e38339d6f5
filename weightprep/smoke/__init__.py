"""The captioning smoke test: load prepared weights into their vision-language model, caption a
known image, and check that the answers are sane and that the image actually mattered."""
