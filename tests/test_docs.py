"""The documentation site builds, offline and with warnings as errors, as ``make docs`` builds it."""

import html
import os
import pathlib
import re
import subprocess
import sys

import pytest

import znorm_optax

ROOT = pathlib.Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted(path.stem for path in (ROOT / 'notebooks').glob('*.ipynb'))
# Any attempt to fetch something (an intersphinx inventory, a remote image) fails at once.
_NO_NETWORK = {
    name: 'http://127.0.0.1:9' for name in ('http_proxy', 'https_proxy', 'HTTP_PROXY', 'HTTPS_PROXY')
}


@pytest.fixture(scope='module')
def site(tmp_path_factory) -> pathlib.Path:
  out = tmp_path_factory.mktemp('docs')
  env = dict(os.environ, **_NO_NETWORK)
  env.pop('no_proxy', None)
  env.pop('NO_PROXY', None)
  result = subprocess.run(
      [sys.executable, '-m', 'sphinx', '-W', '--keep-going', '-E', '-q', '-b', 'html',
       '-d', str(out / 'doctrees'), str(ROOT / 'docs'), str(out / 'html')],
      check=False, env=env, capture_output=True, text=True,
  )
  assert result.returncode == 0, result.stderr
  return out / 'html'


def _text(site: pathlib.Path, page: str) -> str:
  """The page's text, without the markup (syntax highlighting splits code into many spans)."""
  return html.unescape(re.sub(r'<[^>]+>', '', (site / f'{page}.html').read_text()))


def test_api_reference_documents_every_public_name_with_its_doctests(site):
  api = _text(site, 'api')
  for name in znorm_optax.__all__:
    assert f'znorm_optax.{name}(' in api, name
  assert '>>> tx = znorm_optax.znorm()' in api
  assert 'optax.chain(znorm_optax.znorm(), optax.adam(1e-3))' in api


def test_guide_pages_include_the_readme(site):
  assert 'optax.normalize_by_update_norm' in _text(site, 'peers')
  assert 'NaN and Inf are never hidden' in _text(site, 'behaviour')
  assert 'Optimizer step overhead' in _text(site, 'performance')
  assert "pip install 'znorm-optax[tfds]'" in _text(site, 'guide')


@pytest.mark.parametrize('notebook', NOTEBOOKS)
def test_notebooks_are_rendered_without_running_them(site, notebook):
  page = _text(site, f'notebooks/{notebook}')
  assert "'google.colab'" in page  # The setup cell's code.
  assert 'cell_output' not in page  # Committed without outputs, and not executed by the build.
