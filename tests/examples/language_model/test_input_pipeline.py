"""Text as byte windows: the standard library's split by file, the budgets, batches, tfds (mocked)."""

import os
import random
import subprocess
import sys
import sysconfig
import zlib
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from examples.language_model import input_pipeline
from examples.language_model.configs import tiny
from examples.language_model.example import EXAMPLE
from examples.study import experiment
from examples.training import datasets
from tests.examples.processes import REPO

STDLIB = Path(sysconfig.get_paths()['stdlib'])
SEPARATOR = b'\0'


def _tiny_config(**overrides):
  config = tiny.get_config()
  config.platform = 'cpu'  # The 8 simulated CPU devices, also on a machine with an accelerator.
  config.update(overrides)
  return config


def _fake_library(root: Path) -> dict[str, bytes]:
  """A standard library of small ``.py`` files, each with text no other file holds.

  Returns the contents of the files that belong to the library, by relative path.
  """
  library = {}
  for i in range(30):
    relative = f'mod_{i}.py' if i % 2 else f'pkg/sub/part_{i}.py'
    library[relative] = f'# file {i}\ndef f_{i}():\n  return {i * 7919}\n'.encode()
  # Installed packages and bytecode caches are not the standard library; nor is a non-.py file.
  outside = {'site-packages/numpy/core.py': b'# numpy\n', 'pkg/dist-packages/six.py': b'# six\n',
             '__pycache__/cached.py': b'# cache\n', 'pkg/README.txt': b'not source\n'}
  for relative, content in {**library, **outside}.items():
    (root / relative).parent.mkdir(parents=True, exist_ok=True)
    (root / relative).write_bytes(content)
  return library


def _documents(text: bytes) -> list[bytes]:
  """The files of a split's text, in order (each ends with the separator)."""
  assert text.endswith(SEPARATOR) or not text
  return text.split(SEPARATOR)[:-1]


# --- python_stdlib: files, split, budgets. ---


def test_standard_library_files_leave_out_installed_packages(tmp_path):
  library = _fake_library(tmp_path)
  files = input_pipeline.standard_library_files(tmp_path)
  assert [f.relative_to(tmp_path).as_posix() for f in files] == sorted(
      library, key=lambda relative: tmp_path / relative)
  # This Python's own library holds site-packages (this environment's packages): left out too.
  real = input_pipeline.standard_library_files()
  assert real == sorted(real) and len(real) > 500
  relative_parts = [set(f.relative_to(STDLIB).parts) for f in real]
  assert not any(parts & {'site-packages', 'dist-packages', '__pycache__'}
                 for parts in relative_parts)
  assert STDLIB / 'json' / 'decoder.py' in real and all(f.suffix == '.py' for f in real)


def test_validation_is_one_file_in_ten_by_a_crc32_of_its_path():
  relative = [f.relative_to(STDLIB).as_posix() for f in input_pipeline.standard_library_files()]
  chosen = [input_pipeline.is_validation(path) for path in relative]
  # CRC-32 does not depend on PYTHONHASHSEED, unlike hash(): the split is the same everywhere.
  assert chosen == [zlib.crc32(path.encode()) % 10 == 0 for path in relative]
  # The same in a process whose str hashes differ.
  script = ('import sys; from examples.language_model import input_pipeline as p; '
            'print(*(int(p.is_validation(line)) for line in sys.stdin.read().split()))')
  other = subprocess.run(
      [sys.executable, '-c', script],
      input='\n'.join(relative), capture_output=True, text=True, check=True, cwd=REPO,
      env={**os.environ, 'PYTHONHASHSEED': '12345'})
  assert [bool(int(flag)) for flag in other.stdout.split()] == chosen
  assert 0.05 < np.mean(chosen) < 0.15


