"""Runs a config's sweep: every member into <workdir>/<member>/, vmapped where it can.

  python -m experiments.sweep --config=configs/binary_addition.py --workdir=/tmp/sweep \\
      [--seeds=3 [--first_seed=0]] [--config.field=value ...]

The members are the config's ``get_sweep()`` (a list of dotted overrides;
``--config=path:arg`` calls ``get_config(arg)`` and ``get_sweep(arg)``),
or, with ``--seeds=N``, seeds 0…N−1 of the config as it is (``--first_seed=S``:
seeds S…S+N−1, fresh seeds to confirm a result chosen on others). Members that
differ only in the seed or scalar hyper-parameters (learning rates, λ, the
update probability) train as one vmapped program; the others one after another
(``dni_jax.training.sweep``); before any training it prints the members
by group and their step budget. Every member folder is an ordinary run:
rerunning the same command resumes it member by member, and
``python -m experiments.summarize <workdir>`` prints mean ± std over seeds.
All the flags of ``experiments.main`` apply (--overwrite, --traceback, ...);
``--print_config`` prints the resolved config and the members by group (as
a fresh sweep), and trains nothing.
"""

import importlib.util
import inspect
import os
import sys

from absl import app
from absl import flags
from ml_collections import config_flags

from experiments import cli
from experiments import entry

_SEEDS = flags.DEFINE_integer(
    "seeds", 0, "Sweep seeds 0…N−1 of the config instead of its get_sweep().")
_FIRST_SEED = flags.DEFINE_integer(
    "first_seed", 0, "With --seeds=N: sweep seeds first_seed…first_seed+N−1.")


def _get_sweep():
  """The config file's ``get_sweep()``, or the ``--seeds`` sweep."""
  if _SEEDS.value:
    return [{"seed": s} for s in
            range(_FIRST_SEED.value, _FIRST_SEED.value + _SEEDS.value)]
  # --config=path[:arg]: the argument goes to get_config, as
  # ml_collections passes it, and to get_sweep.
  path, has_arg, arg = config_flags.get_config_filename(
      flags.FLAGS["config"]).partition(":")
  spec = importlib.util.spec_from_file_location("_sweep_config", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  if not hasattr(module, "get_sweep"):
    cli.fail(f"{path} defines no get_sweep(); add one (a list of "
             "dicts of dotted overrides) or pass --seeds=N.", 2)
  if has_arg and not inspect.signature(module.get_sweep).parameters:
    cli.fail(f"--config={path}:{arg}: get_config takes the argument after "
             "':' but get_sweep() does not; give get_sweep an argument too "
             f"(as configs/update_population.py does) or drop ':{arg}'.", 2)
  return module.get_sweep(arg) if has_arg else module.get_sweep()


def main(argv):
  if len(argv) > 1:
    cli.fail(f"unexpected arguments {argv[1:]} (see --help)", 2)
  if _SEEDS.value < 0:
    cli.fail(f"--seeds must be >= 0, got {_SEEDS.value}", 2)
  if _FIRST_SEED.value < 0 or (_FIRST_SEED.value and not _SEEDS.value):
    cli.fail(f"--first_seed={_FIRST_SEED.value} needs --seeds=N and must be "
             ">= 0; it picks where the --seeds sweep starts (e.g. --seeds=3 "
             "--first_seed=3 for seeds 3, 4, 5).", 2)
  from absl import logging  # pylint: disable=g-import-not-at-top
  if not flags.FLAGS["verbosity"].present:
    logging.set_verbosity(logging.WARNING)
  if entry.LIST_CONFIGS.value:
    print("Configs (python -m experiments.sweep --config=<path>):\n" +
          entry.configs_text())
    return
  members = _get_sweep()
  from dni_jax.training import sweep  # pylint: disable=g-import-not-at-top
  workdir = (flags.FLAGS["workdir"].value or
             os.path.join("/tmp/dni_jax", entry.config_name() + "_sweep"))
  if entry.PRINT_CONFIG.value:  # the config and the members; nothing runs
    from dni_jax.errors import ConfigError  # pylint: disable=g-import-not-at-top
    print(entry.config_text(entry.CONFIG.value, entry.config_file()))
    try:
      print("[sweep] the config above is the members' base; each overrides "
            "it as its name says. As a fresh sweep (what a workdir already "
            "holds may split a group):\n" + sweep.plan(sweep.groups(
                sweep.members(entry.CONFIG.value, members)), workdir))
    except ConfigError as e:
      cli.fail(str(e), 2)
    return

  def action(config, workdir, overwrite):
    summaries = sweep.run_sweep(config, members, workdir, overwrite)
    print(f"\nsweep of {len(summaries)} members done in {workdir}; "
          f"python -m experiments.summarize {workdir}", flush=True)

  entry.run(workdir, action)


if __name__ == "__main__":
  sys.argv[0] = "experiments.sweep"
  app.run(main, flags_parser=entry.parse_flags)
