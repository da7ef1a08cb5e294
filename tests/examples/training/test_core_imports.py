"""The training core knows no method: it imports nothing from the library.

(``tests/examples/study/test_experiment.py`` checks that it imports no layer above it.)
"""

import ast
import pathlib

import pytest

import examples.training

CORE = pathlib.Path(examples.training.__file__).parent


@pytest.mark.parametrize('path', sorted(CORE.glob('*.py')), ids=lambda p: p.name)
def test_the_core_imports_nothing_from_znorm_optax(path):
  for node in ast.walk(ast.parse(path.read_text())):
    if isinstance(node, ast.Import):
      modules = [alias.name for alias in node.names]
    elif isinstance(node, ast.ImportFrom):
      modules = [node.module or '']
    else:
      continue
    assert not any(module.split('.')[0] == 'znorm_optax' for module in modules), ast.unparse(node)
