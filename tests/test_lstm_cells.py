"""dni_jax.training.lstm_cells (experiments.lstm_cells): saturated LSTM
cells, counted at fixed parameters."""

import os
import subprocess
import sys

import jax
import pytest

from dni_jax.errors import ConfigError
from dni_jax.training import lstm_cells
from dni_jax.training import train
from test_train import tiny

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_FORCED = 5


def _force_cells_to_write(params, cells):
  """Biases of +30 on the first ``cells`` cells of Flax's LSTM (the
  configs' cell): input and forget gates open, the written value 1, so
  their ``c`` grows by 1 a step."""
  def edit(path, leaf):
    names = [getattr(p, "key", None) for p in path]
    if names[-2:] in (["hi", "bias"], ["hf", "bias"], ["hg", "bias"]):
      return leaf.at[:cells].set(30.0)
    return leaf
  edited = jax.tree_util.tree_map_with_path(edit, params)
  assert not jax.tree_util.tree_all(jax.tree_util.tree_map(
      lambda a, b: bool((a == b).all()), params, edited))
  return edited


def test_cells_forced_to_integrate_are_counted_saturated(tmp_path):
  from test_data_errors import _write_ptb  # pylint: disable=g-import-not-at-top
  text = "".join(" ".join("abc_defg_hij") + "\n" for _ in range(200))
  _write_ptb(tmp_path, train=text, valid=text, test=text)
  run = tmp_path / "run"
  train.train_and_evaluate(tiny("ptb_char", method="dni", unroll=3, **{
      "data.dir": str(tmp_path)}), run)
  before = sorted(os.listdir(run))
  got = lstm_cells.measure(str(run), chars=200, skip=20)
  assert sorted(os.listdir(run)) == before
  assert got["step"] == 4 and got["cells"] == 16
  assert got["saturated"] < _FORCED  # a barely trained net
  from dni_jax.data import char_corpus  # pylint: disable=g-import-not-at-top
  from dni_jax.training import evaluate  # pylint: disable=g-import-not-at-top
  config, _, _, rdni, _, state, _ = evaluate.restore_run(str(run))
  rows = char_corpus.streams(char_corpus.load_ptb_char(
      str(tmp_path)).splits["valid"], config.batch_size)[:, :200]
  forced = lstm_cells.cell_stats(
      rdni.core, _force_cells_to_write(state.params, _FORCED), rows, 20)
  # c of a forced cell is its step count: 21 to 200.
  assert forced["saturated"] >= _FORCED
  assert forced["abs_c_over_10"] >= _FORCED
  assert forced["c_norm"] > got["c_norm"] + 50


def test_runs_without_lstm_text_are_refused(tmp_path):
  train.train_and_evaluate(tiny("copy", method="bptt"), tmp_path)
  with pytest.raises(ConfigError, match="give an LSTM run of a character"):
    lstm_cells.measure(str(tmp_path), chars=100, skip=10)
  with pytest.raises(ConfigError, match="give 0 <= skip < chars"):
    lstm_cells.measure(str(tmp_path), chars=100, skip=100)
  done = subprocess.run(
      [sys.executable, "-m", "experiments.lstm_cells", str(tmp_path)],
      cwd=ROOT, capture_output=True, text=True, timeout=300,
      env=dict(os.environ, JAX_PLATFORMS="cpu"))
  assert done.returncode == 1 and "Traceback" not in done.stderr
  assert "give an LSTM run of a character" in done.stderr
