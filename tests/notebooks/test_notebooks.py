r"""Runs every notebook in ``notebooks/`` top to bottom; any cell error fails the test.

Notebooks are committed without outputs. An output is only worth showing if it
comes from a real run of the current code, and this test re-runs every notebook
anyway, so stored outputs could only go stale; ``test_committed_without_outputs``
keeps the rule from rotting. To strip outputs and run timestamps (keeping the
notebook-level Colab metadata) before committing::

  jupyter nbconvert --clear-output --ClearMetadataPreprocessor.enabled=True \
      --ClearMetadataPreprocessor.clear_notebook_metadata=False --inplace notebooks/*.ipynb

Each notebook runs in a fresh kernel started in ``notebooks/`` as Jupyter would
start it, with its own form defaults except for the few in ``TEST_PARAMETERS``
(fewer epochs, steps or images), which a cell inserted right after the form sets,
as papermill injects parameters. The kernel sees one CPU device, as a user's
machine does, not the 8 simulated devices of the test session, and its temporary
work directories go to the test's ``tmp_path``.
"""

import os
import pathlib
import re

import nbformat
import pytest
from nbclient import NotebookClient

from tests.conftest import FAST_COMPILE_FLAGS

NOTEBOOK_DIR = pathlib.Path(__file__).resolve().parents[2] / 'notebooks'
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob('*.ipynb'))
CELL_TIMEOUT_S = 600
# What each notebook's Colab setup installs: its datasets are digits or synthetic, plus cifar10
# (02) and oxford_iiit_pet (03) through tensorflow-datasets.
COLAB_EXTRAS = {
    '01_quickstart': '[examples]',
    '02_gradient_statistics': '[examples,tfds]',
    '03_segmentation': '[examples,tfds]',
}
TEST_PARAMETERS = {
    # The defaults train for about a minute on a CPU (01: 15 epochs, 02: 60 steps, 03: 8 epochs
    # on 256 images), which the notebooks' text describes. The test runs every cell on the
    # same models and data with less training, still several epochs or steps for the curves
    # and 03's learning-rate decay (epoch 4 of 4): nothing but the numbers changes.
    '01_quickstart': {'EPOCHS': 2},
    '02_gradient_statistics': {'STEPS': 5},
    '03_segmentation': {'EPOCHS': 4, 'TRAIN_IMAGES': 64, 'TEST_IMAGES': 16},
}
COLAB_BADGE = re.compile(
    r'https://colab\.research\.google\.com/github/znorm-optax/znorm_optax/blob/main/'
    r'notebooks/(?P<name>[\w.-]+\.ipynb)'
)


def _kernel_env(tmp_path: pathlib.Path) -> dict[str, str]:
  """The test session's environment without its simulated-device flag, temp files in tmp_path.

  XLA compiles with its optimizations mostly off (LLVM at -O0), with XLA:CPU's older fusion
  emitters, which compile in about half the time, and with each program's LLVM module in one
  part (XLA:CPU splits it for parallel code generation, which costs more than it gains on a
  busy CPU): what the notebooks run is small and compile-bound, so they finish sooner that
  way (a third of a notebook's CPU time); nothing they show depends on it.
  """
  env = dict(os.environ, TMPDIR=str(tmp_path), JAX_DISABLE_MOST_OPTIMIZATIONS='1')
  flags = re.sub(r'--xla_force_host_platform_device_count=\d+', '', env.get('XLA_FLAGS', ''))
  flags = flags.split()
  env['XLA_FLAGS'] = ' '.join(
      [*flags, *(flag for flag in FAST_COMPILE_FLAGS.split() if flag not in flags)])
  return env


def _parameters_cell(notebook) -> int:
  """The index of the notebook's form: the first code cell with Colab ``# @param`` fields."""
  return next(index for index, cell in enumerate(notebook.cells)
              if cell.cell_type == 'code' and '# @param' in cell.source)


