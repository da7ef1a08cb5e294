"""Files a run reads that cannot be read: one line naming the file, and nothing lost.

The records of ``metrics.jsonl`` are in the checkpoint too, so that file is replaced from
it; ``gradient_statistics.jsonl`` is in no checkpoint, so the run stops and leaves it as
it is.
"""

import logging
import os
import shutil

import pytest
from absl import flags
from ml_collections import config_flags

from examples.training import cli
from examples.training import errors
from examples.training import gradient_log
from examples.training import metrics_log
from examples.training import workdir_lock
from tests.examples.saved import saved_steps
from tests.examples.training import tiny

_NOT_UTF8 = b'{"epoch": 1}\n{"epoch": "\xff\xfe"}\n'


def _finished_run(reference, tmp_path):
  """A copy of the reference's finished run: resuming it trains nothing."""
  workdir = tmp_path / 'run'
  shutil.copytree(reference[0], workdir)
  return workdir


def test_metrics_that_are_not_utf8_are_replaced_from_the_checkpoint(reference, tmp_path, caplog):
  workdir = _finished_run(reference, tmp_path)
  (workdir / 'metrics.jsonl').write_bytes(_NOT_UTF8)
  with caplog.at_level(logging.WARNING):
    history = tiny.fit(workdir, tiny.config(resume=True))
  assert (f"{workdir}/metrics.jsonl, line 2, is not UTF-8 text: invalid start byte at byte 11 "
          "of the line; replaced by the checkpoint's history.") in caplog.text
  assert metrics_log.read(workdir / 'metrics.jsonl') == history == reference[1]


def test_metrics_that_are_a_directory_stop_the_run_with_one_line(reference, tmp_path):
  workdir = _finished_run(reference, tmp_path)
  os.remove(workdir / 'metrics.jsonl')
  (workdir / 'metrics.jsonl' / 'inside').mkdir(parents=True)
  with pytest.raises(errors.WriteError) as error:
    tiny.fit(workdir, tiny.config(resume=True))
  assert str(error.value) == (f'cannot write {workdir}/metrics.jsonl: [Errno 21] Is a directory; '
                              'the run stopped.')
  assert (workdir / 'metrics.jsonl' / 'inside').is_dir()
  assert saved_steps(workdir) == [16, 15]


@pytest.mark.parametrize('content, reason', [
    (_NOT_UTF8, ', line 2, is not UTF-8 text: invalid start byte at byte 11 of the line'),
    (b'{"step": 2}\n[1, 2]\n', ', line 2, is not a JSON record: [1, 2]'),
    (b'{"norm_before": {}}\n', ' holds a record without a step'),
])
def test_gradient_statistics_that_cannot_be_read_stop_the_run_and_stay(reference, tmp_path,
                                                                        content, reason):
  workdir = _finished_run(reference, tmp_path)
  (workdir / gradient_log.FILENAME).write_bytes(content)
  with pytest.raises(ValueError) as error:
    tiny.fit(workdir, tiny.config(resume=True, log_gradient_statistics=True))
  path = workdir / gradient_log.FILENAME
  assert str(error.value) == f'{path}{reason}; repair it or move it aside to continue.'
  assert path.read_bytes() == content
  assert saved_steps(workdir) == [16, 15]


def test_a_lock_that_cannot_be_opened_stops_the_run_with_one_line(tmp_path):
  (tmp_path / workdir_lock.FILENAME).mkdir()
  with pytest.raises(errors.WriteError) as error:
    tiny.fit(tmp_path)
  assert str(error.value) == (f'cannot write {tmp_path}/{workdir_lock.FILENAME}: [Errno 21] Is a '
                              'directory; the run stopped.')
  assert sorted(os.listdir(tmp_path)) == [workdir_lock.FILENAME]


@pytest.mark.parametrize('body, message', [
    ('  config.width = undefined_name',
     "line 6, does not load: NameError: name 'undefined_name' is not defined"),
    ("  config.resume = 'yes'",  # ml_collections puts this one's traceback into its message.
     ("line 6, does not load: TypeError: Could not override field 'resume' (reference). yes is "
      "of original type <class 'str'> and cannot be casted to type <class 'bool'>")),
])
def test_a_config_file_that_does_not_load_is_one_line_naming_it(tmp_path, body, message):
  path = tmp_path / 'config.py'
  path.write_text('from examples.image_classification.configs import tiny\n\n\n'
                  f'def get_config():\n  config = tiny.get_config()\n{body}\n  return config\n')
  flag_values = flags.FlagValues()  # As the command line's, without touching its flags.
  config_flags.DEFINE_config_file('config', None, 'A config file.', flag_values=flag_values,
                                  lock_config=True)
  with pytest.raises(SystemExit) as stopped:
    cli._parse_flags(['main', f'--config={path}'], flag_values)
  assert stopped.value.code == f'error: --config={path}, {message}'