def test_split_is_by_file_disjoint_and_in_a_fixed_order(tmp_path):
  library = _fake_library(tmp_path)
  validation = {p for p in library if input_pipeline.is_validation(p)}
  assert validation and validation != set(library), 'the fake library must fill both splits'
  files = input_pipeline.standard_library_files(tmp_path)
  random.seed(123)  # A run's own seeding of the global generators changes nothing.
  np.random.seed(123)
  train_text, eval_text = input_pipeline.read_text(files, tmp_path, max_bytes=10**9)
  random.seed(456)
  np.random.seed(456)
  assert input_pipeline.read_text(files, tmp_path, max_bytes=10**9) == (train_text, eval_text)

  # Reference: every file once, whole, in the order random.Random(0) shuffles the sorted list.
  order = sorted(library, key=lambda relative: tmp_path / relative)
  random.Random(0).shuffle(order)
  assert _documents(train_text) == [library[p] for p in order if p not in validation]
  assert _documents(eval_text) == [library[p] for p in order if p in validation]
  for path in validation:  # No validation text is trained on.
    assert library[path] not in train_text


def test_read_text_stops_each_split_at_its_byte_budget(tmp_path):
  library = _fake_library(tmp_path)
  files = input_pipeline.standard_library_files(tmp_path)
  all_train, all_eval = map(_documents, input_pipeline.read_text(files, tmp_path, 10**9))
  budget = 100  # Several training files, and more than one validation file holds.
  assert sum(len(d) + 1 for d in all_train) > budget + 50
  train_text, eval_text = input_pipeline.read_text(files, tmp_path, budget)

  def first_files_reaching(documents):  # The fewest whole files, in order, with >= budget bytes.
    taken = []
    while documents and sum(len(d) + 1 for d in taken) < budget:
      taken.append(documents.pop(0))
    return taken

  expected_train = first_files_reaching(list(all_train))
  assert len(expected_train) < len(all_train)
  assert _documents(train_text) == expected_train
  assert _documents(eval_text) == first_files_reaching(list(all_eval))
  assert len(train_text) >= budget > len(train_text) - len(expected_train[-1]) - 1
  assert set(library.values()) >= set(_documents(train_text) + _documents(eval_text))


@pytest.mark.parametrize('context, max_bytes, count', [(6, 30, 4), (6, 1000, 6), (6, 6, 0),
                                                       (0, 3, 3)])
def test_windows_are_consecutive_non_overlapping_slices(context, max_bytes, count):
  text = b'The quick brown fox jumps over the lazy dog.'  # 44 bytes.
  got = input_pipeline.windows(text, context, max_bytes)
  width = context + 1
  expected = np.array([list(text[i * width:(i + 1) * width]) for i in range(count)],
                      np.uint8).reshape(count, width)
  assert got.dtype == np.uint8
  np.testing.assert_array_equal(got, expected)


def test_load_python_stdlib_windows_and_description():
  config = _tiny_config()
  dataset = input_pipeline.load(config)
  # tiny: 816 training bytes (48 windows of 17) and 204 validation bytes (12 windows).
  assert dataset.train.shape == (48, 17) and dataset.evaluation.shape == (12, 17)
  assert dataset.train.dtype == dataset.evaluation.dtype == np.uint8
  version = f'Python {sys.version_info.major}.{sys.version_info.minor}'
  assert dataset.description.startswith(version) and 'standard library' in dataset.description
  train_text, eval_text = input_pipeline.read_text(
      input_pipeline.standard_library_files(STDLIB), STDLIB, 816)
  np.testing.assert_array_equal(
      dataset.train, np.frombuffer(train_text[:816], np.uint8).reshape(48, 17))
  np.testing.assert_array_equal(
      dataset.evaluation, np.frombuffer(eval_text[:204], np.uint8).reshape(12, 17))

  # A sweep loads once for all its runs: nothing a run changes may change the text.
  other = input_pipeline.load(_tiny_config(seed=7, method='znorm', model='small'))
  np.testing.assert_array_equal(other.train, dataset.train)
  np.testing.assert_array_equal(other.evaluation, dataset.evaluation)


