"""How many of a character run's LSTM cells are saturated, at fixed parameters.

``measure(workdir)`` restores the run's newest complete checkpoint (an LSTM
run of a character corpus: bptt, dni or dni_aux), runs its valid text cut
into ``config.batch_size`` streams from the zero state for ``chars``
characters, and over the steps after the first ``skip`` counts, per cell:
saturated (``|tanh c| > 0.99`` at 90 % of the steps or more: its output
``h = o·tanh(c)`` is then ``±o``, and ``c`` no longer carries anything a
small write could change), ``|c|`` above 10 on average, and an output that
barely moves (``h``'s standard deviation below 0.01); also the mean norms
of ``c`` and ``h``. Nothing in the workdir is written.
``python -m experiments.lstm_cells <workdir>`` prints it.
"""

from __future__ import annotations

import jax
import numpy as np

from dni_jax.core import recurrent
from dni_jax.data import char_corpus
from dni_jax.errors import ConfigError
from dni_jax.training import evaluate
from dni_jax.training import experiment


def cell_stats(core, params, rows, skip: int) -> dict:
  """Per-cell counts of an LSTM ``core`` over ``rows`` ``[streams, L]`` of
  tokens, each row a stream from the zero state, counted after ``skip``
  steps (see the module's docstring)."""
  _, states, _ = jax.jit(lambda x: recurrent.unroll(
      core, params, core.initial_state(rows.shape[0]), x))(rows)
  states = np.asarray(states)[:, skip:]
  states = states.reshape(-1, states.shape[-1])
  c, h = np.split(states, 2, axis=-1)
  saturated = (np.abs(np.tanh(c)) > 0.99).mean(0) >= 0.9
  return {"cells": int(c.shape[-1]), "saturated": int(saturated.sum()),
          "abs_c_over_10": int((np.abs(c).mean(0) > 10).sum()),
          "still_h": int((h.std(0) < 0.01).sum()),
          "c_norm": float(np.linalg.norm(c, axis=-1).mean()),
          "h_norm": float(np.linalg.norm(h, axis=-1).mean())}


def measure(workdir: str, chars: int = 4000, skip: int = 1000) -> dict:
  """``{"step", **cell_stats}`` of the run in ``workdir``.

  Raises:
    ConfigError: ``skip`` not below ``chars``, or not an LSTM run of a
      character corpus.
    CheckpointError: no complete checkpoint.
  """
  if not 0 <= skip < chars:
    raise ConfigError(f"--skip={skip} --chars={chars}: give 0 <= skip < "
                      "chars.")
  config, task, _, rdni, _, state, step = evaluate.restore_run(
      workdir, synthesizer=False)
  if task.vocab_size is None or config.model.kind != "lstm":
    raise ConfigError(
        f"{workdir} is a {config.model.kind} run of {config.data.name}; give "
        "an LSTM run of a character corpus (ptb_char, tiny_shakespeare).")
  rows = char_corpus.streams(experiment.load_corpus(config).splits["valid"],
                             config.batch_size)[:, :chars]
  return {"step": step, **cell_stats(rdni.core, state.params, rows, skip)}
