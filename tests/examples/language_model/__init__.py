"""Tests of the language model example."""
