"""Two facts a ZNorm user needs, measured: the learning rate before SGD, and tiny problems.

1. **ZNorm before SGD changes the meaningful learning rate.** ZNorm gives every
   leaf of the update unit standard deviation, whatever the gradient's scale, so
   ``sgd(lr)`` after it moves every parameter by about ``lr`` per step (``lr / (1
   - momentum)`` with momentum). The learning rate tuned for plain SGD is then
   far too large. Trained here: the CNN of Flax's MNIST example (conv 32, conv
   64, dense 256, dense 10; its 2x2 average pools leave 2x2 of an 8x8 image) on
   scikit-learn's 8x8 digits (real, shipped with scikit-learn, no download),
   batch 128, with ``sgd(lr, momentum=0.9)`` and
   ``chain(znorm(), sgd(lr, momentum=0.9))`` for several ``lr``.
2. **On tiny problems ZNorm + Adam does not converge.** optax's
   ``test_optimization`` (``optax/_src/alias_test.py``) checks that
   ``adam(1e-1)`` reaches the minimum of a parabola (one leaf of 3 elements) and
   of the Rosenbrock function (a=1, b=100; one leaf of 2 elements) in 10,000
   steps, within rtol = atol = 3e-2. A 2-element leaf always normalizes to
   (+1, -1) or (-1, +1) (zeros at a constant gradient), so the step never
   shrinks near the minimum, and with zero mean it moves the parameters only
   along (1, -1): their sum stays where it started. The script runs ``adam``,
   ``chain(znorm(), adam)`` and ``znorm_adam`` on the problems as one leaf, and
   ``chain(znorm(), adam)`` with one scalar leaf per coordinate, which ZNorm
   leaves alone (``min_size=2``).

Every figure is final: losses, accuracies and distances after the last step,
NaN printed as NaN.

    python benchmarks/znorm_guidance.py
    python benchmarks/znorm_guidance.py --epochs=1 --seeds=1 --steps=100 --learning_rates=0.1
"""

import argparse
import os
import platform

import flax
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from sklearn import datasets
from sklearn import model_selection

import znorm_optax

MOMENTUM = 0.9
# optax's test_optimization: adam's learning rate there, and the tolerance it asserts.
OPTAX_TEST_LEARNING_RATE = 1e-1
OPTAX_TEST_TOLERANCE = 3e-2


class DigitsCNN(nnx.Module):
  """The CNN of Flax's MNIST example, sized for 8x8 images (two 2x2 pools leave 2x2x64)."""

  def __init__(self, *, rngs: nnx.Rngs):
    self.conv1 = nnx.Conv(1, 32, kernel_size=(3, 3), rngs=rngs)
    self.conv2 = nnx.Conv(32, 64, kernel_size=(3, 3), rngs=rngs)
    self.linear1 = nnx.Linear(2 * 2 * 64, 256, rngs=rngs)
    self.linear2 = nnx.Linear(256, 10, rngs=rngs)

  def __call__(self, x):
    x = nnx.avg_pool(nnx.relu(self.conv1(x)), window_shape=(2, 2), strides=(2, 2))
    x = nnx.avg_pool(nnx.relu(self.conv2(x)), window_shape=(2, 2), strides=(2, 2))
    x = nnx.relu(self.linear1(x.reshape(x.shape[0], -1)))
    return self.linear2(x)


def digits_split():
  """scikit-learn's digits as (N, 8, 8, 1) images in [0, 1]: a stratified 80/20 split."""
  images, labels = datasets.load_digits(return_X_y=True)
  images = (images / 16.0).reshape(-1, 8, 8, 1).astype(np.float32)  # Pixels count 0 to 16.
  return model_selection.train_test_split(
      images, labels.astype(np.int32), test_size=0.2, random_state=0, stratify=labels)


def _loss(model, images, labels):
  logits = model(images)
  return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean(), logits


@nnx.jit
def _train_step(model, optimizer, images, labels):
  (loss, _), grads = nnx.value_and_grad(_loss, has_aux=True)(model, images, labels)
  optimizer.update(model, grads)
  return loss


@nnx.jit
def _evaluate(model, images, labels):
  loss, logits = _loss(model, images, labels)
  return loss, jnp.mean(jnp.argmax(logits, axis=-1) == labels)


