"""Every parallel mode trains the transformer as one device does, on 8 simulated CPU devices."""

import chex
import jax
import numpy as np
from flax import nnx

from examples.language_model import input_pipeline
from examples.language_model.configs import tiny
from examples.language_model.example import EXAMPLE
from examples.study import experiment
from tests.examples.saved import final_state
from tests.examples.saved import without_timing

MODES = {  # name -> config overrides
    'sharded': {'parallel': 'sharded'},
    'sharded explicit': {'parallel': 'sharded', 'mesh_axis_types': 'explicit'},
    'fsdp': {'parallel': 'fsdp', 'fsdp_devices': 4},  # A (data 2, fsdp 4) mesh.
    'fsdp explicit': {'parallel': 'fsdp', 'mesh_axis_types': 'explicit'},  # fsdp over all 8.
    'pmap': {'parallel': 'pmap'},
}


def _config(**overrides):
  config = tiny.get_config()
  # One batch of 8 windows, trained on twice (one step per epoch), so every step sees the
  # same bytes; no warmup, so the first step moves.
  config.update(platform='cpu', method='znorm', num_epochs=2, train_bytes=17 * 8,
                eval_bytes=17 * 8, warmup_steps=0, checkpoint_every_steps=100, **overrides)
  return config


def _run(workdir, data, **overrides):
  history = experiment.train_and_evaluate(EXAMPLE, _config(**overrides), str(workdir), data)
  return without_timing(history), final_state(workdir)


def test_every_mode_equals_one_device(tmp_path):
  assert len(jax.devices('cpu')) == 8  # tests/conftest.py
  data = input_pipeline.load(_config())  # Loaded once, as a sweep does.
  want_history, want_state = _run(tmp_path / 'none', data, parallel='none')
  assert want_history[-1]['step'] == 2
  present = np.unique(data.train[:, :-1])
  absent = np.setdiff1d(np.arange(256), present)
  assert 20 < len(present) < 256
  # ZNorm takes each embedding row's statistics: the rows of bytes never trained on have a zero
  # gradient, which stays zero, so Adam leaves them as initialized.
  config = _config()
  initial = nnx.to_pure_dict(nnx.state(
      EXAMPLE.make_task(config, None).create_model(nnx.Rngs(config.seed), None), nnx.Param))
  np.testing.assert_array_equal(want_state[0]['token_embedding']['embedding'][absent],
                                initial['token_embedding']['embedding'][absent])
  for mode, overrides in MODES.items():
    history, state = _run(tmp_path / mode, data, **overrides)
    chex.assert_trees_all_close(state, want_state, rtol=1e-4, atol=1e-5)
    np.testing.assert_array_equal(state[0]['token_embedding']['embedding'][absent],
                                  initial['token_embedding']['embedding'][absent], err_msg=mode)
    for got, want in zip(history, want_history, strict=True):
      assert got.keys() == want.keys(), mode
      np.testing.assert_allclose(list(got.values()), list(want.values()), rtol=1e-5, err_msg=mode)
