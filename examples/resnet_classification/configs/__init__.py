"""Configs for the ResNet classification example (ml_collections ``get_config()``)."""
