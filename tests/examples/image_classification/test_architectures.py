"""The paper's other Table 1 architectures (DenseNet, MobileNetV2, VGG-16, Xception) and sweeps.

Sizes are checked against the reference implementations' published parameter
counts, built at their ImageNet configuration (stem, 1000 classes) with
``nnx.eval_shape``, so no parameter is materialized. The smoke tests use tiny
widths; the DenseNets still compile slowly (121 and 169 layers).
"""

import functools
import os

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from examples.image_classification import input_pipeline
from examples.image_classification import layers
from examples.image_classification import models
from examples.image_classification.configs import cifar10_table1
from examples.image_classification.configs import digits_skip_study
from examples.image_classification.configs import pcam_table2
from examples.image_classification.configs import tiny
from examples.image_classification.example import EXAMPLE
from examples.image_classification.task import classification_metrics
from examples.study import experiment
from examples.study import methods
from examples.study import report
from examples.study.sweep import RunResult
from tests.examples.saved import final_state

NEW_MODELS = tuple(models.ARCHITECTURES)
TINY_WIDTH = {'densenet121': 2, 'densenet169': 2, 'mobilenetv2': 4, 'vgg16': 4, 'xception': 4}
BN_MOMENTUM, BN_AXIS = 0.8, 'devices'

REFERENCE_PARAMETERS = {
    # torchvision 0.2x, `<Model>_Weights.IMAGENET1K_V1.meta['num_params']`, as published on
    # https://pytorch.org/vision/stable/models/generated/torchvision.models.<name>.html
    'densenet121': (7_978_856, 'torchvision densenet121'),
    'densenet169': (14_149_480, 'torchvision densenet169'),
    'mobilenetv2': (3_504_872, 'torchvision mobilenet_v2'),
    'vgg16': (138_365_992, 'torchvision vgg16_bn'),
    # Keras `keras.applications.Xception(weights=None).summary()`: "Total params: 22,910,480,
    # Trainable params: 22,855,952, Non-trainable params: 54,528" (the last are BatchNorm moving
    # means and variances, nnx BatchStat, which count_params leaves out).
    'xception': (22_855_952, 'Keras Xception, trainable'),
}

# The only differences the small-image variants may have from the reference ones, at 1000
# classes and 3 input channels: the parameters whose shapes change, and the count change.
_VGG_IMAGENET_HEAD = 512 * 7 * 7 * 4096 + 4096 + 4096 * 4096 + 4096 + 4096 * 1000 + 1000
SMALL_IMAGE_DIFFERENCES = {
    # 3x3 stem convolution instead of 7x7 (64 channels); stride 1 and no max-pool.
    'densenet121': ({('stem', 'conv', 'kernel')}, -(7 * 7 - 3 * 3) * 3 * 64),
    'densenet169': ({('stem', 'conv', 'kernel')}, -(7 * 7 - 3 * 3) * 3 * 64),
    # Stride-1 stem: same parameters.
    'mobilenetv2': (set(), 0),
    # Pooled 512 -> 1000 classifier instead of the 7x7 x 512 -> 4096 -> 4096 -> 1000 head.
    'vgg16': ({('hidden', 0, 'kernel'), ('hidden', 0, 'bias'), ('hidden', 1, 'kernel'),
               ('hidden', 1, 'bias'), ('classifier', 'kernel')},
              512 * 1000 + 1000 - _VGG_IMAGENET_HEAD),
    # Stride-1, padded stem: same parameters.
    'xception': (set(), 0),
}


def _as_refs(node, only=...):
  """``node`` with its Variables (those in ``only``) held as refs, for updating them in a trace.

  Updating a plain Variable in a trace reads the new value's ``sharding``; for a tracer, jax
  then builds an error message that walks the whole jaxpr traced so far, so tracing time grew
  quadratically with a model's depth (DenseNet-169 at width 2: building it took 8 s instead
  of 1, its loss and gradient 30 s instead of 7). The values are the same, bit for bit. Flax
  versions without ``nnx.with_vars`` get ``node`` as it is.
  """
  if not hasattr(nnx, 'with_vars'):
    return node
  return nnx.with_vars(node, ref=True, only=only)


def _rngs():
  """``nnx.Rngs(0)``, whose counters (updated by every draw) are refs; for use in a trace."""
  return _as_refs(nnx.Rngs(0))


