"""The fourth example of examples/README.md's "Adding an example": an MLP on digits (a fixture)."""
