"""Configs for the image classification example (ml_collections ``get_config()``)."""