@functools.cache
def _abstract(name, small_images):
  """The full-size model with 1000 classes, as shapes only (cached: the DenseNets take a second)."""
  return nnx.eval_shape(lambda: models.ARCHITECTURES[name](
      num_classes=1000, in_channels=3, small_images=small_images, bn_momentum=BN_MOMENTUM,
      batch_norm_axis_name=BN_AXIS, rngs=_rngs()))


def _param_shapes(model):
  return {path: variable.shape for path, variable in nnx.to_flat_state(nnx.state(model, nnx.Param))}


@pytest.mark.parametrize('name', [
    pytest.param(name, marks=pytest.mark.slow) if name == 'densenet169' else name
    for name in NEW_MODELS
])
def test_parameter_count_matches_the_reference_implementation(name):
  count, source = REFERENCE_PARAMETERS[name]
  assert models.count_params(_abstract(name, small_images=False)) == count, source


@pytest.mark.parametrize('name', SMALL_IMAGE_DIFFERENCES)
def test_small_image_variant_differs_only_in_stem_or_head(name):
  reference = _param_shapes(_abstract(name, small_images=False))
  small = _param_shapes(_abstract(name, small_images=True))
  changed = {path for path in reference.keys() | small.keys()
             if reference.get(path) != small.get(path)}
  expected_paths, expected_change = SMALL_IMAGE_DIFFERENCES[name]
  assert changed == expected_paths
  assert sum(np.prod(s) for s in small.values()) - sum(np.prod(s) for s in reference.values()) \
      == expected_change


@pytest.mark.parametrize('name, depth', [
    # The name's number counts the weighted layers: convolutions and fully connected layers,
    # not projection shortcuts; a separable convolution (depthwise + pointwise) counts once,
    # which gives Chollet's "36 convolutional layers" for Xception.
    ('densenet121', 121), ('densenet169', 169), ('vgg16', 16), ('xception', 36 + 1),
])
def test_depth_counts_the_weighted_layers(name, depth):
  kernels = [path for path in _param_shapes(_abstract(name, small_images=False))
             if path[-1] == 'kernel' and 'projection' not in path and 'depthwise' not in path]
  assert len(kernels) == depth


@pytest.mark.parametrize('name', NEW_MODELS)
def test_every_batch_norm_follows_the_model_settings(name):
  model = _abstract(name, small_images=False)
  norms = [m for _, m in nnx.iter_graph(model) if isinstance(m, nnx.BatchNorm)]
  assert norms
  assert {(m.momentum, m.axis_name) for m in norms} == {(BN_MOMENTUM, BN_AXIS)}


def test_vgg_has_batch_norm_after_every_convolution():
  model = _abstract('vgg16', small_images=True)
  convs = [m for _, m in nnx.iter_graph(model) if isinstance(m, nnx.Conv)]
  assert len(convs) == 13
  assert all(isinstance(block, layers.ConvBN) for stage in model.stages for block in stage)


def test_adaptive_average_pool_uses_pytorch_windows():
  x = np.arange(5 * 4, dtype=np.float32).reshape(1, 5, 4, 1)
  # PyTorch's AdaptiveAvgPool2d(3) windows: rows [0, 2), [1, 4), [3, 5) of 5; columns
  # [0, 2), [1, 3), [2, 4) of 4.
  rows, columns = [(0, 2), (1, 4), (3, 5)], [(0, 2), (1, 3), (2, 4)]
  expected = np.array([[x[0, r0:r1, c0:c1, 0].mean() for c0, c1 in columns] for r0, r1 in rows])
  np.testing.assert_allclose(layers.adaptive_average_pool(x, 3)[0, ..., 0], expected, rtol=1e-6)
  one_pixel = np.full((2, 1, 1, 3), 7.0, np.float32)
  np.testing.assert_array_equal(layers.adaptive_average_pool(one_pixel, 7),
                                np.full((2, 7, 7, 3), 7.0))


def test_plain_names_build_cifar_resnets_without_shortcuts():
  kwargs = {'num_classes': 10, 'in_channels': 1, 'width': 4}
  plain = nnx.eval_shape(lambda: models.create_model('plain20', rngs=nnx.Rngs(0), **kwargs))
  resnet = nnx.eval_shape(lambda: models.create_model('resnet20', skip_connections=False,
                                                      rngs=nnx.Rngs(0), **kwargs))
  assert all(not block.skip_connection for block in plain.blocks)
  assert _param_shapes(plain) == _param_shapes(resnet)


