"""Trains and evaluates one experiment config.

  python -m experiments.main --config=configs/mnist_fcn.py --workdir=/tmp/dni/mnist \
      --config.method=cdni --config.data.dir=../shared/data/mnist

With no --config it runs configs/binary_addition.py (backprop vs DNI vs cDNI,
generated data, about a minute). Re-running with the same --workdir resumes.
"""

import os
import sys

from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags

from dni_jax.errors import DNIError
from dni_jax.training import train

_DEFAULT_CONFIG = os.path.join(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))), "configs", "binary_addition.py")
_CONFIG = config_flags.DEFINE_config_file(
    "config", _DEFAULT_CONFIG, "Experiment config file (configs/*.py).")
_WORKDIR = flags.DEFINE_string(
    "workdir", None, "Where checkpoints and metrics.jsonl go; default "
    "/tmp/dni_jax/<config name>.")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  if not flags.FLAGS["verbosity"].present:
    logging.set_verbosity(logging.WARNING)  # Orbax logs every save at INFO
  config_name = os.path.splitext(os.path.basename(
      config_flags.get_config_filename(flags.FLAGS["config"])))[0]
  workdir = _WORKDIR.value or os.path.join("/tmp/dni_jax", config_name)
  try:
    train.train_and_evaluate(_CONFIG.value, workdir)
  except DNIError as e:
    sys.exit(f"error: {e}")


if __name__ == "__main__":
  app.run(main)
