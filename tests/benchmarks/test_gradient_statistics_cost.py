"""benchmarks/gradient_statistics_cost.py runs (a smoke test: tiny settings, no timing checks)."""

import sys

import pytest

from benchmarks import gradient_statistics_cost


@pytest.mark.slow
def test_gradient_statistics_cost_prints_the_variants(monkeypatch, capsys):
  monkeypatch.setattr(sys, 'argv', [
      'gradient_statistics_cost.py', '--model=resnet8', '--width=2', '--batch_size=2',
      '--image_size=8', '--rounds=2', '--log_every_steps=2', '--steps_per_round=2',
      '--variants=off,log steps',  # Two of the three: each compiles a ResNet step (~10 s).
  ])
  gradient_statistics_cost.main()
  out = capsys.readouterr().out
  assert '  off ' in out and '  log steps ' in out
  assert out.count('ratio to off') == 2
