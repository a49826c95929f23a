"""How many of a character run's LSTM cells are saturated, at fixed parameters.

  python -m experiments.lstm_cells <workdir> [--chars=4000] [--skip=1000]

Restores the run's newest complete checkpoint (an LSTM run of a character
corpus: bptt, dni or dni_aux), runs its valid text cut into
``config.batch_size`` streams from the zero state for ``--chars``
characters, and over the steps after the first ``--skip`` counts, per cell:
saturated (``|tanh c| > 0.99`` at 90 % of the steps or more: its output
``h = o·tanh(c)`` is then ``±o``), ``|c|`` above 10 on average, and an
output that barely moves (``h``'s standard deviation below 0.01). Also the
mean norms of ``c`` and ``h``. Nothing in the workdir is written. The
library function is ``dni_jax.training.lstm_cells.measure(workdir)``.
"""

from absl import app
from absl import flags

from experiments import cli

_CHARS = flags.DEFINE_integer("chars", 4000, "Characters per stream to run.")
_SKIP = flags.DEFINE_integer(
    "skip", 1000, "Characters per stream to run before counting (the state "
    "leaving zero).")
_TRACEBACK = flags.DEFINE_bool(
    "traceback", False, "On an error, show the Python traceback too.")


def main(argv):
  def measure(workdir):
    # Imported here so that --help answers without jax.
    from dni_jax.training import lstm_cells  # pylint: disable=g-import-not-at-top
    return lstm_cells.measure(workdir, _CHARS.value, _SKIP.value)
  got = cli.run_on_workdir(argv, "python -m experiments.lstm_cells <workdir>",
                           measure, _TRACEBACK.value)
  print(f"{argv[1]}: step {got['step']}: of {got['cells']} cells "
        f"{got['saturated']} saturated, {got['abs_c_over_10']} with mean "
        f"|c| > 10, {got['still_h']} with std(h) < 0.01; mean norms "
        f"c {got['c_norm']:.1f}, h {got['h_norm']:.2f}")


if __name__ == "__main__":
  app.run(main, flags_parser=cli.parse_flags)
