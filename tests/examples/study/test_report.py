"""Sweep results files and the mean ± std table, against NumPy."""

import csv
import json
import os
import statistics

import numpy as np
import pytest
from scipy import stats

from examples.study import defaults
from examples.study import report
from examples.study import sweep


def _history(seed, method):
  offset = {'adam': 0.0, 'znorm': 0.1}[method]
  return [{'epoch': e, 'test_accuracy': 0.5 + offset + 0.01 * seed * e, 'train_loss': 1.0 / (e + seed)}
          for e in (1, 2)]


def _sweep_config(methods=('adam', 'znorm')):
  config = defaults.get_config()
  config.sweep.update(models=('m',), methods=methods, seeds=(1, 2, 3))
  return config


def _run_sweep(tmp_path):
  calls = []

  def run_one(run_config, run_dir):
    calls.append((run_config.model, run_config.method, run_config.seed, run_dir))
    return _history(run_config.seed, run_config.method)

  results = sweep.run_sweep(run_one, _sweep_config(), str(tmp_path))
  return results, calls


def test_run_sweep_writes_json_and_csv(tmp_path):
  results, calls = _run_sweep(tmp_path)
  assert [c[1:3] for c in calls] == [(m, s) for m in ('adam', 'znorm') for s in (1, 2, 3)]
  assert calls[0][3] == os.path.join(str(tmp_path), 'runs', 'm', 'adam', 'seed_1')
  assert sweep.load_results(str(tmp_path)) == results
  with open(tmp_path / 'results.json') as f:
    assert json.load(f)[4] == {'model': 'm', 'method': 'znorm', 'seed': 2,
                               'history': _history(2, 'znorm')}
  with open(tmp_path / 'results.csv') as f:
    rows = list(csv.DictReader(f))
  assert len(rows) == 12
  assert rows[-1] == {'model': 'm', 'method': 'znorm', 'seed': '3', 'epoch': '2',
                      'test_accuracy': str(0.6 + 0.06), 'train_loss': str(0.2)}


def test_table_is_mean_and_sample_std_over_seeds(tmp_path):
  results, _ = _run_sweep(tmp_path)
  table = report.markdown_table(results, [('test_accuracy', 'Test Accuracy', 4),
                                          ('train_loss', 'Train Loss', 4)], dataset='toy')
  lines = table.strip().splitlines()
  assert lines[0] == '| Dataset | Model | Method | Test Accuracy | Train Loss | Seeds |'
  final_accuracy = [0.6 + 0.02 * s for s in (1, 2, 3)]
  final_loss = [1.0 / (2 + s) for s in (1, 2, 3)]
  expected = (f'| toy | m | ZNorm | {statistics.mean(final_accuracy):.4f} ± '
              f'{statistics.stdev(final_accuracy):.4f} | {statistics.mean(final_loss):.4f} ± '
              f'{statistics.stdev(final_loss):.4f} | 3 |')
  assert lines[3] == expected


def test_single_seed_has_zero_std():
  assert report.mean_and_std([0.25]) == (0.25, 0.0)
  mean, std = report.mean_and_std([1.0, 2.0, 4.0])
  assert (mean, std) == pytest.approx((np.mean([1, 2, 4]), np.std([1, 2, 4], ddof=1)))


def test_write_report_makes_table_and_png(tmp_path):
  results, _ = _run_sweep(tmp_path)
  columns = [('test_accuracy', 'Test Accuracy', 3)]
  table, png = report.write_report(results, str(tmp_path), dataset='toy', table_columns=columns,
                                   curves=columns)
  assert (tmp_path / 'table.md').read_text() == table
  assert ((tmp_path / 'differences.md').read_text()
          == report.differences_table(results, columns))
  with open(png, 'rb') as f:
    assert f.read(8) == b'\x89PNG\r\n\x1a\n'


def test_differences_are_every_pair_with_welch_t_against_scipy(tmp_path):
  results, _ = _run_sweep(tmp_path)
  results += [sweep.RunResult('m', 'gc', seed, [{'test_accuracy': 0.4 + 0.05 * seed**2}])
              for seed in (1, 2, 3)]
  table = report.differences_table(results, [('test_accuracy', 'Test Accuracy', 3)])
  lines = table.strip().splitlines()
  assert lines[0] == '| Model | Method | Minus | Δ Test Accuracy (t) |'
  final = {method: [run.history[-1]['test_accuracy'] for run in results if run.method == method]
           for method in ('adam', 'znorm', 'gc')}
  pairs = [('znorm', 'adam'), ('gc', 'adam'), ('gc', 'znorm')]
  assert len(lines) == 2 + len(pairs)
  for line, (later, earlier) in zip(lines[2:], pairs, strict=True):
    a, b = final[later], final[earlier]
    t = stats.ttest_ind(a, b, equal_var=False).statistic
    label = {'znorm': 'ZNorm', 'adam': 'Baseline (Adam)', 'gc': 'Gradient Centralization'}
    assert line == (f'| m | {label[later]} | {label[earlier]} | '
                    f'{np.mean(a) - np.mean(b):+.3f} ({t:+.1f}) |')
  assert report.welch_t([1.0, 2.0, 4.0], [0.5, 0.5, 0.7]) == pytest.approx(
      stats.ttest_ind([1.0, 2.0, 4.0], [0.5, 0.5, 0.7], equal_var=False).statistic, rel=1e-12)
  assert np.isnan(report.welch_t([1.0], [2.0, 3.0]))
  # The docstring's threshold: two-sided 5% at Welch's fewest degrees of freedom for 3 seeds.
  assert stats.t.ppf(0.975, 2) == pytest.approx(4.3, abs=0.01)
