"""A decoder-only transformer over bytes, its blocks stacked with ``nnx.scan``.

Pre-norm blocks (LayerNorm, causal self-attention, LayerNorm, GELU MLP) with
learned positions, as in GPT-2. Parameters are float32; ``dtype`` is the
compute type (``bfloat16`` for speed on accelerators). Every parameter carries
logical axis names (``nnx.with_partitioning``), and the stack's ``nnx.vmap``
adds :data:`LAYER_AXIS` to those of the blocks' parameters, so
:func:`stacked_axes` reads each leaf's layer axis from the model itself.
"""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

import znorm_optax

VOCAB_SIZE = 256  # Bytes.
LAYER_AXIS = 'layers'
"""The logical name ``nnx.vmap`` gives the stacked blocks' leading axis."""


@dataclasses.dataclass(frozen=True)
class Size:
  """A model's shape; ``context`` comes from ``config.context``."""

  num_layers: int
  width: int
  num_heads: int
  mlp_width: int


SIZES = {
    'tiny': Size(num_layers=2, width=32, num_heads=2, mlp_width=64),
    'small': Size(num_layers=4, width=128, num_heads=4, mlp_width=512),
    'deep': Size(num_layers=8, width=64, num_heads=4, mlp_width=256),
    'gpt2_small': Size(num_layers=12, width=768, num_heads=12, mlp_width=3072),
}
"""Model name -> shape; ``deep`` is the study's (8 narrow layers), ``gpt2_small`` has GPT-2
small's block shapes."""

DTYPES = {'float32': jnp.float32, 'bfloat16': jnp.bfloat16}


def _init(initializer, *names):
  # The axis names are metadata here, not placements: the training core places the state
  # itself (``--config.parallel``).
  return nnx.with_partitioning(initializer, names, eager_sharding=False)


def _dense(in_width, out_width, names, *, dtype, rngs, kernel_scale=1.0):
  return nnx.Linear(
      in_width, out_width, dtype=dtype, param_dtype=jnp.float32,
      kernel_init=_init(nnx.initializers.normal(0.02 * kernel_scale), *names),
      bias_init=_init(nnx.initializers.zeros_init(), names[-1]), rngs=rngs)


def _layer_norm(width, *, dtype, rngs):
  return nnx.LayerNorm(
      width, dtype=dtype, param_dtype=jnp.float32,
      scale_init=_init(nnx.initializers.ones_init(), 'embed'),
      bias_init=_init(nnx.initializers.zeros_init(), 'embed'), rngs=rngs)


