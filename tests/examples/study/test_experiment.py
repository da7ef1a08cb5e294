"""The study's layer: its checks, the example records, and a core that knows nothing of it."""

import ast
import pathlib

import pytest

from examples import registry
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


def test_every_registered_example_gives_a_record_with_its_own_fields():
  assert set(registry.EXAMPLES) == {'image_classification', 'language_model', 'unet_segmentation'}
  for name in registry.EXAMPLES:
    example = registry.load(name)
    assert example.table_columns and example.curves
    assert example.fields is registry.fields(name)


def test_an_unregistered_example_is_refused_naming_the_flag():
  with pytest.raises(ValueError, match="^--config.example='speech' names no example; valid "
                                       'examples are: image_classification, language_model, '
                                       r'unet_segmentation\.$'):
    registry.load('speech')


@pytest.mark.parametrize('field, value, message', [
    ('learning_rate', float('inf'), r'^--config.learning_rate=inf must be a finite number > 0\.$'),
    ('learning_rate', float('nan'), r'^--config.learning_rate=nan must be a finite number > 0\.$'),
    ('learning_rate', 'fast', r"^--config.learning_rate='fast' must be a finite number > 0\.$"),
    ('method', 'sgd', "^--config.method: Unknown method 'sgd'; valid methods are: adam, znorm"),
    ('dataset', 'mnist', "^Unknown --config.dataset='mnist'; valid datasets are: digits, "),
    ('model', 'resnet7', "^--config.model: Unknown model 'resnet7'; valid models are: "),
])
def test_validation_names_the_flag(field, value, message):
  config = _config()
  with config.ignore_type():  # As Python code calling the study directly could set it.
    config[field] = value
  with pytest.raises(ValueError, match=message):
    experiment.validate_config(registry.load(config.example), config)


def test_run_called_directly_checks_the_declared_fields_first(tmp_path):
  # Checks after the declarations read the fields as numbers: a string stops before them.
  config = _config()
  with config.ignore_type():
    config.learning_rate = '1e-3'
  workdir = tmp_path / 'run'
  with pytest.raises(ValueError, match=r"^--config.learning_rate='1e-3' must be a finite number "):
    experiment.run(registry.load(config.example), config, str(workdir))
  assert not workdir.exists()


def test_a_sweep_seed_is_checked_under_its_own_flag():
  config = _config()
  config.sweep.seeds = (0, -1)
  with pytest.raises(ValueError, match=r'^--config.sweep.seeds=\(0, -1\) must be a list, each item '
                                       'a non-negative integer'):
    experiment.validate_config(registry.load(config.example), config)


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
