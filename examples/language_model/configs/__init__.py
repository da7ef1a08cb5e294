"""Configs for the language model example (ml_collections ``get_config()``)."""