class Block(nnx.Module):
  """One pre-norm transformer block."""

  def __init__(self, size: Size, num_layers: int, *, dtype, rngs: nnx.Rngs):
    if size.width % size.num_heads:
      raise ValueError(f'width {size.width} is not divisible by {size.num_heads} heads.')
    self.num_heads = size.num_heads
    # GPT-2 scales the residual projections' initialization by 1/sqrt(2 * layers).
    residual_scale = 1 / np.sqrt(2 * num_layers)
    self.attention_norm = _layer_norm(size.width, dtype=dtype, rngs=rngs)
    self.qkv = _dense(size.width, 3 * size.width, ('embed', 'qkv'), dtype=dtype, rngs=rngs)
    self.attention_out = _dense(size.width, size.width, ('qkv', 'embed'), dtype=dtype, rngs=rngs,
                                kernel_scale=residual_scale)
    self.mlp_norm = _layer_norm(size.width, dtype=dtype, rngs=rngs)
    self.mlp_in = _dense(size.width, size.mlp_width, ('embed', 'mlp'), dtype=dtype, rngs=rngs)
    self.mlp_out = _dense(size.mlp_width, size.width, ('mlp', 'embed'), dtype=dtype, rngs=rngs,
                          kernel_scale=residual_scale)

  def __call__(self, x: jax.Array) -> jax.Array:
    batch, length, width = x.shape
    q, k, v = jnp.split(self.qkv(self.attention_norm(x)), 3, axis=-1)
    heads = lambda t: t.reshape(batch, length, self.num_heads, width // self.num_heads)
    attended = jax.nn.dot_product_attention(heads(q), heads(k), heads(v), is_causal=True)
    x = x + self.attention_out(attended.reshape(batch, length, width))
    return x + self.mlp_out(jax.nn.gelu(self.mlp_in(self.mlp_norm(x))))


def _lookup(embed: nnx.Embed, tokens: jax.Array) -> jax.Array:
  """``embed(tokens)``, also where ``tokens`` are split over Explicit mesh axes.

  Explicit sharding has no rule for a gather's output, so it is given: the
  tokens' own split, with the embedding axis whole.
  """
  sharding = jax.typeof(tokens).sharding
  out_sharding = None
  if any(sharding.spec):
    out_sharding = sharding.update(spec=(*sharding.spec, None))
  table = jnp.asarray(embed.embedding[...], embed.dtype)
  return table.at[tokens].get(out_sharding=out_sharding)


class Transformer(nnx.Module):
  """Bytes ``[B, T]`` (int) -> next-byte logits ``[B, T, 256]`` (float32).

  Args:
    size: the shape.
    context: the longest sequence (learned positions).
    dtype: the compute dtype; parameters are float32.
    scan_layers: stack the blocks (one leaf per parameter kind, shaped
      ``(layers, ...)``) and run them with ``nnx.scan``; ``False`` keeps a
      list of blocks, the same model unrolled.
    rngs: initializes the parameters.
  """

  def __init__(self, size: Size, *, context: int, dtype=jnp.float32, scan_layers: bool = True,
               rngs: nnx.Rngs):
    self.scan_layers = scan_layers
    embed = nnx.initializers.normal(0.02)
    self.token_embedding = nnx.Embed(VOCAB_SIZE, size.width, dtype=dtype, param_dtype=jnp.float32,
                                     embedding_init=_init(embed, 'vocab', 'embed'), rngs=rngs)
    self.position_embedding = nnx.Embed(context, size.width, dtype=dtype,
                                        param_dtype=jnp.float32,
                                        embedding_init=_init(embed, 'context', 'embed'), rngs=rngs)

    def block(rngs):
      return Block(size, size.num_layers, dtype=dtype, rngs=rngs)

    if scan_layers:
      stack = nnx.vmap(block, in_axes=0, out_axes=0,
                       transform_metadata={nnx.PARTITION_NAME: LAYER_AXIS})
      self.blocks = nnx.split_rngs(splits=size.num_layers)(stack)(rngs)
    else:
      self.blocks = nnx.data([block(rngs) for _ in range(size.num_layers)])
    self.final_norm = _layer_norm(size.width, dtype=dtype, rngs=rngs)
    self.head = _dense(size.width, VOCAB_SIZE, ('embed', 'vocab'), dtype=dtype, rngs=rngs)

  def __call__(self, tokens: jax.Array) -> jax.Array:
    x = _lookup(self.token_embedding, tokens) + self.position_embedding(jnp.arange(tokens.shape[1]))
    if self.scan_layers:
      x = nnx.scan(lambda x, block: (block(x), None), in_axes=(nnx.Carry, 0),
                   out_axes=(nnx.Carry, 0),
                   transform_metadata={nnx.PARTITION_NAME: LAYER_AXIS})(x, self.blocks)[0]
    else:
      for block in self.blocks:
        x = block(x)
    return self.head(self.final_norm(x)).astype(jnp.float32)


def check_model(name: str) -> str:
  """Returns ``name`` if it is one of :data:`SIZES`; else raises ``ValueError`` naming the flag."""
  if name not in SIZES:
    raise ValueError(f'Unknown --config.model={name!r}; valid models are: {", ".join(SIZES)}.')
  return name


def create_model(name: str, *, context: int, dtype: str = 'float32', scan_layers: bool = True,
                 rngs: nnx.Rngs) -> Transformer:
  """The :class:`Transformer` of size ``SIZES[name]``; ``dtype`` is a key of :data:`DTYPES`."""
  return Transformer(SIZES[check_model(name)], context=context, dtype=DTYPES[dtype],
                     scan_layers=scan_layers, rngs=rngs)


def stacked_axes(model: nnx.Module) -> dict:
  """Each parameter's layer axis (or ``None``), as ``znorm(stacked_axes=...)`` takes it.

  Read from the axis names the parameters carry, where the stack's
  ``nnx.vmap`` put :data:`LAYER_AXIS`; a pure dict shaped like
  ``nnx.to_pure_dict(nnx.state(model, nnx.Param))``.
  """
  specs = nnx.to_pure_dict(nnx.get_partition_spec(nnx.state(model, nnx.Param)))
  return znorm_optax.stacked_axes_from_specs(specs, LAYER_AXIS)
