"""benchmarks/lm_throughput.py runs and prints its table; the shared round machinery's arithmetic.

Smoke tests with the tiny model: no assertions on timings, only that every figure is there and
finite.
"""

import argparse
import math
import re
import sys

import jax.numpy as jnp
import pytest

from benchmarks import lm_throughput
from benchmarks import throughput

_METHOD_LINE = re.compile(r'^  (\S+) +median +(\S+) tokens/s, +(\S+) ms/step, spread +(\S+)%  '
                          r'\(rounds: ([^)]*)\)$')
_RATIO_LINE = re.compile(r'^  ratio (\S+) / adam: (\S+) \(rounds (\S+)-(\S+?)(; target >= (\S+))?\)$')


def _table(out: str):
  """The method lines' figures and the ratio lines' figures, by method."""
  rows, ratios = {}, {}
  for line in out.splitlines():
    if match := _METHOD_LINE.match(line):
      rows[match[1]] = [float(x) for x in match.group(2, 3, 4)] + [
          float(x) for x in match[5].split(', ')]
    elif match := _RATIO_LINE.match(line):
      ratios[match[1]] = ([float(x) for x in match.group(2, 3, 4)],
                          match[6] and float(match[6]))
  return rows, ratios


@pytest.mark.parametrize('loop, dtype', [
    ('host', 'float32'),  # bfloat16 compiles slower on the CPU: ~13 s of CPU time against ~18.
    # What gpu_check.sh runs: the steps in-jit, bfloat16.
    pytest.param('device', 'bfloat16', marks=pytest.mark.slow),
])
def test_lm_throughput_prints_a_finite_table(loop, dtype, monkeypatch, capsys):
  # --methods=znorm: Adam is always measured as the baseline, so two methods compile.
  monkeypatch.setattr(sys, 'argv', [
      'lm_throughput.py', '--model=tiny', '--context=16', '--batch_size=4', '--rounds=2',
      '--steps_per_round=2', '--warmup_steps=0', f'--loop={loop}', f'--dtype={dtype}',
      '--methods=znorm',
  ])
  lm_throughput.main()
  out = capsys.readouterr().out
  header = out.splitlines()[0]
  assert header.startswith('tiny (')
  assert f'context 16, batch 4 (64 tokens/step), {dtype}, 2 rounds x 2 steps' in header
  assert f'{loop} loop' in header
  for method in ('adam', 'znorm'):
    assert re.search(rf'^  {method}: first call \(compile \+ one round\) \S+ s$', out,
                     re.MULTILINE)
  rows, ratios = _table(out)
  assert list(rows) == ['adam', 'znorm']
  for figures in rows.values():
    median, ms_per_step, spread, *rounds = figures
    assert len(rounds) == 2
    assert all(math.isfinite(x) and x > 0 for x in (median, ms_per_step, *rounds))
    assert math.isfinite(spread) and spread >= 0
    assert ms_per_step == pytest.approx(1e3 * 64 / median, rel=1e-2)
  assert list(ratios) == ['znorm']
  (median, low, high), target = ratios['znorm']
  assert all(math.isfinite(x) and x > 0 for x in (median, low, high))
  assert low <= median <= high
  assert target == lm_throughput.TARGETS['znorm'] == 0.97


def test_methods_flag_keeps_adam_first_and_rejects_unknown_names(monkeypatch, capsys):
  monkeypatch.setattr(sys, 'argv', ['lm_throughput.py', '--methods=clip_norm,adam,znorm'])
  assert lm_throughput._parse_args().methods == ('adam', 'clip_norm', 'znorm')
  monkeypatch.setattr(sys, 'argv', ['lm_throughput.py'])
  args = lm_throughput._parse_args()
  assert args.methods == ('adam', 'znorm', 'clip_norm')
  assert (args.model, args.context, args.batch_size, args.dtype) == (
      'gpt2_small', 1024, 16, 'bfloat16')
  monkeypatch.setattr(sys, 'argv', ['lm_throughput.py', '--methods=znorm,nope'])
  with pytest.raises(SystemExit):
    lm_throughput._parse_args()
  assert 'unknown --methods nope' in capsys.readouterr().err


def test_rounds_alternate_the_order_of_methods():
  calls = []

  def fake_run(method):
    def run(carry, batch):
      calls.append(method)
      return carry + 1, {'loss': jnp.zeros(())}
    return run

  args = argparse.Namespace(rounds=3, steps_per_round=5, loop='device', warmup_steps=0,
                            clock='wall')
  compiled = {m: (fake_run(m), jnp.zeros(())) for m in ('adam', 'znorm', 'clip_norm')}
  rounds = throughput.interleaved_rounds(args, compiled, None, items_per_step=7)
  assert calls == ['adam', 'znorm', 'clip_norm', 'clip_norm', 'znorm', 'adam',
                   'adam', 'znorm', 'clip_norm']
  assert {m: len(r) for m, r in rounds.items()} == {'adam': 3, 'znorm': 3, 'clip_norm': 3}
  assert all(x > 0 for r in rounds.values() for x in r)
  assert all(int(carry) == 3 for _, carry in compiled.values())  # The new carries are kept.


def test_report_ratio_is_the_median_of_the_ratios_within_rounds(capsys):
  # Within-round ratios 0.5, 1.0, 0.9: median 0.9; the ratio of medians would be 200/200 = 1.0.
  figures = {'adam': [400.0, 100.0, 200.0], 'znorm': [200.0, 100.0, 180.0],
             'clip_norm': [400.0, 100.0, 200.0]}
  medians = throughput.print_report(figures, unit='tokens', items_per_step=10, baseline='adam',
                                    targets={'znorm': 0.97})
  assert medians == pytest.approx({'znorm': 0.9, 'clip_norm': 1.0})
  lines = capsys.readouterr().out.splitlines()
  assert lines == [
      ('  adam      median      200.0 tokens/s,    50.00 ms/step, spread 150.0%  '
       '(rounds: 400.0, 100.0, 200.0)'),
      ('  znorm     median      180.0 tokens/s,    55.56 ms/step, spread  55.6%  '
       '(rounds: 200.0, 100.0, 180.0)'),
      ('  clip_norm median      200.0 tokens/s,    50.00 ms/step, spread 150.0%  '
       '(rounds: 400.0, 100.0, 200.0)'),
      '  ratio znorm / adam: 0.900 (rounds 0.500-1.000; target >= 0.97)',
      '  ratio clip_norm / adam: 1.000 (rounds 1.000-1.000)',
  ]
