"""Flax ResNet image classification: the paper's Table 1 and Table 2 experiments."""
