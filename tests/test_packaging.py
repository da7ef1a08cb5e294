"""What a user installs: the wheel's contents and requirements, the extras, the notebooks' Colab
setup and the error for a tfds dataset without the ``tfds`` extra.

Everything here runs offline: the wheel is built without build isolation (the ``test`` extra
brings setuptools), and the Colab install is resolved with ``--no-index`` against this
environment's packages.
"""

import email
import importlib
import importlib.metadata
import json
import os
import pathlib
import shlex
import shutil
import subprocess
import sys
import sysconfig
import types
import venv
import zipfile

import nbformat
import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from examples.image_classification.configs import default as resnet_default
from examples.training import datasets
from examples.unet_segmentation.configs import default as unet_default

ROOT = pathlib.Path(__file__).resolve().parents[1]
NOTEBOOK_DIR = ROOT / 'notebooks'
# What a checkout holds besides the sources: environments, build and run outputs, caches.
_NOT_SOURCE = shutil.ignore_patterns(
    '.git', '.venv', 'build', 'runs', 'workdir', '_build', '*.egg-info', '__pycache__',
    '.pytest_cache', '.ruff_cache', '.ipynb_checkpoints',
)
# Colab's preinstalled TensorFlow (any version meeting the tfds extra's floor would do).
COLAB_TENSORFLOW = ('tensorflow', '2.19.0')
# What the examples' `tfds_data` modules import from the ``tfds`` extra.
TFDS_MODULES = ('tensorflow', 'tensorflow_datasets')


def _copy_checkout(destination: pathlib.Path) -> pathlib.Path:
  """Copies the checkout's sources, so that builds write their files outside the shared tree."""
  shutil.copytree(ROOT, destination, ignore=_NOT_SOURCE, symlinks=True)
  return destination


def _pip_env() -> dict[str, str]:
  """The environment without pip's configuration files and PIP_* settings (extra indexes)."""
  env = {key: value for key, value in os.environ.items() if not key.startswith('PIP_')}
  return dict(env, PIP_CONFIG_FILE=os.devnull, PIP_DISABLE_PIP_VERSION_CHECK='1')


@pytest.fixture(scope='module')
def wheel(tmp_path_factory) -> zipfile.ZipFile:
  source = _copy_checkout(tmp_path_factory.mktemp('wheel') / 'src')
  out = source.parent / 'dist'
  subprocess.run(
      [sys.executable, '-m', 'pip', 'wheel', '--no-deps', '--no-build-isolation', '--no-index',
       '--quiet', '--wheel-dir', str(out), str(source)],
      check=True, env=_pip_env(),
  )
  (path,) = out.glob('znorm_optax-*.whl')
  with zipfile.ZipFile(path) as archive:
    yield archive


def test_wheel_holds_only_the_package(wheel):
  names = wheel.namelist()
  top_level = {name.split('/')[0] for name in names}
  dist_info = {name for name in top_level if name.endswith('.dist-info')}
  assert len(dist_info) == 1 and top_level - dist_info == {'znorm_optax'}, sorted(top_level)
  assert 'znorm_optax/__init__.py' in names
  assert 'znorm_optax/py.typed' in names  # PEP 561: type checkers read the package's hints.


def test_wheel_requires_only_jax_optax_and_chex(wheel):
  (metadata_name,) = [name for name in wheel.namelist() if name.endswith('.dist-info/METADATA')]
  metadata = email.message_from_bytes(wheel.read(metadata_name))
  requirements = [Requirement(line) for line in metadata.get_all('Requires-Dist')]
  unconditional = {canonicalize_name(r.name) for r in requirements if r.marker is None}
  assert unconditional == {'jax', 'optax', 'chex'}
  extras = set(metadata.get_all('Provides-Extra'))
  assert {'examples', 'tfds', 'notebooks', 'docs', 'test', 'dev'} <= extras
  examples = {canonicalize_name(r.name) for r in requirements
              if r.marker is not None and r.marker.evaluate({'extra': 'examples'})}
  assert 'flax' in examples
  assert not {name for name in examples if name.startswith('tensorflow')}, examples
  tfds = {canonicalize_name(r.name) for r in requirements
          if r.marker is not None and r.marker.evaluate({'extra': 'tfds'})}
  # The `tensorflow` distribution, which Colab ships; `tensorflow-cpu` would be a second copy.
  assert {'tensorflow', 'tensorflow-datasets'} <= tfds and 'tensorflow-cpu' not in tfds


