"""Trains and evaluates one experiment config.

Usage, from the repository root:

  python -m experiments.main --config=configs/<name>.py --workdir=<dir> [--config.<field>=<value> ...]

For example:

  python -m experiments.main --config=configs/mnist_fcn.py --workdir=workdirs/mnist --config.method=cdni --config.data.dir=../shared/data/mnist

With no --config it runs configs/binary_addition.py (backprop vs DNI vs cDNI,
generated data, well under a minute on a 2-core CPU). Rerunning with the same
--workdir resumes or extends the run (raise --config.num_steps); a workdir
made by another config is refused (--overwrite deletes that run, saying
so, and starts over). ``python -m experiments.evaluate <workdir>`` evaluates
a run's latest checkpoint; --branch_from=<workdir> starts a new run from
another's checkpoint under a changed config (e.g. another λ or learning
rate from that point on). --print_config prints every field of the
resolved config with its comment from the config files; --list_configs
lists the configs. Errors are one paragraph; --traceback shows the Python
traceback as well.
"""

import functools
import os

from absl import app
from absl import flags
from absl import logging

from experiments import entry

_BRANCH_FROM = flags.DEFINE_string(
    "branch_from", None, "Start a new run in --workdir from this run's "
    "checkpoint under the given config: its parameters, optimiser and task "
    "state, this config's λ and learning rates (its metrics up to there are "
    "copied; branch.json records the source and the fields changed).")
_BRANCH_STEP = flags.DEFINE_integer(
    "branch_step", None, "The --branch_from checkpoint's step (one of the "
    "two a run keeps); default its newest complete one.")

# absl prints the module docstring as --help's usage text.
__doc__ += "\nConfigs:\n" + entry.configs_text() + "\n"


def main(argv):
  if len(argv) > 1:
    entry.fail(f"unexpected arguments {argv[1:]}: every option is a flag, "
               "e.g. --config.num_steps=1000 (see --help)", 2)
  if entry.LIST_CONFIGS.value:
    print("Configs (python -m experiments.main --config=<path>):\n" +
          entry.configs_text())
    return
  if entry.PRINT_CONFIG.value:
    print(entry.config_text(entry.CONFIG.value, entry.config_file()))
    return
  if not flags.FLAGS["verbosity"].present:
    logging.set_verbosity(logging.WARNING)  # Orbax logs every save at INFO
  action = None
  if _BRANCH_FROM.value is not None:
    from dni_jax.training import train  # pylint: disable=g-import-not-at-top
    action = functools.partial(train.train_and_evaluate,
                               branch_from=_BRANCH_FROM.value,
                               branch_step=_BRANCH_STEP.value)
  elif _BRANCH_STEP.value is not None:
    entry.fail("--branch_step names a checkpoint of the --branch_from run; "
               "give --branch_from=<its workdir> too.", 2)
  entry.run(entry.WORKDIR.value or
            os.path.join("/tmp/dni_jax", entry.config_name()), action)


if __name__ == "__main__":
  app.run(main, flags_parser=entry.parse_flags)
