"""Each notebook's Colab setup keeps Colab's JAX, jaxlib and Flax.

Colab's accelerator plugin is built for the jax it ships, so a setup cell that
replaces jax or jaxlib leaves a GPU or TPU runtime with a mismatched plugin.
The install line of every notebook is resolved, offline, in a venv that holds
Colab's versions (``notebooks/colab_runtime.txt``, as empty distributions) and
sees this environment's other packages; pip must install the package and replace
none of them. ``make test`` runs the notebooks themselves with those versions.
"""

import json
import os
import pathlib
import shlex
import shutil
import subprocess
import sysconfig
import venv

import nbformat
import pytest
from packaging.utils import canonicalize_name

ROOT = pathlib.Path(__file__).resolve().parents[2]
NOTEBOOKS = sorted((ROOT / 'notebooks').glob('*.ipynb'))
COLAB_VERSIONS = dict(
    line.split('==') for line in (ROOT / 'notebooks' / 'colab_runtime.txt').read_text().splitlines()
    if line and not line.startswith('#'))
KEPT = ('jax', 'jaxlib', 'flax')


@pytest.fixture(scope='module')
def colab_python(tmp_path_factory) -> pathlib.Path:
  root = tmp_path_factory.mktemp('colab_runtime')
  venv.create(root / 'venv', with_pip=False)
  site_packages = pathlib.Path(sysconfig.get_path('purelib', vars={'base': str(root / 'venv')}))
  for name, version in COLAB_VERSIONS.items():
    dist_info = site_packages / f'{name}-{version}.dist-info'
    dist_info.mkdir()
    (dist_info / 'METADATA').write_text(
        f'Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n')
  (site_packages / 'this_environment.pth').write_text(sysconfig.get_path('purelib') + '\n')
  return root / 'venv' / 'bin' / 'python'


def _install_args(notebook: pathlib.Path, repo_dir: pathlib.Path) -> list[str]:
  setup = next(cell for cell in nbformat.read(notebook, as_version=4).cells
               if cell.cell_type == 'code').source
  (line,) = [line.strip() for line in setup.splitlines() if line.strip().startswith('%pip ')]
  return shlex.split(line.replace('{REPO_DIR}', str(repo_dir)).removeprefix('%pip install '))


def _package_source(destination: pathlib.Path) -> pathlib.Path:
  """What pip reads to build the package's metadata, outside the shared checkout."""
  destination.mkdir()
  for name in ('pyproject.toml', 'README.md', 'LICENSE'):
    shutil.copy(ROOT / name, destination / name)
  shutil.copytree(ROOT / 'znorm_optax', destination / 'znorm_optax',
                  ignore=shutil.ignore_patterns('__pycache__'))
  return destination


@pytest.mark.parametrize('notebook', NOTEBOOKS, ids=lambda path: path.stem)
def test_colab_setup_keeps_colabs_jax_jaxlib_and_flax(notebook, colab_python, tmp_path):
  args = _install_args(notebook, _package_source(tmp_path / 'znorm_optax'))
  report = tmp_path / 'report.json'
  env = {key: value for key, value in os.environ.items() if not key.startswith('PIP_')}
  result = subprocess.run(
      [str(colab_python), '-m', 'pip', 'install', '--dry-run', '--report', str(report),
       '--no-index', '--no-build-isolation', *args],
      env=dict(env, PIP_CONFIG_FILE=os.devnull, PIP_DISABLE_PIP_VERSION_CHECK='1'),
      capture_output=True, text=True, check=False)
  assert result.returncode == 0, result.stderr[-2000:]
  installs = {canonicalize_name(item['metadata']['name']): item['metadata']['version']
              for item in json.loads(report.read_text())['install']}
  assert not {name: installs[name] for name in KEPT if name in installs}, installs