def train_digits(tx, seed, data, *, epochs, batch_size):
  """Trains one DigitsCNN; returns its initial and final train loss, worst epoch and test accuracy.

  The worst epoch is the largest mean training loss over an epoch's steps. The
  step losses stay on the device until an epoch ends, so no step waits for the host.
  """
  train_images, test_images, train_labels, test_labels = data
  model = DigitsCNN(rngs=nnx.Rngs(seed))
  optimizer = nnx.Optimizer(model, tx, wrt=nnx.Param)
  initial_loss, _ = _evaluate(model, train_images, train_labels)
  order_rng = np.random.default_rng(seed)
  worst_epoch = -np.inf
  for _ in range(epochs):
    order = order_rng.permutation(len(train_images))
    step_losses = [
        _train_step(model, optimizer, train_images[batch], train_labels[batch])
        for batch in np.split(order[:len(order) // batch_size * batch_size],
                              len(order) // batch_size)]
    epoch_loss = float(jnp.mean(jnp.stack(step_losses)))
    worst_epoch = epoch_loss if np.isnan(epoch_loss) else max(worst_epoch, epoch_loss)
  final_loss, _ = _evaluate(model, train_images, train_labels)
  _, accuracy = _evaluate(model, test_images, test_labels)
  return float(initial_loss), float(final_loss), worst_epoch, float(accuracy)


def verdict(initial_loss, final_loss):
  """'NaN' if the loss is not finite, 'diverged' if it ended above where it started, else 'trains'."""
  if not np.isfinite(final_loss):
    return 'NaN'
  return 'diverged' if final_loss > initial_loss else 'trains'


def learning_rate_table(*, learning_rates, seeds, epochs, batch_size):
  """Part 1: sgd with and without ZNorm in front, on the digits CNN, every seed printed."""
  data = digits_split()
  steps = epochs * (len(data[0]) // batch_size)
  print(f'\n1. ZNorm before SGD: the CNN of Flax\'s MNIST example on scikit-learn digits '
        f'({len(data[0])} train, {len(data[1])} test images, 8x8), batch {batch_size}, '
        f'{epochs} epoch(s) = {steps} steps, seeds {list(seeds)}.')
  print('   Loss is the mean cross-entropy over the whole train set; "worst epoch" is the largest '
        'mean step loss of an epoch; "diverged" means the final loss is above the initial one.')
  print(f'{"optimizer":34s} {"lr":>6s} {"initial loss":>12s} {"final train loss (per seed)":>30s} '
        f'{"worst epoch":>11s} {"test acc":>14s}  verdict')
  for label, make in (
      (f'sgd(lr, momentum={MOMENTUM})', lambda lr: optax.sgd(lr, momentum=MOMENTUM)),
      (f'chain(znorm(), sgd(lr, {MOMENTUM}))', lambda lr: optax.chain(
          znorm_optax.znorm(), optax.sgd(lr, momentum=MOMENTUM))),
  ):
    for lr in learning_rates:
      tx = make(lr)  # One object for all seeds, so the step compiles once per learning rate.
      runs = [train_digits(tx, seed, data, epochs=epochs, batch_size=batch_size)
              for seed in seeds]
      initial, final, worst, accuracy = (np.array(column) for column in zip(*runs))
      verdicts = [verdict(i, f) for i, f in zip(initial, final)]
      print(f'{label:34s} {lr:6g} {np.mean(initial):12.4f} '
            f'{" / ".join(f"{f:.4g}" for f in final):>30s} {np.max(worst):11.4g} '
            f'{" / ".join(f"{a:.3f}" for a in accuracy):>14s}  '
            f'{", ".join(f"{verdicts.count(v)}/{len(verdicts)} {v}" for v in dict.fromkeys(verdicts))}')


def parabola():
  """optax's parabola: sum((x - x*)^2) from (-1, 10, 1) to x* = (1, -1, 1)."""
  optimum = jnp.array([1.0, -1.0, 1.0])
  return jnp.array([-1.0, 10.0, 1.0]), optimum, lambda x: jnp.sum((x - optimum) ** 2)


def rosenbrock(a=1.0, b=100.0):
  """optax's Rosenbrock function (a - x0)^2 + b (x1 - x0^2)^2 from (0, 0) to (a, a^2)."""
  return (jnp.zeros(2), jnp.array([a, a * a]),
          lambda x: (a - x[0]) ** 2 + b * (x[1] - x[0] ** 2) ** 2)


PROBLEMS = {'parabola': parabola, 'rosenbrock': rosenbrock}

# Each optimizer of part 2, and whether its parameters are one leaf or one scalar leaf per element.
PROBLEM_OPTIMIZERS = (
    ('adam(lr)', optax.adam, 'one leaf'),
    ('chain(znorm(), adam(lr))', lambda lr: optax.chain(znorm_optax.znorm(), optax.adam(lr)),
     'one leaf'),
    ('znorm_adam(lr)', znorm_optax.znorm_adam, 'one leaf'),
    ('adam(lr)', optax.adam, 'scalar leaves'),
    ('chain(znorm(), adam(lr))', lambda lr: optax.chain(znorm_optax.znorm(), optax.adam(lr)),
     'scalar leaves'),
)


def minimize(tx, loss_fn, initial, *, scalar_leaves, steps):
  """Runs ``steps`` steps of ``tx`` on ``loss_fn`` in one jitted loop.

  With ``scalar_leaves``, the parameters are a list of 0-d arrays, one per element.

  Returns:
    The final point, the gradient there and what ``znorm()`` makes of that
    gradient, each as one vector.
  """
  to_params = (lambda x: list(x)) if scalar_leaves else (lambda x: x)
  params_loss = (lambda p: loss_fn(jnp.stack(p))) if scalar_leaves else loss_fn

  @jax.jit
  def run(params):
    def body(_, carry):
      params, state = carry
      updates, state = tx.update(jax.grad(params_loss)(params), state, params)
      return optax.apply_updates(params, updates), state
    params, _ = jax.lax.fori_loop(0, steps, body, (params, tx.init(params)))
    return params

  final = run(to_params(initial))
  gradient = jax.grad(params_loss)(final)
  normalized, _ = znorm_optax.znorm().update(gradient, None)
  as_vector = jnp.stack if scalar_leaves else (lambda x: x)
  return as_vector(final), as_vector(gradient), as_vector(normalized)


def tiny_problem_table(*, learning_rates, steps):
  """Part 2: Adam with and without ZNorm on optax's parabola and Rosenbrock."""
  print(f'\n2. ZNorm + Adam on optax\'s test_optimization problems, {steps} steps, float32. '
        f'"optax test" is optax\'s check: allclose(x, x*, rtol={OPTAX_TEST_TOLERANCE}, '
        f'atol={OPTAX_TEST_TOLERANCE}).')
  print('   At the final point: "|grad|" is the gradient\'s norm, "znorm(grad)" what znorm() makes '
        'of it (scalar leaves pass through unchanged).')
  print(f'{"problem":10s} {"optimizer":25s} {"params":13s} {"lr":>5s} {"final loss":>11s} '
        f'{"|x - x*|":>9s} {"optax test":>10s} {"sum(x)":>8s} {"final x":>26s} '
        f'{"|grad|":>9s} {"znorm(grad)":>26s}')
  for name, problem in PROBLEMS.items():
    initial, optimum, loss_fn = problem()
    for label, make, layout in PROBLEM_OPTIMIZERS:
      for lr in learning_rates:
        final, gradient, normalized = minimize(
            make(lr), loss_fn, initial, scalar_leaves=layout == 'scalar leaves', steps=steps)
        passed = bool(jnp.allclose(final, optimum, rtol=OPTAX_TEST_TOLERANCE,
                                   atol=OPTAX_TEST_TOLERANCE))
        print(f'{name:10s} {label:25s} {layout:13s} {lr:5g} {float(loss_fn(final)):11.3e} '
              f'{float(jnp.linalg.norm(final - optimum)):9.3e} {"pass" if passed else "FAIL":>10s} '
              f'{float(jnp.sum(final)):8.4f} {_vector(final):>26s} '
              f'{float(jnp.linalg.norm(gradient)):9.3e} {_vector(normalized):>26s}')
    print(f'{name:10s} start x = {_vector(initial)} (sum {float(jnp.sum(initial)):g}, '
          f'loss {float(loss_fn(initial)):g}), '
          f'optimum x* = {_vector(optimum)} (sum {float(jnp.sum(optimum)):g})')
  print('Why: znorm() makes every leaf of n >= 2 elements mean 0 and std 1, whatever the '
        'gradient\'s size, so the step never shrinks near the minimum. A 2-element leaf (a, b) '
        'becomes sign(a - b) * (1, -1): Adam\'s second moment is then 1 on both elements and its '
        'first moments are equal and opposite, so x moves only along (1, -1) and sum(x) keeps its '
        'start value. Any leaf loses its mean: the part of the error along (1, ..., 1) is '
        'invisible to the optimizer. Leaves smaller than min_size=2 pass through, so with scalar '
        'leaves chain(znorm(), adam) is adam.')


def _vector(x):
  return '(' + ', '.join(f'{float(v):.4g}' for v in x) + ')'


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--learning_rates', default='0.1,0.01,0.001',
                      help='comma-separated SGD learning rates of part 1')
  parser.add_argument('--seeds', type=int, default=3, help='seeds 0 to N-1 of part 1')
  parser.add_argument('--epochs', type=int, default=10, help='epochs of part 1, as Flax\'s MNIST')
  parser.add_argument('--batch_size', type=int, default=128)
  parser.add_argument('--adam_learning_rates', default=f'{OPTAX_TEST_LEARNING_RATE},0.01',
                      help='comma-separated Adam learning rates of part 2')
  parser.add_argument('--steps', type=int, default=10_000,
                      help='steps of part 2, as optax\'s test_optimization')
  args = parser.parse_args(argv)
  if min(args.seeds, args.epochs, args.batch_size, args.steps) < 1:
    raise SystemExit('--seeds, --epochs, --batch_size and --steps must be positive')

  device = jax.devices()[0]
  print(f'backend {jax.default_backend()}, device {device.device_kind}, JAX {jax.__version__}, '
        f'optax {optax.__version__}, Flax {flax.__version__}, Python {platform.python_version()}, '
        f'{os.cpu_count()} CPUs')
  learning_rate_table(learning_rates=[float(lr) for lr in args.learning_rates.split(',')],
                      seeds=range(args.seeds), epochs=args.epochs, batch_size=args.batch_size)
  tiny_problem_table(learning_rates=[float(lr) for lr in args.adam_learning_rates.split(',')],
                     steps=args.steps)


if __name__ == '__main__':
  main()
