"""The study's layer: its checks, the example records, and a core that knows nothing of it."""

import ast
import pathlib

import pytest

from examples.study import defaults
from examples.study import experiment
from examples.study import sweep
from examples.training import errors
from examples.training import workdir_lock
from tests.examples.processes import REPO

CORE = pathlib.Path(REPO) / 'examples' / 'training'


def _config(**overrides):
  config = defaults.get_config()
  config.update(example='image_classification', dataset='digits', model='resnet8',
                platform='cpu', parallel='none')
  config.update(overrides)
  return config


def test_every_example_gives_a_record():
  assert {'image_classification', 'unet_segmentation'} <= set(experiment.available_examples())
  for name in experiment.available_examples():
    example = experiment.load_example(name)
    assert example.table_columns and example.curves


@pytest.mark.parametrize('field, value, message', [
    ('example', 'speech', "--config.example='speech' names no example; valid examples are: .*"),
    ('learning_rate', float('inf'), '--config.learning_rate=inf must be a finite positive'),
    ('learning_rate', float('nan'), '--config.learning_rate=nan must be a finite positive'),
    ('method', 'sgd', "Unknown method 'sgd'; valid methods are: adam, znorm"),
])
def test_validation_names_the_flag(field, value, message):
  config = _config(**{field: value})
  with pytest.raises(ValueError, match=message):
    experiment.validate_config(experiment.load_example(config.example), config)


def test_a_sweep_seed_is_checked_under_its_own_flag():
  config = _config()
  config.sweep.seeds = (0, -1)
  with pytest.raises(ValueError, match='^--config.sweep.seeds=-1 must be a non-negative integer'):
    experiment.validate_config(experiment.load_example(config.example), config)


def test_any_sweep_list_makes_a_sweep():
  config = _config()
  assert not experiment.is_sweep(config)
  for field in ('models', 'methods', 'seeds'):
    one = _config()
    one.sweep[field] = (0,)
    assert experiment.is_sweep(one), field


def test_a_second_sweep_on_a_directory_in_use_is_refused(tmp_path):
  def run_one(run_config, run_dir):
    raise AssertionError('no run may start')

  with workdir_lock.WorkdirLock(str(tmp_path)), pytest.raises(
      errors.WorkdirInUseError, match=f'--workdir={tmp_path} is in use'):
    sweep.run_sweep(run_one, _config(), str(tmp_path))


def _imports(path: pathlib.Path) -> set[str]:
  tree = ast.parse(path.read_text())
  names = set()
  for node in ast.walk(tree):
    if isinstance(node, ast.Import):
      names.update(alias.name for alias in node.names)
    elif isinstance(node, ast.ImportFrom) and node.module:
      names.add(node.module)
  return names


@pytest.mark.parametrize('path', sorted(CORE.glob('*.py')), ids=lambda p: p.name)
def test_the_core_imports_neither_the_study_nor_an_example(path):
  outside = {name for name in _imports(path)
             if name.startswith('examples.') and not name.startswith('examples.training')}
  assert not outside


@pytest.mark.parametrize('path', sorted(CORE.glob('*.py')), ids=lambda p: p.name)
def test_the_core_names_no_method_dataset_or_images(path):
  # The library's names are no method's.
  code = path.read_text().lower().replace('znorm_optax', '').replace('znorm-optax', '')
  for word in ('znorm', 'adam', 'cifar', 'digits', 'image', 'config.method', 'methods'):
    assert word not in code, word