@pytest.mark.parametrize('name', ['densenet121', 'vgg16'])
def test_skip_connections_false_is_refused_outside_cifar_resnets(name):
  with pytest.raises(ValueError, match='only supported by CIFAR ResNets'):
    models.create_model(name, num_classes=10, in_channels=1, width=2, skip_connections=False,
                        rngs=nnx.Rngs(0))


@pytest.mark.parametrize('width', [0, -3])
def test_bad_width_names_the_flag(width):
  with pytest.raises(ValueError, match=f'--config.width={width} must be a positive integer'):
    models.create_model('xception', num_classes=10, in_channels=1, width=width, rngs=nnx.Rngs(0))


# Smoke tests at tiny widths. They are compile-bound: the models run in milliseconds, but the
# DenseNets' 121 and 169 layers (364 and 508 parameter leaves) take minutes to compile.
# So every model is initialized once per run (eagerly), each function below is compiled once
# per model and input shape, the stepped models reuse the loss-and-gradient function already
# compiled for the initial one, and the optimizers step all leaves as one vector (with the
# gradient transforms that take statistics per leaf applied to the leaves of each shape
# together).

COMPILER_OPTIONS = {'xla_backend_optimization_level': 0, 'xla_cpu_use_fusion_emitters': False,
                    'xla_cpu_parallel_codegen_split_count': 1}
"""LLVM at -O0, XLA:CPU's older fusion emitters, and each program's LLVM module in one part.

For the forward passes, gradients and steps. DenseNet-169's loss and gradient compile in 18 s
instead of 41 with the first two; the third (XLA:CPU splits the module for parallel code
generation otherwise) takes another 15% off: 17-18 s instead of 20-22 CPU seconds.
"""


@functools.cache
def _tiny(name, directory):
  """``(graphdef, state)`` of a tiny-width model for the digits (1 channel, 10 classes).

  Initialized only once per run: the forward-pass and training tests share it. xdist may run
  them in different workers, so the state is saved in ``directory``, which the workers share;
  a worker that finds it there only traces the model, for its structure (1 s instead of 15 for
  DenseNet-169).

  The model is built eagerly, as a script builds it: each initializer's random draw is then
  compiled once per shape, and a worker keeps it for the next model (the two DenseNets share
  most of their shapes). Compiling all of a model's initializers as one program, as
  ``nnx.jit`` would, took longer. CPU seconds, eager against one program, the models in this
  order in one process: DenseNet-121 12 against 13, then DenseNet-169 7.5 against 20,
  Xception 4 against 6.5; with XLA:CPU's older fusion emitters for the whole process, 6
  against 13, 4.5 against 23 and 3 against 6.
  """
  graphdefs = []

  def init(rngs):
    graphdef, state = nnx.split(models.create_model(name, num_classes=10, in_channels=1,
                                                    width=TINY_WIDTH[name], rngs=rngs))
    graphdefs.append(graphdef)
    return state

  path = directory / f'tiny_{name}.npz'
  if path.exists():
    structure = jax.tree.structure(jax.eval_shape(lambda: init(_rngs())))
    with np.load(path) as saved:
      leaves = [jnp.asarray(saved[f'arr_{i}']) for i in range(len(saved.files))]
    return graphdefs[0], jax.tree.unflatten(structure, leaves)
  state = init(nnx.Rngs(0))
  # Written whole, then renamed: no worker reads a partial file.
  partial = directory / f'tiny_{name}.{os.getpid()}.npz'
  np.savez(partial, *jax.tree.leaves(state))
  os.replace(partial, path)
  return graphdefs[0], state


@functools.partial(jax.jit, static_argnums=0, compiler_options=COMPILER_OPTIONS)
def _eval_logits(graphdef, state, images):
  model = nnx.merge(graphdef, state)
  model.eval()
  return model(images)