def _colab_setup_install_args(path: pathlib.Path, repo_dir: pathlib.Path) -> list[str]:
  """The arguments of the ``%pip install`` in the notebook's Colab setup cell."""
  notebook = nbformat.read(path, as_version=4)
  setup = next(cell for cell in notebook.cells if cell.cell_type == 'code').source
  (line,) = [line.strip() for line in setup.splitlines() if line.strip().startswith('%pip ')]
  command = line.replace('{REPO_DIR}', str(repo_dir))
  assert command.startswith('%pip install '), line
  return shlex.split(command.removeprefix('%pip install '))


@pytest.fixture(scope='module')
def colab_like_python(tmp_path_factory) -> pathlib.Path:
  """A fresh venv that holds `tensorflow`, as Colab does, and sees this environment's packages.

  Colab preinstalls most of what the extras need, so a resolve against this environment is
  close to one there, and needs no index.
  """
  root = tmp_path_factory.mktemp('colab')
  venv.create(root / 'venv', with_pip=False)
  site_packages = pathlib.Path(sysconfig.get_path('purelib', vars={'base': str(root / 'venv')}))
  name, version = COLAB_TENSORFLOW
  dist_info = site_packages / f'{name}-{version}.dist-info'
  dist_info.mkdir()
  (dist_info / 'METADATA').write_text(f'Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n')
  (site_packages / 'this_environment.pth').write_text(sysconfig.get_path('purelib') + '\n')
  return root / 'venv' / 'bin' / 'python'


@pytest.mark.parametrize('path', sorted(NOTEBOOK_DIR.glob('*.ipynb')), ids=lambda path: path.stem)
def test_colab_setup_installs_no_second_tensorflow(path, colab_like_python, tmp_path):
  # Without this, a `tensorflow-cpu` requirement would be met here and pass unnoticed.
  with pytest.raises(importlib.metadata.PackageNotFoundError):
    importlib.metadata.distribution('tensorflow-cpu')
  args = _colab_setup_install_args(path, _copy_checkout(tmp_path / 'znorm_optax'))
  report = tmp_path / 'report.json'
  subprocess.run(
      [str(colab_like_python), '-m', 'pip', 'install', '--dry-run', '--report', str(report),
       '--no-index', '--no-build-isolation', *args],
      check=True, env=_pip_env(), stdout=subprocess.DEVNULL,
  )
  installs = {canonicalize_name(item['metadata']['name'])
              for item in json.loads(report.read_text())['install']}
  assert not {name for name in installs if name.startswith('tensorflow')}, installs
  assert installs == {'znorm-optax'}, installs


@pytest.mark.parametrize('module_name', TFDS_MODULES)
@pytest.mark.parametrize('example, get_config, dataset', [
    ('image_classification', resnet_default.get_config, 'cifar10'),
    ('unet_segmentation', unet_default.get_config, 'oxford_iiit_pet'),
])
def test_tfds_dataset_without_the_extra_names_it(monkeypatch, example, get_config, dataset,
                                                 module_name):
  package = importlib.import_module(f'examples.{example}')
  input_pipeline = importlib.import_module(f'examples.{example}.input_pipeline')
  # As if `module_name` had never been installed: `tfds_data` is imported afresh and finds none.
  # The other tfds module is a stub, so that the test does not load TensorFlow for real.
  monkeypatch.delitem(sys.modules, f'examples.{example}.tfds_data', raising=False)
  monkeypatch.delattr(package, 'tfds_data', raising=False)
  for name in TFDS_MODULES:
    monkeypatch.setitem(sys.modules, name, None if name == module_name else types.ModuleType(name))
  config = get_config()
  config.dataset = dataset
  with pytest.raises(datasets.DatasetUnavailableError) as error:
    input_pipeline.load(config)
  message = str(error.value)
  assert "pip install 'znorm-optax[tfds]'" in message and '\n' not in message
  assert f'--config.dataset={dataset}' in message and module_name in message


def test_other_missing_modules_are_not_blamed_on_the_extra(monkeypatch):
  package = importlib.import_module('examples.image_classification')
  input_pipeline = importlib.import_module('examples.image_classification.input_pipeline')
  monkeypatch.delitem(sys.modules, 'examples.image_classification.tfds_data', raising=False)
  monkeypatch.delattr(package, 'tfds_data', raising=False)
  monkeypatch.setitem(sys.modules, 'ml_collections', None)
  config = resnet_default.get_config()
  config.dataset = 'cifar10'
  with pytest.raises(ModuleNotFoundError) as error:
    input_pipeline.load(config)
  assert error.value.name == 'ml_collections'
