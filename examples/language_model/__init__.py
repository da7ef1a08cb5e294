"""A byte-level decoder-only transformer language model with scanned layers."""