@functools.partial(jax.jit, static_argnums=0, compiler_options=COMPILER_OPTIONS)
def _train_loss_and_grads(graphdef, params, rest, batch):
  """The training loss (batch statistics) of the model with ``params``, and its gradient."""
  model = nnx.merge(graphdef, params, rest)
  model.train()
  # BatchNorm updates its running statistics; they are discarded.
  model = _as_refs(model, only=nnx.BatchStat)

  def loss_fn(model):
    return classification_metrics(model(batch['image']), batch)[0]

  return nnx.value_and_grad(loss_fn)(model)


def _one_step(method, params, grads):
  """``params`` after one step of ``method`` (learning rate 1e-3) from a fresh optimizer state."""
  optimizer = methods.make_optimizer(method, 1e-3)
  updates, _ = optimizer.update(grads, optimizer.init(params), params)
  return optax.apply_updates(params, updates)


PER_LEAF_TRANSFORMS = ('znorm', 'znorm_pooled', 'znorm_table', 'znorm_masked', 'gc')
"""The methods whose gradient transform takes statistics per leaf (ZNorm, Gradient Centralization).

The others' transforms act on all the leaves concatenated into one vector as on the tree:
none (Adam, AdamW), elementwise clipping, and global-norm clipping, whose norm is the
vector's. Adam and AdamW, which follow every transform, act element by element.
"""


def _one_step_per_method(params, grads):
  """Method -> ``params`` after one step of it, and method -> the gradients its transform gave
  Adam, from one compiled function for all methods.

  Each method is Adam (or AdamW) after a gradient transform (``methods.make_optimizer``
  chains ``methods.gradient_transform`` and ``methods.METHODS[name].adam``), and
  test_steps_by_shape_match_whole_tree_steps checks the steps below against whole-tree steps
  of ``make_optimizer``. The leaves are stacked by shape on the host, and the stacks
  concatenated into one vector. Adam and the transforms that need no leaf of their own step
  that vector; those of ``PER_LEAF_TRANSFORMS`` act on each stack's leaves under ``vmap``.
  DenseNet-169's 508 leaves have 106 shapes: whole-tree steps compiled in 37 s for six
  methods, whole optimizers vmapped over the stacks in 27 s for the eight, this in 8 s.
  """
  leaves, treedef = jax.tree.flatten(params)
  leaves = [np.asarray(leaf) for leaf in leaves]
  grad_leaves = [np.asarray(leaf) for leaf in treedef.flatten_up_to(grads)]
  assert len({leaf.dtype for leaf in leaves + grad_leaves}) == 1  # One vector holds them all.
  groups = {}
  for index, leaf in enumerate(leaves):
    groups.setdefault(leaf.shape, []).append(index)
  groups = list(groups.values())

  def stacked(trees):
    return [np.stack([trees[i] for i in group]) for group in groups]

  stacks = stacked(leaves)
  ends = np.cumsum([stack.size for stack in stacks])

  def unstacked(vector):
    new_leaves = [None] * len(leaves)
    for group, stack, part in zip(groups, stacks, np.split(np.asarray(vector), ends[:-1])):
      for index, leaf in zip(group, part.reshape(stack.shape)):
        new_leaves[index] = leaf
    return treedef.unflatten(new_leaves)

  stepped, transformed = _steps(np.concatenate([stack.ravel() for stack in stacks]),
                                stacked(grad_leaves))
  return ({method: unstacked(vector) for method, vector in stepped.items()},
          {method: unstacked(vector) for method, vector in transformed.items()})


@functools.partial(jax.jit, compiler_options=COMPILER_OPTIONS)
def _steps(vector, grad_stacks):
  """Method -> ``vector`` (the stacks of leaves, concatenated) after one step of it, and
  method -> the transformed gradient vector that step's Adam took.

  The step is that of ``_one_step``: learning rate 1e-3, from a fresh optimizer state.
  """

  def transformed(transform, gradient):
    return transform.update(gradient, transform.init(gradient))[0]

  grad_vector = jnp.concatenate([stack.ravel() for stack in grad_stacks])
  stepped, transformed_gradients = {}, {}
  for method in methods.METHODS:
    transform = methods.gradient_transform(method)
    if method in PER_LEAF_TRANSFORMS:
      each_leaf = jax.vmap(functools.partial(transformed, transform))
      gradient = jnp.concatenate([each_leaf(stack).ravel() for stack in grad_stacks])
    else:
      gradient = transformed(transform, grad_vector)
    adam = methods.METHODS[method].adam(1e-3)
    updates, _ = adam.update(gradient, adam.init(vector), vector)
    stepped[method] = optax.apply_updates(vector, updates)
    transformed_gradients[method] = gradient
  return stepped, transformed_gradients


