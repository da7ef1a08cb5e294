"""The update lowers for TPUs and GPUs on a CPU-only host, as ahead-of-time compilation does.

Nothing that cannot lower for those platforms may sit in the path their users
run; the CPU-only optimization barriers must be absent from it.
"""

import jax
import jax.export  # Not imported with jax before JAX 0.8.
import jax.numpy as jnp
import optax
import pytest

import znorm_optax
from tests.znorm_optax import reference
from tests.znorm_optax import trees

TRANSFORMS = {
    'znorm_adam': lambda: znorm_optax.znorm_adam(1e-3),
    'chain(znorm, adam)': lambda: optax.chain(znorm_optax.znorm(), optax.adam(1e-3)),
    'per_channel, stacked': lambda: znorm_optax.znorm(per_channel=True, stacked_axes=0),
    'eps=0 (rescaled)': lambda: znorm_optax.znorm(eps=0.0),
    'centralize': znorm_optax.centralize,
}


def _lowered_update(tx, platform):
  grads = trees.mixed_tree(0)
  abstract = jax.tree.map(lambda g: jax.ShapeDtypeStruct(g.shape, g.dtype), grads)
  state = jax.eval_shape(tx.init, abstract)

  def step(params, state, grads):
    updates, state = tx.update(grads, state, params)
    return optax.apply_updates(params, updates), state

  return jax.jit(step).trace(abstract, state, abstract).lower(lowering_platforms=(platform,))


@pytest.mark.parametrize('platform', ['tpu', 'cuda', 'rocm'])
@pytest.mark.parametrize('name', sorted(TRANSFORMS))
def test_update_lowers_for_accelerators_without_cpu_barriers(name, platform):
  text = _lowered_update(TRANSFORMS[name](), platform).as_text()
  assert 'optimization_barrier' not in text
  assert 'stablehlo.reduce' in text


def test_cpu_lowering_keeps_scalars_behind_barriers():
  text = _lowered_update(znorm_optax.znorm(), 'cpu').as_text()
  assert 'optimization_barrier' in text


def test_lowered_for_tpu_and_cpu_at_once_still_runs_here():
  tx = znorm_optax.znorm()
  grads = {'w': jnp.arange(6.0).reshape(2, 3)}
  exported = jax.export.export(jax.jit(lambda g: tx.update(g, None)[0]),
                               platforms=('tpu', 'cpu'))(grads)
  reference.assert_close(exported.call(grads)['w'], reference.znorm(grads['w']))


@pytest.mark.parametrize('platform, kernels', [('cuda', 3), ('rocm', 3), ('tpu', 0)])
def test_pallas_takes_the_kernels_when_lowered_for_gpus_on_this_cpu_host(platform, kernels):
  # Every kind of leaf the kernels take: bfloat16 and float16 (upcast as read), stacked
  # rows, small leaves packed into one kernel, large ones a kernel each (a grid of rows
  # by blocks). Per-channel groups take the XLA path.
  grads = {'bf16': jax.ShapeDtypeStruct((300, 500), jnp.bfloat16),
           'f16': jax.ShapeDtypeStruct((5,), jnp.float16),
           'layers': jax.ShapeDtypeStruct((3, 70000), jnp.float32),
           'small_layers': jax.ShapeDtypeStruct((12, 8, 8), jnp.bfloat16),
           'per_channel': jax.ShapeDtypeStruct((3, 3, 8, 16), jnp.float32)}
  stacked = {'bf16': None, 'f16': None, 'layers': 0, 'small_layers': 0, 'per_channel': None}
  tx = znorm_optax.znorm(kernels='pallas', stacked_axes=stacked)
  text = jax.jit(lambda g: tx.update(g, None)[0]).trace(grads).lower(
      lowering_platforms=(platform,)).as_text()
  assert text.count('@__gpu$xla.gpu.triton') == kernels
  assert 'optimization_barrier' not in text
  per_channel = znorm_optax.znorm(kernels='pallas', per_channel=True)
  text = jax.jit(lambda g: per_channel.update(g, None)[0]).trace(
      {'per_channel': grads['per_channel']}).lower(lowering_platforms=(platform,)).as_text()
  assert 'triton' not in text


def test_export_of_the_kernels_for_a_gpu_and_of_xla_for_gpu_and_cpu_at_once():
  grads = {'w': jnp.arange(600.0).reshape(20, 30)}

  def update(kernels):
    tx = znorm_optax.znorm(kernels=kernels)
    return jax.jit(lambda g: tx.update(g, None)[0])

  # The Triton custom call has no compatibility guarantee: exported only when allowed.
  triton = jax.export.DisabledSafetyCheck.custom_call('__gpu$xla.gpu.triton')
  with pytest.raises(ValueError, match='compatibility guarantees'):
    jax.export.export(update('pallas'), platforms=('cuda',))(grads)
  exported = jax.export.export(update('pallas'), platforms=('cuda',), disabled_checks=[triton])
  assert 'xla.gpu.triton' in exported(grads).mlir_module()
  # A GPU and the CPU in one export: XLA paths only (the default's, or 'xla'), run here.
  for kernels in (None, 'xla'):
    exported = jax.export.export(update(kernels), platforms=('cuda', 'cpu'))(grads)
    reference.assert_close(exported.call(grads)['w'], reference.znorm(grads['w']))


@pytest.mark.parametrize('platform, marker', [('cuda', 'stablehlo.concatenate'),
                                              ('rocm', 'stablehlo.concatenate'),
                                              ('tpu', 'stablehlo.reduce(%')])
def test_grouped_lowers_packed_for_gpus_and_variadic_for_tpus(platform, marker):
  # Six leaves of one shape: one concatenation per statistic on GPUs (packed), and on
  # TPUs one reduction per pass with an operand per leaf and statistic (variadic).
  grads = {f'w{i}': jax.ShapeDtypeStruct((8, 4), jnp.float32) for i in range(6)}
  tx = znorm_optax.znorm(kernels='grouped')
  text = jax.jit(lambda g: tx.update(g, None)[0]).trace(grads).lower(
      lowering_platforms=(platform,)).as_text()
  assert marker in text
  assert 'optimization_barrier' not in text
  if platform == 'tpu':
    assert text.count('stablehlo.reduce(%') == 2  # Pass one's 18 operands, pass two's 12.


def test_auto_traces_only_the_default_device_s_path():
  grads = {'w': jnp.ones((8, 4)), 'b': jnp.ones((3,))}

  def jaxpr(kernels=None):
    return str(jax.make_jaxpr(jax.jit(znorm_optax.znorm(kernels=kernels).update))(grads, None))

  # The per-leaf path's own CPU barriers are platform-dependent; no branch names a TPU.
  assert "'tpu'" not in jaxpr() and 'concatenate' not in jaxpr()
  assert "'tpu'" in jaxpr('grouped')
  with jax.default_device('tpu'):  # As deviceless compilation for a TPU sets it.
    tpu = jaxpr()
  assert "'tpu'" not in tpu and 'reduce_sum' not in tpu and 'reduce[' in tpu
  with jax.default_device('gpu'):
    assert 'concatenate' in jaxpr()
