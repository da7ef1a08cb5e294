"""The example's train step with ZNorm lowers for TPUs and GPUs on this CPU-only host."""

import jax
import jax.numpy as jnp
import pytest
from flax import nnx

from examples.image_classification.task import classification_task
from examples.study import methods
from examples.training import steps


@pytest.mark.parametrize('platform', ['tpu', 'cuda'])
def test_znorm_train_step_lowers_for_accelerators(platform):
  task = classification_task('resnet20', num_classes=10, in_channels=3, width=4)

  def build():
    model = task.create_model(nnx.Rngs(0), None)
    return model, nnx.Optimizer(model, methods.make_optimizer('znorm', 1e-3), wrt=nnx.Param)

  graphdef, state = nnx.split(nnx.eval_shape(build))
  carry = (state, jax.eval_shape(lambda: steps.initial_health(0)))
  batch = {'image': jax.ShapeDtypeStruct((8, 16, 16, 3), jnp.float32),
           'label': jax.ShapeDtypeStruct((8,), jnp.int32),
           'mask': jax.ShapeDtypeStruct((8,), jnp.float32)}
  lowered = jax.jit(steps.train_step(task, graphdef)).trace(carry, batch).lower(
      lowering_platforms=(platform,))
  text = lowered.as_text()
  assert 'stablehlo.convolution' in text
  assert 'optimization_barrier' not in text  # The CPU-only hint stays on the CPU.
