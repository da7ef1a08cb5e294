"""examples/README.md's "Adding an example", followed to the letter by a fourth example."""

import ast
import json
import pathlib
import re
import subprocess
import sys

from tests.examples.processes import REPO

FOURTH = pathlib.Path(REPO) / 'tests' / 'examples' / 'fourth_example'
REGISTRY_LINE = "    'fourth_example': 'tests.examples.fourth_example',"
"""What a real addition writes into ``examples/registry.py``'s ``EXAMPLES``."""
# The run adds the same entry before `python -m examples.main` starts (as runpy runs -m).
_MAIN_WITH_THE_FOURTH_EXAMPLE = f"""
from examples import registry
registry.EXAMPLES.update({{{REGISTRY_LINE.strip()}}})
import runpy
runpy.run_module('examples.main', run_name='__main__', alter_sys=True)
"""


def _files_the_readme_lists() -> set[str]:
  readme = (pathlib.Path(REPO) / 'examples' / 'README.md').read_text()
  section = readme.split('## Adding an example', 1)[1]
  return set(re.findall(r'^\| `([^`]+)` \|', section, re.MULTILINE))


def test_the_fourth_example_writes_exactly_the_files_the_readme_lists():
  written = {str(path.relative_to(FOURTH)) for path in FOURTH.rglob('*')
             if path.is_file() and '__pycache__' not in path.parts}
  assert written == _files_the_readme_lists()


def test_the_fourth_example_imports_only_the_core_the_study_the_shared_data_and_itself():
  allowed = ('examples.training', 'examples.study', 'examples.datasets',
             'tests.examples.fourth_example')
  for path in FOURTH.rglob('*.py'):
    for node in ast.walk(ast.parse(path.read_text())):
      if isinstance(node, ast.ImportFrom) and node.module.split('.')[0] in ('examples', 'tests'):
        assert node.module.startswith(allowed), (path.name, node.module)


def _main(main_code: str, workdir: pathlib.Path) -> subprocess.CompletedProcess:
  return subprocess.run(
      [sys.executable, '-c', main_code, '--config=tests/examples/fourth_example/configs/tiny.py',
       f'--workdir={workdir}', '--config.platform=cpu'],
      cwd=REPO, capture_output=True, text=True, timeout=120, check=False)


def test_without_its_registry_line_the_fourth_example_is_refused(tmp_path):
  result = _main("import runpy; runpy.run_module('examples.main', run_name='__main__', "
                 'alter_sys=True)', tmp_path / 'run')
  assert result.returncode == 1
  assert result.stderr.startswith("error: --config.example='fourth_example' names no example")


def test_the_fourth_example_trains_through_examples_main(tmp_path):
  result = _main(_MAIN_WITH_THE_FOURTH_EXAMPLE, tmp_path)
  assert result.returncode == 0, result.stderr[-2000:]
  assert 'Final: ' in result.stdout
  records = [json.loads(line) for line in (tmp_path / 'metrics.jsonl').read_text().splitlines()]
  last = [record for record in records if 'test_accuracy' in record][-1]
  assert last['epoch'] == 2 and last['test_accuracy'] > 0.5