@pytest.fixture(scope='module')
def digits_batch():
  config = tiny.get_config()
  config.image_size = 16
  config.batch_size = 32
  batch = next(iter(input_pipeline.load(config).make_source(config).train_batches(0)))
  return {key: jnp.asarray(value) for key, value in batch.items()}


@pytest.mark.slow
# Model by model: both sizes of a model run next to each other, on one worker as a rule.
@pytest.mark.parametrize('size, name', [(size, name) for name in NEW_MODELS for size in (32, 16)])
def test_forward_pass(name, size, shared_tmp_path):
  images = np.random.default_rng(size).standard_normal((2, size, size, 1), np.float32)
  logits = _eval_logits(*_tiny(name, shared_tmp_path), images)
  assert logits.shape == (2, 10)
  assert np.all(np.isfinite(logits))


@pytest.mark.slow
@pytest.mark.parametrize('name', NEW_MODELS)
def test_one_training_step_per_method_lowers_the_loss_on_digits(name, digits_batch,
                                                                shared_tmp_path):
  graphdef, state = _tiny(name, shared_tmp_path)
  params, rest = nnx.split_state(state, nnx.Param, ...)
  loss, grads = _train_loss_and_grads(graphdef, params, rest, digits_batch)
  assert all(np.all(np.isfinite(g)) for g in jax.tree.leaves(grads))
  for method, stepped in _one_step_per_method(params, grads)[0].items():
    # The same shapes as `params`: the compiled function is reused, not compiled again.
    new_loss, _ = _train_loss_and_grads(graphdef, stepped, rest, digits_batch)
    assert new_loss < loss, (method, float(new_loss), float(loss))


def test_steps_by_shape_match_whole_tree_steps():
  rng = np.random.default_rng(0)
  shapes = {'conv': (3, 3, 2, 4), 'conv2': (3, 3, 2, 4), 'dense': (4, 3), 'dense2': (4, 3),
            'bias': (4,), 'bias2': (4,), 'scale': (3,), 'single': (1,)}
  params = {key: rng.standard_normal(shape, np.float32) for key, shape in shapes.items()}
  # Gradients with means and spreads that differ from leaf to leaf.
  grads = {key: (i + 1) * rng.standard_normal(shape, np.float32) + i
           for i, (key, shape) in enumerate(shapes.items())}
  stepped, transformed = _one_step_per_method(params, grads)
  assert stepped.keys() == methods.METHODS.keys()
  assert set(PER_LEAF_TRANSFORMS) < methods.METHODS.keys()  # Both kinds of transform are checked.
  whole_tree_step = jax.jit(_one_step, static_argnums=0)
  for method in methods.METHODS:
    chex.assert_trees_all_close(stepped[method], whole_tree_step(method, params, grads),
                                rtol=1e-6, custom_message=method)
    # Adam's first step is about -lr * sign(g), blind to how a transform scales each leaf
    # (clipping by one global norm or leaf by leaf): compare what Adam was given too.
    transform = methods.gradient_transform(method)
    whole_tree = transform.update(grads, transform.init(grads))[0]
    chex.assert_trees_all_close(transformed[method], whole_tree, rtol=1e-5, atol=1e-6,
                                custom_message=method)


@pytest.fixture
def most_optimizations_disabled():
  """XLA optimizes little while the test runs (LLVM at -O0, as `COMPILER_OPTIONS`).

  For the training loop's functions, which the test cannot pass compiler options to; above
  all the eager initializers, whose threefry random bits take 1-4 s to compile per kernel shape
  otherwise. The test takes half the time. Every parallel mode runs under the same setting.
  What it compiled is dropped after it: -O0 code can differ in the last bit (random normals
  do), and later tests of this process must get what a fresh process would.
  """
  previous = jax.config.read('jax_disable_most_optimizations')
  jax.config.update('jax_disable_most_optimizations', True)
  yield
  jax.config.update('jax_disable_most_optimizations', previous)
  jax.clear_caches()


