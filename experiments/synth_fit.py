"""How much of its target a recurrent run's synthesizer predicts.

  python -m experiments.synth_fit <workdir> [--windows=400]

Restores the run's newest complete checkpoint (a dni or dni_aux run of
Copy, Repeat Copy or PTB) and trains on from it for ``--windows`` windows
in memory, measuring on each, before its update, the synthesizer's
regression at the window's start state (``tbptt.synthesizer_fit``): its
loss, the loss of predicting zero (the target's mean squared norm), their
ratio (the fraction of the target left unexplained; above 1, ``M`` is
further from its target than zero is) and the mean per-example cosine of
prediction and target. Nothing in the workdir is written.
"""

from absl import app
from absl import flags

from experiments import cli

_WINDOWS = flags.DEFINE_integer("windows", 400, "Windows to measure on.")
_TRACEBACK = flags.DEFINE_bool(
    "traceback", False, "On an error, show the Python traceback too.")


def measure(workdir: str, windows: int) -> dict:
  """``{"step", "mse", "target_sq", "ratio", "cosine"}`` over ``windows``."""
  import jax  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  from dni_jax.core import tbptt  # pylint: disable=g-import-not-at-top
  from dni_jax.errors import ConfigError  # pylint: disable=g-import-not-at-top
  from dni_jax.training import evaluate  # pylint: disable=g-import-not-at-top
  if windows < 1:
    raise ConfigError(f"--windows={windows}: give at least 1.")
  _, task, data, rdni, optimizers, state, step = evaluate.restore_run(
      workdir)

  @jax.jit
  def window(state, data):
    batch = task.window(state.task, data, state.step)
    stats = tbptt.synthesizer_fit(state, batch, rdni=rdni,
                                  optimizers=optimizers)
    state, _ = tbptt.task_step(state, data, rdni=rdni, optimizers=optimizers,
                               task=task)
    return state, stats

  rows = []
  for _ in range(windows):
    state, stats = window(state, data)
    rows.append(stats)
  got = {k: float(np.mean([jax.device_get(r[k]) for r in rows]))
         for k in rows[0]}
  return {"step": step, **got, "ratio": got["mse"] / got["target_sq"]}


def main(argv):
  got = cli.run_on_workdir(argv, "python -m experiments.synth_fit <workdir>",
                           lambda w: measure(w, _WINDOWS.value),
                           _TRACEBACK.value)
  print(f"{argv[1]}: from step {got['step']}, {_WINDOWS.value} windows: "
        f"synthesizer loss {got['mse']:.4g}, loss of predicting zero "
        f"{got['target_sq']:.4g}, ratio {got['ratio']:.4f}, mean cosine "
        f"{got['cosine']:.4f}")


if __name__ == "__main__":
  app.run(main, flags_parser=cli.parse_flags)
