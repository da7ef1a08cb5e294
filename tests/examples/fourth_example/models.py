"""The fourth example's one model: an MLP from 64 pixels to the 10 digits."""

import jax
from flax import nnx

from examples.datasets import digits

MODELS = ('mlp',)
_PIXELS = 64


class MLP(nnx.Module):

  def __init__(self, hidden: int, *, rngs: nnx.Rngs):
    self.hidden = nnx.Linear(_PIXELS, hidden, rngs=rngs)
    self.output = nnx.Linear(hidden, digits.NUM_CLASSES, rngs=rngs)

  def __call__(self, pixels: jax.Array) -> jax.Array:
    return self.output(nnx.relu(self.hidden(pixels)))


def check_model(name: str) -> str:
  """Returns ``name`` if :func:`create_model` accepts it, else raises ``ValueError``."""
  if name not in MODELS:
    raise ValueError(f'Unknown model {name!r}; valid models are: {", ".join(MODELS)}.')
  return name


def create_model(name: str, *, hidden: int, rngs: nnx.Rngs) -> nnx.Module:
  check_model(name)
  return MLP(hidden, rngs=rngs)