def _with_test_parameters(notebook, name: str):
  """``notebook`` with a cell after its form that sets ``TEST_PARAMETERS[name]``.

  Every name set must be a field of the form, so that the test keeps following the notebook.
  """
  form = _parameters_cell(notebook)
  fields = re.findall(r'^([A-Z_]+) = .*# @param', notebook.cells[form].source, re.MULTILINE)
  parameters = TEST_PARAMETERS[name]
  assert set(parameters) <= set(fields), (name, set(parameters) - set(fields))
  source = '\n'.join(f'{field} = {value!r}' for field, value in parameters.items())
  notebook.cells.insert(form + 1, nbformat.v4.new_code_cell(source))
  return notebook


def test_notebooks_exist():
  assert [path.name for path in NOTEBOOKS] == [
      '01_quickstart.ipynb',
      '02_gradient_statistics.ipynb',
      '03_segmentation.ipynb',
  ]


@pytest.mark.parametrize('path', NOTEBOOKS, ids=lambda path: path.stem)
def test_committed_without_outputs(path):
  notebook = nbformat.read(path, as_version=4)
  nbformat.validate(notebook)
  for index, cell in enumerate(notebook.cells):
    if cell.cell_type == 'code':
      assert not cell.outputs, f'{path.name}: cell {index} has stored outputs; strip them.'
      assert cell.execution_count is None, f'{path.name}: cell {index} has an execution count.'
    assert 'execution' not in cell.metadata, f'{path.name}: cell {index} has run timestamps.'


@pytest.mark.parametrize('path', NOTEBOOKS, ids=lambda path: path.stem)
def test_opens_in_colab(path):
  """The first cell links to this notebook in Colab; the first code cell installs the package there.

  Colab gets the ``examples`` extra, everything the notebooks import, and ``tfds`` where the
  notebook offers a tfds dataset (met by Colab's own TensorFlow; tests/test_packaging.py checks
  that no second one is installed). The ``notebooks`` extra adds Jupyter itself, which Colab
  already runs and whose pins must not replace Colab's own.
  """
  notebook = nbformat.read(path, as_version=4)
  badge = COLAB_BADGE.search(notebook.cells[0].source)
  assert badge and badge['name'] == path.name, f'{path.name}: no Colab badge for this notebook.'
  setup = next(cell for cell in notebook.cells if cell.cell_type == 'code').source
  assert "'google.colab' in sys.modules" in setup
  assert f'%pip install --quiet "{{REPO_DIR}}{COLAB_EXTRAS[path.stem]}"' in setup


@pytest.mark.parametrize('path', NOTEBOOKS, ids=lambda path: path.stem)
def test_test_parameters_are_fields_of_the_form_and_train_less(path):
  notebook = nbformat.read(path, as_version=4)
  source = notebook.cells[_parameters_cell(notebook)].source
  defaults = {field: int(value) for field, value in
              re.findall(r'^([A-Z_]+) = (\d+)\s*# @param', source, re.MULTILINE)}
  for field, value in TEST_PARAMETERS[path.stem].items():
    assert field in defaults, (path.stem, field)
    assert 0 < value < defaults[field], (path.stem, field, value, defaults[field])
  # The cell the test inserts right after the form sets them.
  form = _parameters_cell(notebook)
  inserted = _with_test_parameters(notebook, path.stem).cells[form + 1].source
  namespace = {}
  exec(inserted, namespace)  # noqa: S102 - the test's own assignments.
  assert {k: v for k, v in namespace.items() if k != '__builtins__'} == TEST_PARAMETERS[path.stem]


@pytest.mark.slow
@pytest.mark.parametrize('path', NOTEBOOKS, ids=lambda path: path.stem)
def test_runs_top_to_bottom(path, tmp_path):
  notebook = _with_test_parameters(nbformat.read(path, as_version=4), path.stem)
  client = NotebookClient(
      notebook,
      timeout=CELL_TIMEOUT_S,
      kernel_name='python3',
      resources={'metadata': {'path': str(NOTEBOOK_DIR)}},
  )
  client.execute(env=_kernel_env(tmp_path))  # Raises CellExecutionError, with the traceback, on any error.
  figures = [
      output
      for cell in notebook.cells
      if cell.cell_type == 'code'
      for output in cell.outputs
      if 'image/png' in output.get('data', {})
  ]
  assert figures, f'{path.name} ran but displayed no figure.'
