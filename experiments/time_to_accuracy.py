"""Wall time from a run's first logged step to a test accuracy.

  python -m experiments.time_to_accuracy <workdir> [<workdir> ...] --target=0.98

Reads the TensorBoard event files of each run (their wall-clock stamps) and
prints, per run, the first evaluated step whose test accuracy reaches
``--target``, the seconds from the run's start (data loaded, before the
first compile; for a resumed run, the first sitting's start) to that
evaluation, and the examples trained on by then (steps × ``batch_size`` of
its config.json). A comparison workdir expands to its methods.
"""

import glob
import json
import os

from absl import app
from absl import flags

from dni_jax.training import tensorboard

_TARGET = flags.DEFINE_float("target", 0.98, "Test accuracy to reach.")
_SPLIT = flags.DEFINE_string("split", "test", "Evaluation split.")


def _runs(paths):
  for path in paths:
    if glob.glob(os.path.join(path, "events.out.tfevents.*")):
      yield os.path.basename(os.path.normpath(path)), path
    else:
      for sub in sorted(os.listdir(path)):
        if glob.glob(os.path.join(path, sub, "events.out.tfevents.*")):
          yield sub, os.path.join(path, sub)


def time_to(run_dir: str, target: float, split: str = "test"):
  """``(step, seconds, examples)`` at the first ``split`` accuracy ≥ target."""
  scalars, paths = {}, sorted(
      glob.glob(os.path.join(run_dir, "events.out.tfevents.*")))
  for path in paths:
    for tag, entries in tensorboard.read_scalars(path, wall_time=True).items():
      scalars.setdefault(tag, []).extend(entries)
  start = min(tensorboard.start_time(p) for p in paths)  # the run's start
  with open(os.path.join(run_dir, "config.json")) as f:
    batch = json.load(f)["batch_size"]
  for step, value, wall in sorted(scalars.get(f"{split}/accuracy", [])):
    if value >= target:
      return step, wall - start, step * batch
  return None


def main(argv):
  print(f"{'run':<28}{'step':>8}{'seconds':>10}{'examples':>12}")
  for name, path in _runs(argv[1:]):
    hit = time_to(path, _TARGET.value, _SPLIT.value)
    if hit is None:
      print(f"{name:<28}{'not reached':>30}")
    else:
      print(f"{name:<28}{hit[0]:>8}{hit[1]:>10.1f}{hit[2]:>12}")


if __name__ == "__main__":
  app.run(main)
