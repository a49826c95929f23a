"""How many of a character run's LSTM cells are saturated, at fixed parameters.

  python -m experiments.lstm_cells <workdir> [--chars=4000] [--skip=1000]

Restores the run's newest complete checkpoint (an LSTM run of a character
corpus: bptt, dni or dni_aux), runs its valid text cut into
``config.batch_size`` streams from the zero state for ``--chars``
characters, and over the steps after the first ``--skip`` counts, per cell:
saturated (``|tanh c| > 0.99`` at 90 % of the steps or more: its output
``h = o·tanh(c)`` is then ``±o``, and ``c`` no longer carries anything a
small write could change), ``|c|`` above 10 on average, and an output that
barely moves (``h``'s standard deviation below 0.01). Also the mean norms of
``c`` and ``h``. Nothing in the workdir is written.
"""

from absl import app
from absl import flags
from absl import logging

from experiments import cli

_CHARS = flags.DEFINE_integer("chars", 4000, "Characters per stream to run.")
_SKIP = flags.DEFINE_integer(
    "skip", 1000, "Characters per stream to run before counting (the state "
    "leaving zero).")
_TRACEBACK = flags.DEFINE_bool(
    "traceback", False, "On an error, show the Python traceback too.")


def cell_stats(core, params, rows, skip: int) -> dict:
  """Per-cell counts of an LSTM ``core`` over ``rows`` ``[streams, L]`` of
  tokens, each row a stream from the zero state, counted after ``skip``
  steps (see the module's docstring)."""
  import jax  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  from dni_jax.core import recurrent  # pylint: disable=g-import-not-at-top
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


def measure(workdir: str, chars: int, skip: int) -> dict:
  """``{"step", **cell_stats}`` of the run in ``workdir``."""
  from dni_jax.data import char_corpus  # pylint: disable=g-import-not-at-top
  from dni_jax.errors import ConfigError  # pylint: disable=g-import-not-at-top
  from dni_jax.training import evaluate  # pylint: disable=g-import-not-at-top
  from dni_jax.training import experiment  # pylint: disable=g-import-not-at-top
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


def main(argv):
  if len(argv) != 2:
    cli.fail("give one workdir: python -m experiments.lstm_cells <workdir>")
  if not flags.FLAGS["verbosity"].present:
    logging.set_verbosity(logging.WARNING)  # Orbax logs every restore at INFO
  try:
    got = measure(argv[1], _CHARS.value, _SKIP.value)
  except Exception as e:  # pylint: disable=broad-except
    if _TRACEBACK.value:
      raise
    cli.fail(cli.error_paragraph(e))
  print(f"{argv[1]}: step {got['step']}: of {got['cells']} cells "
        f"{got['saturated']} saturated, {got['abs_c_over_10']} with mean "
        f"|c| > 10, {got['still_h']} with std(h) < 0.01; mean norms "
        f"c {got['c_norm']:.1f}, h {got['h_norm']:.2f}")


if __name__ == "__main__":
  app.run(main, flags_parser=cli.parse_flags)
