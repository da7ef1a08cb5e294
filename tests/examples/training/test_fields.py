"""Every config field is declared once and refused, out of range, with one line naming its flag."""

import importlib
import os
import re
import subprocess
import sys

import pytest

from examples.image_classification import example as image_classification
from examples.image_classification.configs import tiny as image_classification_tiny
from examples.language_model import models as language_model_models
from examples.language_model.configs import default as language_model_defaults
from examples.study import defaults as study_defaults
from examples.study import experiment
from examples.study import sweep
from examples.training import cli
from examples.training import defaults as training_defaults
from examples.training import fields
from examples.training.fields import Field
from tests.examples.processes import REPO

EXAMPLES = ('image_classification', 'language_model', 'unet_segmentation')


def _declarations(example: str) -> dict[str, Field]:
  example_defaults = importlib.import_module(f'examples.{example}.configs.default')
  return {**training_defaults.FIELDS, **study_defaults.FIELDS, **example_defaults.FIELDS}


def _bad_values(field: Field) -> list:
  """Values the declaration refuses: out of each bound, not a choice, of another kind, None."""
  values = [None] if not field.optional else []
  values += [v for v in (field.minimum, field.above) if v is not None for v in (v - 1, v - 0.5)]
  values += [v for v in (field.maximum, field.below) if v is not None for v in (v + 1, v + 0.5)]
  if field.choices is not None:
    values.append('not_a_choice')
  values.append(3 if field.kind in (bool, str) else 'three')
  if field.kind is float:
    values += [float('nan'), float('inf')]
  if field.kind is int:
    values.append(True)
  return [(v,) if field.sequence else v for v in values]


@pytest.mark.parametrize('example', EXAMPLES)
def test_every_field_of_every_example_is_declared(example):
  config = importlib.import_module(f'examples.{example}.configs.default').get_config()
  assert fields.undeclared(config, _declarations(example)) == []
  fields.check(config, _declarations(example))  # The defaults are accepted.


@pytest.mark.parametrize('example', EXAMPLES)
def test_every_field_refuses_a_bad_value_with_one_line_naming_its_flag(example):
  declarations = _declarations(example)
  tried = 0
  for name, field in declarations.items():
    for value in _bad_values(field):
      config = importlib.import_module(f'examples.{example}.configs.default').get_config()
      parent, _, key = name.rpartition('.')
      with config.ignore_type():  # As a config file or a placeholder field could set it.
        (config[parent] if parent else config)[key] = value
      with pytest.raises(ValueError) as refused:
        fields.check(config, declarations)
      message = str(refused.value)
      assert message.startswith(f'--config.{name}=') and f' must be {field.describe()}.' in message
      assert '\n' not in message
      tried += 1
  assert tried > 3 * len(declarations)


@pytest.mark.parametrize('example', EXAMPLES)
def test_train_and_evaluate_called_directly_refuses_every_bad_field_before_writing(example,
                                                                                  tmp_path):
  record = importlib.import_module(f'examples.{example}.example').EXAMPLE
  workdir = tmp_path / 'run'
  for name, field in _declarations(example).items():
    config = importlib.import_module(f'examples.{example}.configs.default').get_config()
    parent, _, key = name.rpartition('.')
    with config.ignore_type():
      (config[parent] if parent else config)[key] = _bad_values(field)[0]
    with pytest.raises(ValueError, match=rf'^--config\.{re.escape(name)}=.* must be ') as refused:
      experiment.train_and_evaluate(record, config, str(workdir))
    assert '\n' not in str(refused.value)
    assert not workdir.exists()


@pytest.mark.parametrize('example, model', [
    ('image_classification', 'resnet7'), ('language_model', 'huge'),
    ('unet_segmentation', 'vnet')])
def test_an_unknown_model_or_method_is_refused_naming_its_flag(example, model):
  record = importlib.import_module(f'examples.{example}.example').EXAMPLE
  config = importlib.import_module(f'examples.{example}.configs.default').get_config()
  config.sweep.models = (sweep.grid(config)[0][0], model)
  with pytest.raises(ValueError, match=rf"^--config\.sweep\.models: Unknown model '{model}'; "
                                       'valid models are: '):
    experiment.validate_config(record, config)
  config.sweep.models = ()
  config.model = model
  with pytest.raises(ValueError, match=rf"^--config\.model: Unknown model '{model}'; valid "):
    experiment.validate_config(record, config)
  config = importlib.import_module(f'examples.{example}.configs.default').get_config()
  for flag, value in (('method', 'sgdx'), ('sweep.methods', ('adam', 'sgdx'))):
    changed = config.copy_and_resolve_references()
    parent, _, key = flag.rpartition('.')
    (changed[parent] if parent else changed)[key] = value
    with pytest.raises(ValueError, match=rf"^--config\.{flag}: Unknown method 'sgdx'; valid "):
      experiment.validate_config(record, changed)


def test_the_language_models_dtypes_are_those_its_field_declares():
  assert language_model_defaults.FIELDS['dtype'].choices == tuple(language_model_models.DTYPES)


@pytest.mark.parametrize('field, text', [
    (Field(int, minimum=1, optional=True), 'positive (an integer >= 1), or None'),
    (Field(int, minimum=0), 'a non-negative integer'),
    (Field(float, minimum=0, below=1), 'a finite number >= 0 and < 1'),
    (Field(float, above=0), 'a finite number > 0'),
    (Field(str, choices=('stop', 'skip')), 'one of stop, skip'),
    (Field(int, minimum=0, sequence=True), 'a list, each item a non-negative integer'),
])
def test_what_a_field_accepts_reads_as_the_message_says(field, text):
  assert field.describe() == text


@pytest.mark.parametrize('field, value, accepted', [
    (Field(int, minimum=1, optional=True), None, True),
    (Field(int, minimum=1, optional=True), 0, False),
    (Field(int, minimum=1), True, False),  # A bool is an int to Python, not to the flag.
    (Field(float, minimum=0, below=1), 0.9, True),
    (Field(float, minimum=0, below=1), 1.0, False),
    (Field(float, above=0), 1, True),  # An integer is a number.
    (Field(float, above=0), float('nan'), False),
    (Field(int, minimum=0, sequence=True), (0, 1), True),
    (Field(int, minimum=0, sequence=True), (0, -1), False),
])
def test_a_field_accepts_what_it_declares(field, value, accepted):
  assert field.accepts(value) is accepted


def test_the_command_line_refuses_with_one_line_and_leaves_nothing(tmp_path):
  # This width trained width 16 and saved width 0; -4 was a traceback after the compile cache.
  result = subprocess.run(
      [sys.executable, '-m', 'examples.main', f'--workdir={tmp_path}/run',
       '--config=examples/image_classification/configs/tiny.py', '--config.width=0'],
      cwd=REPO, capture_output=True, text=True, timeout=300, check=False)
  assert result.returncode == 1
  assert result.stderr == 'error: --config.width=0 must be positive (an integer >= 1), or None.\n'
  assert not (tmp_path / 'run').exists()


def test_a_refusal_that_needs_the_data_leaves_no_work_directory(tmp_path):
  config = image_classification_tiny.get_config()
  config.update(batch_size=100_000, platform='cpu', compilation_cache=False)
  workdir = str(tmp_path / 'run')
  refused = pytest.raises(ValueError, match=r'^--config.batch_size=100000 is larger than the 1437 ')
  with refused, cli.workdir_removed_if_left_empty(workdir):
    # Made the work directory, then loaded the data.
    experiment.run(image_classification.EXAMPLE, config, workdir)
  assert not os.path.exists(workdir)