@pytest.mark.slow
@pytest.mark.usefixtures('most_optimizations_disabled')
def test_parallel_modes_train_vgg16_like_one_device(config, tmp_path):
  assert len(jax.devices('cpu')) == 8
  config.model, config.width, config.method = 'vgg16', 4, 'znorm'
  config.num_epochs = 1
  config.batch_size = 128  # 11 steps; 16 examples per device.
  results = {}
  for mode in ('none', 'sharded', 'pmap'):
    config.parallel = mode
    history = experiment.train_and_evaluate(EXAMPLE, config, str(tmp_path / mode))
    results[mode] = ([[record['train_loss'], record['train_accuracy']] for record in history],
                     _determined_by_the_loss(final_state(tmp_path / mode)))
  reference_history, reference_state = results['none']
  for mode in ('sharded', 'pmap'):
    history, state = results[mode]
    chex.assert_trees_all_close(state, reference_state, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(history, reference_history, rtol=1e-4, err_msg=mode)


def _determined_by_the_loss(state):
  """Leaves out VGG's convolution biases (and their moments) and BatchNorm's running statistics.

  BatchNorm follows each convolution, so the biases' exact gradient is zero. What they get is
  rounding noise, which ZNorm scales to unit variance, so they take steps that differ from mode
  to mode; the running means track them, and with them the evaluation metrics. The training
  loss, and so every other parameter, does not depend on them.
  """

  def keep(path, leaf):
    name = jax.tree_util.keystr(path)
    conv_bias = "['conv']" in name and name.endswith("['bias']")
    running_statistic = name.endswith(("['mean']", "['var']"))
    return None if conv_bias or running_statistic else leaf

  return jax.tree_util.tree_map_with_path(keep, state)


# The sweep configs.

PAPER_TABLE1_MODELS = ('resnet56', 'resnet101', 'resnet152', 'densenet121', 'densenet169',
                       'mobilenetv2', 'vgg16', 'xception')
PAPER_METHODS = ('adam', 'gc', 'clip', 'wd1e-3', 'wd1e-4', 'znorm')  # The paper's row order.


@pytest.mark.parametrize('config_module, dataset, models_, epochs', [
    (cifar10_table1, 'cifar10', PAPER_TABLE1_MODELS, 100),
    (pcam_table2, 'patch_camelyon', ('resnet56', 'resnet101', 'resnet152'), 50),
])
def test_paper_configs_sweep_the_papers_tables(config_module, dataset, models_, epochs):
  config = config_module.get_config()
  experiment.validate_config(EXAMPLE, config)  # Every model and method name is accepted.
  assert config.dataset == dataset
  assert tuple(config.sweep.models) == models_
  assert tuple(config.sweep.methods) == PAPER_METHODS
  assert len(config.sweep.seeds) >= 3
  assert (config.num_epochs, config.batch_size, config.learning_rate) == (epochs, 256, 1e-3)
  assert not config.augment and config.width is None  # As in the paper.
  assert config.resume  # Rerunning continues the sweep and skips finished runs.


def test_skip_study_config():
  config = digits_skip_study.get_config()
  experiment.validate_config(EXAMPLE, config)
  assert config.dataset == 'digits'
  assert {'resnet20', 'plain20', 'resnet56', 'plain56', 'vgg16', 'densenet121'} <= set(
      config.sweep.models)
  assert tuple(config.sweep.methods) == ('adam', 'znorm', 'gc')
  assert len(set(config.sweep.seeds)) >= 5
  assert config.skip_connections  # The plain<n> models drop the shortcuts, resnet<n> keep them.
  assert config.resume


def test_table1_report_has_the_papers_layout():
  config = cifar10_table1.get_config()
  results = [RunResult(model, method, seed, [{'test_accuracy': 0.5, 'train_loss': 0.1}])
             for model in config.sweep.models for method in config.sweep.methods
             for seed in config.sweep.seeds]
  lines = report.markdown_table(results, EXAMPLE.table_columns, config.dataset).splitlines()
  assert lines[0] == '| Dataset | Model | Method | Test Accuracy | Train Loss | Seeds |'
  rows = [line.split(' | ') for line in lines[2:]]
  assert [(row[1], row[2]) for row in rows] == [
      (model, methods.DESCRIPTIONS[method])
      for model in PAPER_TABLE1_MODELS for method in PAPER_METHODS]