def test_make_source_batches_shuffle_with_the_seed():
  config = _tiny_config()
  dataset = input_pipeline.load(config)
  source = dataset.make_source(config)
  assert source.steps_per_epoch == 6
  batches = list(source.train_batches(0))
  assert len(batches) == 6
  for batch in batches:
    assert set(batch) == {'tokens', 'mask'}
    assert batch['tokens'].shape == (8, 17) and batch['tokens'].dtype == np.uint8
    np.testing.assert_array_equal(batch['mask'], np.ones(8, np.float32))
  # Reference: a permutation of the windows drawn from (seed, epoch), cut into batches of 8.
  order = np.random.default_rng([0, 0]).permutation(48)
  np.testing.assert_array_equal(np.concatenate([b['tokens'] for b in batches]),
                                dataset.train[order])

  def first_batch(seed, epoch=0):
    return next(iter(dataset.make_source(_tiny_config(seed=seed)).train_batches(epoch)))['tokens']

  np.testing.assert_array_equal(first_batch(0), batches[0]['tokens'])
  assert not np.array_equal(first_batch(1), batches[0]['tokens'])
  assert not np.array_equal(first_batch(0, epoch=1), batches[0]['tokens'])

  evaluation = list(source.eval_batches())  # Every validation window once; the rest padding.
  tokens = np.concatenate([b['tokens'] for b in evaluation])
  mask = np.concatenate([b['mask'] for b in evaluation])
  assert mask.sum() == 12
  np.testing.assert_array_equal(tokens[mask == 1], dataset.evaluation)


# --- Errors: one line that names the flag. ---


def test_unknown_dataset_names_the_flag():
  config = _tiny_config(dataset='wikitext')
  message = r"^Unknown --config\.dataset='wikitext'; valid datasets are: python_stdlib, " \
            r'tiny_shakespeare\.$'
  with pytest.raises(ValueError, match=message):
    input_pipeline.load(config)
  with pytest.raises(ValueError, match=message):
    experiment.validate_config(EXAMPLE, config)


@pytest.mark.parametrize('overrides, flag', [
    ({'batch_size': 49}, '--config.batch_size=49'),  # 48 training windows.
    ({'eval_bytes': 16}, '--config.eval_bytes'),  # Less than one window of 17 bytes.
])
def test_too_little_text_names_the_flags(overrides, flag):
  with pytest.raises(ValueError) as error:
    input_pipeline.load(_tiny_config(**overrides))
  message = str(error.value)
  assert '\n' not in message and flag in message
  assert '48 training' in message


# --- tiny_shakespeare through tfds. ---


_SHAKESPEARE = {  # Split -> the examples' 'text' (tiny_shakespeare has one example per split).
    'train': [b'First Citizen:\nBefore we proceed any further, hear me speak.\n',
              b'All:\nSpeak, speak.\n'],
    'validation': [b'MENENIUS:\nWhy, masters, my good friends, mine honest neighbours,\n'],
}


def _mock_shakespeare(builder, split, **kwargs):
  """tfds's ``_as_dataset`` under ``mock_data``: the texts above, as tensors of strings."""
  del builder, kwargs
  return tf.data.Dataset.from_tensor_slices({'text': _SHAKESPEARE[str(split)]})


def test_tiny_shakespeare_windows_come_from_the_split_texts(tmp_path):
  config = _tiny_config(dataset='tiny_shakespeare', data_dir=str(tmp_path), context=4,
                        train_bytes=80, eval_bytes=40)
  with tfds.testing.mock_data(as_dataset_fn=_mock_shakespeare):
    dataset = input_pipeline.load(config)
  train_text = SEPARATOR.join(_SHAKESPEARE['train'])  # 81 bytes: 16 windows of 5 in the first 80.
  eval_text = SEPARATOR.join(_SHAKESPEARE['validation'])
  np.testing.assert_array_equal(dataset.train,
                                np.frombuffer(train_text[:80], np.uint8).reshape(16, 5))
  np.testing.assert_array_equal(dataset.evaluation,
                                np.frombuffer(eval_text[:40], np.uint8).reshape(8, 5))
  assert bytes(dataset.train[12]) == b'\n\0All'  # The documents, joined by the separator.
  assert dataset.description == 'tfds tiny_shakespeare'
  batch = next(iter(dataset.make_source(config).train_batches(0)))
  assert batch['tokens'].shape == (8, 5) and batch['tokens'].dtype == np.uint8


def test_tiny_shakespeare_without_data_says_how_to_run_offline(tmp_path):
  config = _tiny_config(dataset='tiny_shakespeare', data_dir=str(tmp_path))
  with pytest.raises(datasets.DatasetUnavailableError) as error:
    input_pipeline.load(config)
  message = str(error.value)
  assert "'tiny_shakespeare'" in message
  assert f'tfds build tiny_shakespeare --data_dir={tmp_path}' in message
  assert '--config.download=True' in message and '--config.dataset=python_stdlib' in message
