"""Evaluates a run's latest checkpoint with the run's own config.

  python -m experiments.evaluate <workdir> [--data_dir=<folder>] [--online]

``<workdir>`` is the --workdir a run of ``experiments.main`` trained into:
its ``config.json`` rebuilds the data and the network, the latest checkpoint
in ``checkpoints/`` is restored into it, and the test metrics are printed
(character corpora: valid and test bits per character; Copy tasks, which
have no held-out split: the last logged train metrics). For a comparison
workdir (one ``<method>/`` folder per method) or a sweep's (one folder per
member), each folder's. ``--data_dir`` reads the data from another folder
than the run's ``data.dir``. ``--online`` (character corpora) scores the
valid and test text while training on it with the run's own update rule,
from the checkpoint (dynamic evaluation), beside the same streams scored
with the checkpoint's parameters fixed. Nothing in the workdir is written.
The library functions are ``dni_jax.training.evaluate.evaluate_workdir(
workdir)`` and ``evaluate_online(run_dir)``, which return the same numbers
as a dict. Errors are one paragraph; --traceback
shows the Python traceback as well.
"""

import json

from absl import app
from absl import flags
from absl import logging

from experiments import cli

_WORKDIR = flags.DEFINE_string(
    "workdir", None, "The run's folder (or give it as the only argument).")
_DATA_DIR = flags.DEFINE_string(
    "data_dir", None, "Read the data from this folder instead of the run's "
    "data.dir: another copy of the dataset, or other text in its files' "
    "format (e.g. a slice of the training text saved as ptb.char.valid.txt, "
    "to score fixed parameters on text the run trained on).")
_ONLINE = flags.DEFINE_bool(
    "online", False, "Character corpora: score valid and test while "
    "training on them, window by window, with the run's own update rule "
    "from its checkpoint (each window scored before its own update, as the "
    "training stream's bpc is), beside the same streams scored with the "
    "checkpoint's parameters fixed.")
_JSON = flags.DEFINE_bool("json", False, "Print the results as one JSON "
                          "object instead of lines.")
_TRACEBACK = flags.DEFINE_bool(
    "traceback", False, "On an error, show the Python traceback too.")

_fail = cli.fail


def _metrics_text(metrics: dict) -> str:
  return " ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}"
                  for k, v in metrics.items())


def main(argv):
  if len(argv) > 2 or (len(argv) == 2 and _WORKDIR.value):
    _fail(f"unexpected arguments {argv[1:]}: give one workdir, e.g. "
          "python -m experiments.evaluate /tmp/dni_jax/binary_addition", 2)
  workdir = argv[1] if len(argv) == 2 else _WORKDIR.value
  if not workdir:
    _fail("give the workdir of a run, e.g. python -m experiments.evaluate "
          "/tmp/dni_jax/binary_addition (see --help)", 2)
  if not flags.FLAGS["verbosity"].present:
    logging.set_verbosity(logging.WARNING)  # Orbax logs every restore at INFO
  # Imported here so that --help answers without jax.
  from dni_jax.training import evaluate  # pylint: disable=g-import-not-at-top
  from dni_jax.training import report  # pylint: disable=g-import-not-at-top
  try:
    if not _JSON.value:
      print(report.devices_line(), flush=True)
    if _ONLINE.value:
      results = {name: evaluate.evaluate_online(path,
                                                data_dir=_DATA_DIR.value)
                 for name, path in evaluate.run_dirs(workdir).items()}
    else:
      results = evaluate.evaluate_workdir(workdir, _DATA_DIR.value)
  except Exception as e:  # pylint: disable=broad-except
    if _TRACEBACK.value:
      raise
    _fail(cli.error_paragraph(e))
  if _JSON.value:
    print(json.dumps(results, indent=2))
    return
  for name, result in results.items():
    print(f"[{name}] checkpoint of step {result['step']} in "
          f"{result['checkpoints']}", flush=True)
    for split, metrics in result["splits"].items():
      what = "last logged train" if split == "train" else split
      print(f"[{name}] {what} {_metrics_text(metrics)}", flush=True)


if __name__ == "__main__":
  app.run(main, flags_parser=cli.parse_flags)
