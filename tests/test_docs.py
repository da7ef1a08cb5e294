"""The documentation site builds, offline and with warnings as errors, as ``make docs`` builds it.

One test, so that the build (about 15 s) runs once however pytest-xdist spreads the tests.
"""

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


def _text(site: pathlib.Path, page: str) -> str:
  """The page's text, without the markup (syntax highlighting splits code into many spans)."""
  return html.unescape(re.sub(r'<[^>]+>', '', (site / f'{page}.html').read_text()))


@pytest.mark.slow
def test_docs_build_offline_with_warnings_as_errors(tmp_path):
  env = {key: value for key, value in os.environ.items() if key.lower() != 'no_proxy'}
  result = subprocess.run(
      [sys.executable, '-m', 'sphinx', '-W', '--keep-going', '-E', '-q', '-b', 'html',
       '-d', str(tmp_path / 'doctrees'), str(ROOT / 'docs'), str(tmp_path / 'html')],
      check=False, env=dict(env, **_NO_NETWORK), capture_output=True, text=True,
  )
  assert result.returncode == 0, result.stderr
  site = tmp_path / 'html'

  # The API reference: every public name, with the doctests of its docstring.
  api = _text(site, 'api')
  for name in znorm_optax.__all__:
    assert f'znorm_optax.{name}(' in api, f'{name} is missing from docs/api.md.'
  assert '>>> tx = znorm_optax.znorm()' in api
  assert 'optax.chain(znorm_optax.znorm(), optax.adam(1e-3))' in api

  # The README's sections, included rather than copied.
  assert "pip install 'znorm-optax[tfds]'" in _text(site, 'guide')
  assert 'optax.normalize_by_update_norm' in _text(site, 'peers')
  assert 'NaN and Inf are never hidden' in _text(site, 'behaviour')
  assert 'Optimizer step overhead' in _text(site, 'performance')

  # The notebooks, rendered as committed: code, and no outputs since the build runs nothing.
  for notebook in NOTEBOOKS:
    assert "'google.colab'" in _text(site, f'notebooks/{notebook}'), notebook
    assert 'class="cell_output' not in (site / 'notebooks' / f'{notebook}.html').read_text()
